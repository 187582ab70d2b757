r"""The relativistic average GAN (Jolicoeur-Martineau, 2018) as a JAX pair."""

import math

from jax.nn import softplus

from .gan import AdversarialObjective

__all__ = ["Relativistic"]


def _pair_loss(v_up, v_down):
    return 0.5 * (softplus(-(v_up - v_down.mean())).mean() + softplus(v_down - v_up.mean()).mean())


class Relativistic(AdversarialObjective):
    r"""Relativistic average GAN with the logistic loss, the JAX twin of
    :class:`bayesgan.infer.RelativisticLoss`:

    .. math::

        L_D = \tfrac12\big(\mathbb{E}_P[\mathrm{softplus}(-(C(x) - \bar C_Q))]
              + \mathbb{E}_Q[\mathrm{softplus}(C(\tilde x) - \bar C_P)]\big),

    and :math:`L_G` the same with real and fake exchanged. ``GANInfo.divergence`` is
    :math:`\log 2 - L_D`.

    :param generator_optimizer: optax transformation of the generator.
    :param critic_optimizer: optax transformation of the critic.
    :param kwargs: ``penalty``, ``critic_steps``, ``generator_penalty``, ``obs_site``, ``num_data``, ``num_masks``.

    **References**

    1. A. Jolicoeur-Martineau, *The relativistic discriminator: a key element missing from
       standard GAN*, ICLR 2019.

    >>> import optax
    >>> Relativistic(generator_optimizer=optax.adam(1e-4), critic_optimizer=optax.adam(1e-4))
    Relativistic(penalty=None, critic_steps=1)
    """

    def __init__(self, *, generator_optimizer, critic_optimizer, **kwargs):
        super().__init__(generator_optimizer=generator_optimizer, critic_optimizer=critic_optimizer, **kwargs)

    def _critic_objective(self, v_real, v_fake):
        loss = _pair_loss(v_real, v_fake)
        return loss, {"critic_real": v_real.mean(), "critic_fake": v_fake.mean(), "divergence": math.log(2) - loss}

    def _generator_objective(self, v_real, v_gen):
        return _pair_loss(v_gen, v_real)

    def __repr__(self):
        return f"Relativistic(penalty={self.penalty!r}, critic_steps={self.critic_steps})"
