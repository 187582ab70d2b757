r"""The f-GAN family (Nowozin et al., 2016) as a JAX ``init``/``step`` pair."""

from . import divergences
from .gan import AdversarialObjective

__all__ = ["FGAN"]

_OBJECTIVES = ("nonsaturating", "saturating")


class FGAN(AdversarialObjective):
    r"""Variational divergence minimization, the JAX twin of :class:`bayesgan.infer.FGANLoss`.

    .. math::

        F = \mathbb{E}_P[g_f(V(x))] - \mathbb{E}_{Q_\theta}[f^*(g_f(V(x)))], \qquad L_D = -F,
        \qquad L_G^{\text{sat}} = -\mathbb{E}_{Q}[f^*(g_f(V))], \qquad
        L_G^{\text{nonsat}} = -\mathbb{E}_{Q}[g_f(V)].

    :class:`~bayesgan.jax.GANInfo` holds ``critic_real`` and ``critic_fake`` (mean activated
    critic output), ``divergence`` (:math:`F`) and ``penalty``, as the torch side's ``last``.

    :param divergence: a name from :func:`bayesgan.jax.divergences.names` or a
        :class:`~bayesgan.jax.divergences.Divergence`.
    :param generator_optimizer: optax transformation of the generator.
    :param critic_optimizer: optax transformation of the critic.
    :param int critic_steps: critic updates per generator update.
    :param str generator_objective: ``"nonsaturating"``, ``"saturating"`` or ``None`` (the
        divergence's default).
    :param kwargs: ``penalty``, ``constraint``, ``generator_penalty``, ``obs_site``,
        ``num_data``, ``num_masks`` (see :class:`~bayesgan.jax.gan.AdversarialObjective`).

    **References**

    1. S. Nowozin, B. Cseke, R. Tomioka, *f-GAN: Training Generative Neural Samplers using
       Variational Divergence Minimization*, NeurIPS 2016.

    >>> import jax, jax.numpy as jnp, optax, numpyro, numpyro.distributions as dist
    >>> import flax.linen as nn
    >>> def model(x):
    ...     loc = numpyro.param("loc", jnp.zeros(1))
    ...     with numpyro.plate("data", x.shape[0]):
    ...         z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([1]).to_event(1))
    ...         numpyro.sample("x", dist.Delta(loc + z, event_dim=1), obs=x)
    >>> critic = nn.Sequential([nn.Dense(16), nn.relu, nn.Dense(1)])
    >>> gan = FGAN("js", generator_optimizer=optax.adam(1e-3), critic_optimizer=optax.adam(1e-3))
    >>> x = jnp.ones((8, 1))
    >>> state = gan.init(jax.random.key(0), model, critic, x)
    >>> state, info = jax.jit(gan.step)(jax.random.key(1), state, x)
    >>> int(state.step)
    1
    """

    def __init__(self, divergence, *, generator_optimizer, critic_optimizer, critic_steps=1,
                 generator_objective=None, **kwargs):
        super().__init__(
            generator_optimizer=generator_optimizer,
            critic_optimizer=critic_optimizer,
            critic_steps=critic_steps,
            **kwargs,
        )
        self.divergence = divergences.get(divergence)
        if generator_objective is None:
            generator_objective = self.divergence.default_generator_objective
        if generator_objective not in _OBJECTIVES:
            raise ValueError(f"Expected generator_objective in {_OBJECTIVES}, actual {generator_objective!r}")
        self.generator_objective = generator_objective

    def _critic_objective(self, v_real, v_fake):
        div = self.divergence
        t_real = div.activation(v_real).mean()
        estimate = t_real - div.f_star_activation(v_fake).mean()
        record = {"critic_real": t_real, "critic_fake": div.activation(v_fake).mean(), "divergence": estimate}
        return -estimate, record

    def _generator_objective(self, v_real, v_gen):
        if self.generator_objective == "saturating":
            return -self.divergence.f_star_activation(v_gen).mean()
        return -self.divergence.activation(v_gen).mean()

    def __repr__(self):
        return (
            f"FGAN({self.divergence!r}, critic_steps={self.critic_steps}, "
            f"generator_objective={self.generator_objective!r})"
        )
