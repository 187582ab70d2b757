r"""Bidirectional GANs (BiGAN, ALI) on the JAX side: the encoder is the guide, the critic scores
``(x, z)`` pairs (the torch side's :class:`bayesgan.infer.BiGANLoss`)."""

import math

import jax.numpy as jnp

from .fgan import FGAN

__all__ = ["BiGAN"]


def _flatten(x, z):
    return jnp.concatenate([x.reshape(x.shape[0], -1), z.reshape(z.shape[0], -1)], axis=-1)


class BiGAN(FGAN):
    r"""Adversarial inference with the encoder as the NumPyro guide (``init(..., guide=encoder)``):
    the critic tells the data joint :math:`(x, z)`, :math:`z \sim q_\phi(z \mid x)`, from the
    model's joint :math:`(G_\theta(z), z)`, :math:`z \sim p(z)`:

    .. math::

        F = \mathbb{E}_{P, q_\phi}[g_f(V(x, z))] - \mathbb{E}_{p}[f^*(g_f(V(G_\theta(z), z)))],
        \qquad L_D = -F, \qquad L_{G,E}^{\text{sat}} = F, \qquad
        L_{G,E}^{\text{nonsat}} = \mathbb{E}_{P, q_\phi}[f^*(g_f(V))] - \mathbb{E}_{p, G_\theta}[g_f(V)].

    The critic is a Flax module called as ``critic(x, z)``. Pairs travel as rows ``[x, z]``
    (flattened), so critic penalties differentiate in both. The model draws ``latent_site`` from
    its prior (the guide's other sites, random weights say, are replayed as usual).

    :param generator_optimizer: optax transformation of the generator and the encoder.
    :param critic_optimizer: optax transformation of the critic.
    :param divergence: a divergence name or object (``"gan"`` by default).
    :param str latent_site: the latent site of model and guide.
    :param kwargs: ``critic_steps``, ``generator_objective``, ``penalty``,
        ``generator_penalty``, ``obs_site``, ``num_data``, ``num_masks``.

    **References**

    1. J. Donahue, P. Kraehenbuehl, T. Darrell, *Adversarial Feature Learning*, ICLR 2017.
    2. V. Dumoulin et al., *Adversarially Learned Inference*, ICLR 2017.

    >>> import optax
    >>> BiGAN(generator_optimizer=optax.adam(1e-3), critic_optimizer=optax.adam(1e-3))
    BiGAN(divergence=GAN(), critic_steps=1, generator_objective='nonsaturating', latent_site='z')
    """

    def __init__(self, *, generator_optimizer, critic_optimizer, divergence="gan", latent_site="z", **kwargs):
        obs_site = kwargs.get("obs_site", "x")
        if not isinstance(latent_site, str) or latent_site == obs_site:
            raise ValueError(
                f"Expected latent_site to be a site name other than obs_site {obs_site!r}, actual {latent_site!r}"
            )
        super().__init__(divergence, generator_optimizer=generator_optimizer, critic_optimizer=critic_optimizer,
                         **kwargs)
        self.latent_site = latent_site
        self._shapes = None

    def init(self, rng_key, model, critic, batch, *, guide=None):
        if guide is None:
            raise ValueError(
                "Expected an encoder guide (init(..., guide=encoder)), actual None; without one train FGAN"
            )
        return super().init(rng_key, model, critic, batch, guide=guide)

    def _init_critic(self, key, batch, model_trace, guide):
        from numpyro import handlers

        guide_trace = handlers.trace(handlers.seed(guide, key)).get_trace(batch)
        z_enc = self._latent(guide_trace, "guide")["value"]
        z_prior = self._latent(model_trace, "model")["value"]
        if z_enc.shape != z_prior.shape:
            raise ValueError(
                f"Expected the guide's {self.latent_site!r} to have the model's shape {tuple(z_prior.shape)}, "
                f"actual {tuple(z_enc.shape)}; check the encoder's output size and the guide's plate"
            )
        self._shapes = (tuple(batch.shape[1:]), tuple(z_enc.shape[1:]))
        return self.critic.init(key, batch, z_enc)

    def _latent(self, trace, owner):
        sites = [n for n, s in trace.items() if s["type"] == "sample"]
        if self.latent_site not in sites:
            raise ValueError(
                f"Expected the {owner} to sample the latent site {self.latent_site!r}, actual sample sites {sites}"
            )
        site = trace[self.latent_site]
        if owner == "guide" and not site["fn"].has_rsample:
            raise ValueError(
                f"Expected a reparameterized guide site {self.latent_site!r} (Delta or Normal), actual "
                f"{type(site['fn']).__name__}; gradients could not reach the encoder"
            )
        return site

    def _not_replayed(self):
        return (self.latent_site,)

    def _pairs(self, model_trace, guide_trace):
        site = model_trace[self.obs_site]
        z_enc = guide_trace[self.latent_site]["value"]
        z_prior = model_trace[self.latent_site]["value"]
        return _flatten(site["infer"]["obs"], z_enc), _flatten(site["value"], z_prior)

    def _critic_inputs(self, rows):
        x_shape, z_shape = self._shapes
        split, n = math.prod(x_shape), rows.shape[0]
        return rows[:, :split].reshape(n, *x_shape), rows[:, split:].reshape(n, *z_shape)

    def _generator_loss(self, v_real, v_gen):
        # the real pair's term reaches the encoder (the guide's parameters)
        return self._generator_objective(None, v_gen) + self._encoder_objective(v_real)

    def _encoder_objective(self, v_enc):
        """The guide's term: the real pair should look generated (labels flipped)."""
        if self.generator_objective == "saturating":
            return self.divergence.activation(v_enc).mean()
        return self.divergence.f_star_activation(v_enc).mean()

    def __repr__(self):
        return (
            f"BiGAN(divergence={self.divergence!r}, critic_steps={self.critic_steps}, "
            f"generator_objective={self.generator_objective!r}, latent_site={self.latent_site!r})"
        )
