"""The relativistic average GAN (Jolicoeur-Martineau, 2018)."""

import math

import torch.nn.functional as F

from .gan import AdversarialLoss, _require_module

__all__ = ["RelativisticLoss"]


class RelativisticLoss(AdversarialLoss):
    r"""Relativistic average GAN with the logistic (BCE-with-logits) loss, as in the paper's code.

    The critic :math:`C` judges whether real data are *more realistic than the average fake*:
    with :math:`\bar C_P = \mathbb{E}_P[C]` and :math:`\bar C_Q = \mathbb{E}_Q[C]`,

    .. math::

        L_D = \tfrac12\big(\mathbb{E}_P[\mathrm{softplus}(-(C(x) - \bar C_Q))]
              + \mathbb{E}_Q[\mathrm{softplus}(C(\tilde x) - \bar C_P)]\big),

        L_G = \tfrac12\big(\mathbb{E}_P[\mathrm{softplus}(C(x) - \bar C_Q)]
              + \mathbb{E}_Q[\mathrm{softplus}(-(C(\tilde x) - \bar C_P))]\big).

    Unlike the standard GAN, the generator's loss depends on the real data too.
    ``last["divergence"]`` is :math:`\log 2 - L_D`, zero for a critic that cannot tell the two apart.

    :param torch.nn.Module critic: the critic :math:`C` (raw logits).
    :param penalty: an optional critic penalty (see :mod:`bayesgan.penalties`).
    :param int critic_steps: critic updates per generator update (1 in the paper's code).
    :param generator_penalty: e.g. :class:`~bayesgan.penalties.GeneratorGradientPenalty`.
    :param str obs_site: the model's observation site.
    :param str critic_name: the critic's name in Pyro's param store.
    :param callable backward: how to back-propagate (default ``tensor.backward()``).
    :param int num_masks: stochastic passes averaged per step (MC dropout's ``n_mcd``).
    :param int num_data: the training set's size :math:`N`, for the :math:`\mathrm{KL}/N` term
        of a guide over random weights (see :class:`~bayesgan.infer.AdversarialLoss`).

    **References**

    1. A. Jolicoeur-Martineau, *The relativistic discriminator: a key element missing from
       standard GAN*, ICLR 2019.

    >>> import torch
    >>> RelativisticLoss(torch.nn.Linear(2, 1))
    RelativisticLoss(penalty=None, critic_steps=1)
    """

    def __init__(
        self,
        critic,
        *,
        penalty=None,
        critic_steps=1,
        generator_penalty=None,
        obs_site="x",
        critic_name="critic",
        backward=None,
        num_masks=1,
        num_data=None,
    ):
        _require_module(critic)
        super().__init__(
            critic,
            critic_steps=critic_steps,
            penalty=penalty,
            generator_penalty=generator_penalty,
            obs_site=obs_site,
            critic_name=critic_name,
            backward=backward,
            num_masks=num_masks,
            num_data=num_data,
        )

    @staticmethod
    def _pair_loss(v_up, v_down):
        """Mean logistic loss for ``v_up`` judged more real than the average ``v_down``, and vice versa."""
        return 0.5 * (F.softplus(-(v_up - v_down.mean())).mean() + F.softplus(v_down - v_up.mean()).mean())

    def _critic_objective(self, v_real, v_fake):
        loss = self._pair_loss(v_real, v_fake)
        record = {"critic_real": v_real.mean(), "critic_fake": v_fake.mean(), "divergence": math.log(2) - loss}
        return loss, record

    def _generator_objective(self, v_real, v_gen):
        return self._pair_loss(v_gen, v_real)

    def __repr__(self):
        return f"RelativisticLoss(penalty={self.penalty!r}, critic_steps={self.critic_steps})"
