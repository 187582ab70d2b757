"""Wasserstein critics (Arjovsky et al., 2017; Gulrajani et al., 2017; Wu et al., 2018)."""

import torch

from ..penalties import GradientPenalty
from .gan import AdversarialLoss, _require_module

__all__ = ["WassersteinLoss", "WeightClipping"]

_DEFAULT = object()


class WeightClipping:
    r"""The original WGAN's Lipschitz constraint: every critic weight is clipped to
    :math:`[-c, c]`.

    Passed as ``constraint=`` to a loss, it projects the critic's weights in place at the start
    of every step, before the critic is evaluated. With :math:`\Pi` the clipping and
    :math:`u_t` the optimizer's iterate, the weights the loss uses are
    :math:`w_t = \Pi(u_t)`, and since the projection is in place the optimizer continues from
    :math:`w_t`: :math:`w_{t+1} = \Pi(w_t - \eta\, g(w_t))`, exactly WGAN's update. Only the
    weights left after the *last* step are unprojected: call ``constraint(critic)`` before using
    the critic outside the loss.

    :param float clip: :math:`c` (0.01 in the paper).
    """

    def __init__(self, clip=0.01):
        if not clip > 0:
            raise ValueError(f"Expected clip > 0, actual {clip!r}")
        self.clip = clip

    @torch.no_grad()
    def __call__(self, critic):
        for p in critic.parameters():
            p.clamp_(-self.clip, self.clip)

    def __repr__(self):
        return f"WeightClipping({self.clip})"


class WassersteinLoss(AdversarialLoss):
    r"""The Kantorovich-Rubinstein dual of the Wasserstein-1 distance with a critic :math:`D`,

    .. math::

        W_1(P, Q) = \sup_{\mathrm{Lip}(D) \le 1} \mathbb{E}_P[D(x)] - \mathbb{E}_Q[D(x)],
        \qquad L_D = \mathbb{E}_Q[D] - \mathbb{E}_P[D] + \text{penalty}, \qquad
        L_G = -\mathbb{E}_Q[D].

    The Lipschitz constraint is chosen by composition: ``penalty=GradientPenalty(10.0)`` (the
    default; WGAN-GP), ``GradientPenalty(..., one_sided=True)``, ``WGANDiv()`` (the paper's
    default for images), ``penalty=None, constraint=WeightClipping(0.01)`` (the original WGAN),
    or a critic built with spectral normalization and ``penalty=None``.

    ``last["wasserstein"]`` (also ``last["divergence"]``) is the critic's estimate
    :math:`\mathbb{E}_P[D] - \mathbb{E}_Q[D]`. It is a biased estimate of :math:`W_1`: the
    two-sided penalty at :math:`\lambda = 10` underestimates it; a one-sided penalty with a large
    :math:`\lambda` is closer.

    :param torch.nn.Module critic: the critic :math:`D`.
    :param penalty: a critic penalty (see :mod:`bayesgan.penalties`) or ``None``.
    :param constraint: a projection of the critic's weights, e.g. :class:`WeightClipping`.
    :param int critic_steps: critic updates per generator update (5 in WGAN and WGAN-GP).
    :param generator_penalty: e.g. :class:`~bayesgan.penalties.GeneratorGradientPenalty`.
    :param str obs_site: the model's observation site.
    :param str critic_name: the critic's name in Pyro's param store.
    :param callable backward: how to back-propagate (default ``tensor.backward()``).
    :param int num_masks: stochastic passes averaged per step (MC dropout's ``n_mcd``).
    :param int num_data: the training set's size :math:`N`, for the :math:`\mathrm{KL}/N` term
        of a guide over random weights (see :class:`~bayesgan.infer.AdversarialLoss`).

    **References**

    1. M. Arjovsky, S. Chintala, L. Bottou, *Wasserstein GAN*, ICML 2017.
    2. I. Gulrajani et al., *Improved Training of Wasserstein GANs*, NeurIPS 2017.

    >>> import torch
    >>> critic = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    >>> WassersteinLoss(critic)
    WassersteinLoss(penalty=GradientPenalty(10.0, center=1.0, one_sided=False), constraint=None, critic_steps=5)
    """

    def __init__(
        self,
        critic,
        *,
        penalty=_DEFAULT,
        constraint=None,
        critic_steps=5,
        generator_penalty=None,
        obs_site="x",
        critic_name="critic",
        backward=None,
        num_masks=1,
        num_data=None,
    ):
        _require_module(critic)
        if penalty is _DEFAULT:
            penalty = GradientPenalty(10.0)
        super().__init__(
            critic,
            critic_steps=critic_steps,
            penalty=penalty,
            constraint=constraint,
            generator_penalty=generator_penalty,
            obs_site=obs_site,
            critic_name=critic_name,
            backward=backward,
            num_masks=num_masks,
            num_data=num_data,
        )

    def _critic_objective(self, v_real, v_fake):
        real, fake = v_real.mean(), v_fake.mean()
        estimate = real - fake
        record = {"critic_real": real, "critic_fake": fake, "divergence": estimate, "wasserstein": estimate}
        return -estimate, record

    def _generator_objective(self, v_real, v_gen):
        return -v_gen.mean()

    def __repr__(self):
        return (
            f"WassersteinLoss(penalty={self.penalty!r}, constraint={self.constraint!r}, "
            f"critic_steps={self.critic_steps})"
        )
