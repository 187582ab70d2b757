r"""Wasserstein critics (Arjovsky et al., 2017; Gulrajani et al., 2017) as a JAX pair."""

from .gan import AdversarialObjective
from .penalties import GradientPenalty

__all__ = ["Wasserstein"]

_DEFAULT = object()


class Wasserstein(AdversarialObjective):
    r"""The Kantorovich-Rubinstein dual, the JAX twin of :class:`bayesgan.infer.WassersteinLoss`:

    .. math::

        L_D = \mathbb{E}_Q[D] - \mathbb{E}_P[D] + \text{penalty}, \qquad L_G = -\mathbb{E}_Q[D].

    The Lipschitz constraint by composition: ``penalty=GradientPenalty(10.0)`` (default),
    ``R1``/``R2``/``WGANDiv`` from :mod:`bayesgan.jax.penalties`, or ``penalty=None,
    constraint=WeightClipping(0.01)``. ``GANInfo.divergence`` is the estimate
    :math:`\mathbb{E}_P[D] - \mathbb{E}_Q[D]`.

    :param generator_optimizer: optax transformation of the generator.
    :param critic_optimizer: optax transformation of the critic.
    :param penalty: a critic penalty or ``None``.
    :param constraint: a projection of the critic's parameters, e.g. ``WeightClipping``.
    :param int critic_steps: critic updates per generator update (5 in WGAN and WGAN-GP).
    :param kwargs: ``generator_penalty``, ``obs_site``, ``num_data``, ``num_masks``.

    **References**

    1. M. Arjovsky, S. Chintala, L. Bottou, *Wasserstein GAN*, ICML 2017.
    2. I. Gulrajani et al., *Improved Training of Wasserstein GANs*, NeurIPS 2017.

    >>> import optax
    >>> Wasserstein(generator_optimizer=optax.adam(1e-4), critic_optimizer=optax.adam(1e-4))
    Wasserstein(penalty=GradientPenalty(10.0, center=1.0, one_sided=False), constraint=None, critic_steps=5)
    """

    def __init__(self, *, generator_optimizer, critic_optimizer, penalty=_DEFAULT, constraint=None,
                 critic_steps=5, **kwargs):
        if penalty is _DEFAULT:
            penalty = GradientPenalty(10.0)
        super().__init__(
            generator_optimizer=generator_optimizer,
            critic_optimizer=critic_optimizer,
            penalty=penalty,
            constraint=constraint,
            critic_steps=critic_steps,
            **kwargs,
        )

    def _critic_objective(self, v_real, v_fake):
        real, fake = v_real.mean(), v_fake.mean()
        estimate = real - fake
        return -estimate, {"critic_real": real, "critic_fake": fake, "divergence": estimate}

    def _generator_objective(self, v_real, v_gen):
        return -v_gen.mean()

    def __repr__(self):
        return (
            f"Wasserstein(penalty={self.penalty!r}, constraint={self.constraint!r}, "
            f"critic_steps={self.critic_steps})"
        )
