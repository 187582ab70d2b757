"""Bidirectional GANs (BiGAN, ALI): the encoder is the guide, the critic scores (x, z) pairs."""

import math

import torch
import pyro.poutine as poutine
from pyro.infer.util import is_validation_enabled
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import site_is_subsample

from .fgan import FGANLoss
from .gan import _call_frozen, _check_single_sample, _require_module, _UnconditionSite

__all__ = ["BiGANLoss"]


class BiGANLoss(FGANLoss):
    r"""Adversarial inference (Donahue et al., 2017; Dumoulin et al., 2017) with the encoder as
    the Pyro guide: the critic tells the data joint :math:`(x, z)`, :math:`x \sim P`,
    :math:`z \sim q_\phi(z \mid x)`, from the model's joint :math:`(G_\theta(z), z)`,
    :math:`z \sim p(z)`.

    With raw critic output :math:`V_\omega(x, z)`, output activation :math:`g_f` and conjugate
    :math:`f^*` of an f-divergence,

    .. math::

        F = \mathbb{E}_{x \sim P,\, z \sim q_\phi(z \mid x)}[g_f(V_\omega(x, z))]
            - \mathbb{E}_{z \sim p(z)}[f^*(g_f(V_\omega(G_\theta(z), z)))]
            \;\le\; D_f\big(P(x) q_\phi(z \mid x) \,\|\, p(z) p_\theta(x \mid z)\big),

    and the losses (both minimized; generator and encoder share the second) are

    .. math::

        L_D = -F, \qquad
        L_{G,E}^{\text{saturating}} = F, \qquad
        L_{G,E}^{\text{nonsaturating}} =
            \mathbb{E}_{P, q_\phi}[f^*(g_f(V))] - \mathbb{E}_{p, G_\theta}[g_f(V)].

    The non-saturating loss is the critic's objective with the two joints swapped (the flipped
    labels of the papers: for ``"gan"`` it is :math:`-\log D(G(z), z) - \log(1 - D(x, E(x)))`).
    Its second term is :class:`FGANLoss`'s generator loss; the first (``last["encoder_loss"]``)
    reaches only the guide's parameters. At the optimum the joints agree, so the encoder inverts
    the generator on the data: :math:`G(E(x)) = x` and :math:`E(G(z)) = z`.

    The real pair is the observed ``x`` with the guide's ``z``. The fake pair comes from the
    model run with the latent site *not* replayed (``z`` from the prior) and the observation
    unconditioned; other guide sites (random weights, say) are replayed as usual.

    .. note:: The model samples ``latent_site`` from the prior and observes ``obs_site``; the
        guide samples ``latent_site`` reparameterized: ``Delta(E(x))`` (deterministic) or
        ``Normal(mu(x), s(x))`` (stochastic). Register the encoder with :func:`pyro.module` in
        the guide, so :class:`~pyro.infer.SVI`'s optimizer steps it with the generator. With the
        guide hidden (:func:`~pyro.poutine.block`) there is no encoder: that is
        :class:`FGANLoss`'s GAN, and this loss raises. The critic penalty (kept as
        :attr:`pair_penalty`) sees the pairs flattened to rows ``[x, z]`` and a view of the
        critic that splits them back, so input-gradient penalties differentiate in both.

    :param torch.nn.Module critic: :math:`V_\omega`, called as ``critic(x, z)`` on batches, one
        real number per pair (e.g. :class:`bayesgan.nn.JointCritic`).
    :param divergence: a name from :func:`bayesgan.divergences.names` or a
        :class:`~bayesgan.divergences.Divergence`.
    :param int critic_steps: critic updates per update of generator and encoder.
    :param str generator_objective: ``"nonsaturating"``, ``"saturating"``, or ``None`` for the
        divergence's default.
    :param penalty: a critic penalty ``penalty(critic, real, fake) -> Tensor``.
    :param generator_penalty: e.g. :class:`~bayesgan.penalties.GeneratorGradientPenalty`.
    :param str latent_site: the latent site of model and guide.
    :param str obs_site: the model's observation site.
    :param str critic_name: the critic's name in Pyro's param store.
    :param callable backward: how to back-propagate (default ``tensor.backward()``).
    :param int num_masks: stochastic passes averaged per step (MC dropout's ``n_mcd``); the
        critic penalty is averaged over them too.
    :param int num_data: the training set's size :math:`N`, for the :math:`\mathrm{KL}/N` term
        of random generator weights (their guide sites beside the encoder's; the encoder's
        ``z``, inside the data plate, is no weight).

    **References**

    1. J. Donahue, P. Kraehenbuehl, T. Darrell, *Adversarial Feature Learning*, ICLR 2017.
    2. V. Dumoulin et al., *Adversarially Learned Inference*, ICLR 2017.

    >>> import torch, pyro, pyro.distributions as dist
    >>> from pyro.infer import SVI
    >>> from pyro.optim import Adam
    >>> from bayesgan.nn import JointCritic
    >>> G, E = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    >>> def model(x):
    ...     pyro.module("generator", G)
    ...     with pyro.plate("data", x.shape[0]):
    ...         z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    ...         pyro.sample("x", dist.Delta(G(z), event_dim=1), obs=x)
    >>> def guide(x):
    ...     pyro.module("encoder", E)
    ...     with pyro.plate("data", x.shape[0]):
    ...         pyro.sample("z", dist.Delta(E(x), event_dim=1))
    >>> loss = BiGANLoss(JointCritic.mlp(2, 2, width=16))
    >>> svi = SVI(model, guide, Adam({"lr": 1e-3}), loss=loss)
    >>> critic_loss, generator_loss = svi.step(torch.randn(8, 2))
    """

    def __init__(
        self,
        critic,
        *,
        divergence="gan",
        critic_steps=1,
        generator_objective=None,
        penalty=None,
        generator_penalty=None,
        latent_site="z",
        obs_site="x",
        critic_name="critic",
        backward=None,
        num_masks=1,
        num_data=None,
    ):
        _require_module(critic)
        if not isinstance(latent_site, str) or latent_site == obs_site:
            raise ValueError(
                f"Expected latent_site to be a site name other than obs_site {obs_site!r}, "
                f"actual {latent_site!r}"
            )
        super().__init__(
            divergence,
            critic,
            critic_steps=critic_steps,
            generator_objective=generator_objective,
            penalty=penalty,
            generator_penalty=generator_penalty,
            obs_site=obs_site,
            critic_name=critic_name,
            backward=backward,
            num_masks=num_masks,
            num_data=num_data,
        )
        self.latent_site = latent_site
        # The base class applies ``penalty`` to single tensors; pairs need the flattened view.
        self.pair_penalty, self.penalty = self.penalty, None

    def _losses(self, model, guide, args, kwargs, generator):
        self._register(self.critic_name, self.critic)
        real, fake, model_trace, guide_trace = self._sample(model, guide, args, kwargs, generator)
        (x, z_enc), (x_gen, z_gen) = real, fake
        critic = self.critic
        if x.shape[0] == 1 and critic.training:
            _check_single_sample(critic)
        # The critic's term sees both pairs detached; the players' terms see the critic frozen.
        v_real = critic(x, z_enc.detach())
        v_fake = critic(x_gen.detach(), z_gen.detach())
        critic_loss, record = self._critic_objective(v_real, v_fake)
        penalty = critic_loss.new_zeros(())
        if self.pair_penalty is not None:
            view = _FlatPairs(critic, x.shape[1:], z_enc.shape[1:])
            penalty = self.pair_penalty(view, _flatten(x, z_enc), _flatten(x_gen, z_gen))
            critic_loss = critic_loss + penalty
        record["penalty"] = penalty
        if generator:
            higher = self.generator_penalty is not None
            v_enc = _call_frozen(critic, x, z_enc, higher_order=higher)
            v_gen = _call_frozen(critic, x_gen, z_gen, higher_order=higher)
        else:
            v_enc, v_gen = v_real.detach(), v_fake.detach()
        encoder_loss = self._encoder_objective(v_enc)
        record["encoder_loss"] = encoder_loss
        generator_loss = self._generator_objective(None, v_gen) + encoder_loss
        generator_loss = self._add_generator_penalty(
            generator_loss, record, model_trace, guide_trace, x_gen, generator
        )
        return (critic_loss, generator_loss), record

    def _encoder_objective(self, v_enc):
        """The guide's term: the real pair should look generated (labels flipped)."""
        if self.generator_objective == "saturating":
            return self.divergence.activation(v_enc).mean()
        return self.divergence.f_star_activation(v_enc).mean()

    def _traced_sample(self, model, guide, args, kwargs):
        with poutine.trace() as tr:
            guide(*args, **kwargs)
        guide_trace = tr.trace
        z_site = self._latent(guide_trace, "guide")
        others = Trace()  # the guide trace without the latent: the model draws z from its prior
        for name, site in guide_trace.nodes.items():
            if name != self.latent_site:
                others.add_node(name, **site)
        with poutine.trace() as tr, _UnconditionSite(self.obs_site):
            with poutine.replay(trace=others):
                model(*args, **kwargs)
        model_trace = tr.trace
        site = self._observation(model_trace)
        z_prior = self._latent(model_trace, "model")["value"]
        real, fake, z_enc = site["infer"]["obs"], site["value"], z_site["value"]
        if is_validation_enabled():
            self._validate(real, fake)
        if z_enc.shape != z_prior.shape:
            raise ValueError(
                f"Expected the guide's {self.latent_site!r} to have the model's shape "
                f"{tuple(z_prior.shape)}, actual {tuple(z_enc.shape)}; check the encoder's "
                f"output size and the guide's plate"
            )
        return (real, z_enc), (fake, z_prior), model_trace, guide_trace

    def _latent(self, trace, owner):
        sites = [n for n, s in trace.nodes.items() if s["type"] == "sample" and not site_is_subsample(s)]
        if self.latent_site not in sites:
            hint = (
                "; an encoder guide hidden with poutine.block has no z: train that GAN with FGANLoss"
                if owner == "guide"
                else "; pass latent_site= to the loss"
            )
            raise ValueError(
                f"Expected the {owner} to sample the latent site {self.latent_site!r}, actual "
                f"sample sites {sites}{hint}"
            )
        site = trace.nodes[self.latent_site]
        if owner == "guide" and not getattr(site["fn"], "has_rsample", False):
            raise ValueError(
                f"Expected a reparameterized guide site {self.latent_site!r} (Delta or Normal), "
                f"actual {type(site['fn']).__name__}; gradients could not reach the encoder"
            )
        return site

    def __repr__(self):
        return (
            f"BiGANLoss(divergence={self.divergence!r}, critic_steps={self.critic_steps}, "
            f"generator_objective={self.generator_objective!r}, latent_site={self.latent_site!r})"
        )


def _flatten(x, z):
    """Pairs as rows ``[x, z]`` (one tensor), the input of a critic penalty."""
    return torch.cat([x.reshape(x.shape[0], -1), z.reshape(z.shape[0], -1)], dim=-1)


class _FlatPairs(torch.nn.Module):
    """The critic as a function of flattened pairs: what a penalty differentiates."""

    def __init__(self, critic, x_shape, z_shape):
        super().__init__()
        self.critic, self.x_shape, self.z_shape = critic, tuple(x_shape), tuple(z_shape)
        self.split = math.prod(self.x_shape)

    def forward(self, pairs):
        n = pairs.shape[0]
        x = pairs[:, : self.split].reshape(n, *self.x_shape)
        return self.critic(x, pairs[:, self.split :].reshape(n, *self.z_shape))
