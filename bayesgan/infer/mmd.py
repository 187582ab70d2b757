"""Maximum mean discrepancy objectives (Li et al., 2015; Dziugaite et al., 2015; Li et al., 2017)."""

import torch

from ..distributed import gather
from ..kernels import RBFMixture, mmd2
from .gan import AdversarialLoss, _call_frozen

__all__ = ["MMDLoss"]


class MMDLoss(AdversarialLoss):
    r"""Generative moment matching: the generator minimizes the squared MMD between the data and
    its samples,

    .. math::

        L_G = \mathrm{MMD}^2_k(P, Q_\theta) = \mathbb{E}[k(x, x')] + \mathbb{E}[k(\tilde x, \tilde x')]
              - 2\,\mathbb{E}[k(x, \tilde x)],

    with a fixed kernel and no critic (the paper's toy: a mixture of RBF kernels, the biased
    estimate). With ``critic=`` the kernel acts on learned features :math:`\phi(x)` and the critic
    maximizes the same MMD² (MMD-GAN), so :math:`L_D = -\mathrm{MMD}^2_k(\phi(P), \phi(Q))`.
    Without a critic the first returned loss is 0.

    ``last["mmd2"]`` (also ``last["divergence"]``) is the estimate at the step.

    :param kernel: ``kernel(a, b) -> Gram matrix``; default :class:`~bayesgan.kernels.RBFMixture`
        with the paper's inverse bandwidths.
    :param str estimator: ``"biased"`` (V-statistic, the paper's code) or ``"unbiased"``.
    :param torch.nn.Module critic: optional feature extractor :math:`\phi`.
    :param int critic_steps: critic updates per generator update (only with a critic).
    :param generator_penalty: e.g. ``GeneratorGradientPenalty(weight, wrt="samples")``, the
        paper's input-gradient regularizer for MMD.
    :param str obs_site: the model's observation site.
    :param str critic_name: the critic's name in Pyro's param store.
    :param callable backward: how to back-propagate (default ``tensor.backward()``).
    :param int num_masks: stochastic passes averaged per step (MC dropout's ``n_mcd``).
    :param int num_data: the training set's size :math:`N`, for the :math:`\mathrm{KL}/N` term
        of a guide over random weights (see :class:`~bayesgan.infer.AdversarialLoss`).

    **References**

    1. Y. Li, K. Swersky, R. Zemel, *Generative Moment Matching Networks*, ICML 2015.
    2. G. K. Dziugaite, D. M. Roy, Z. Ghahramani, *Training generative neural networks via
       Maximum Mean Discrepancy optimization*, UAI 2015.
    3. C.-L. Li et al., *MMD GAN: Towards Deeper Understanding of Moment Matching Network*,
       NeurIPS 2017.

    >>> MMDLoss()
    MMDLoss(kernel=RBFMixture((1.0, 0.5, 0.1, 0.02, 0.01, 0.002, 0.001)), estimator='biased', critic=None)
    """

    def __init__(
        self,
        kernel=None,
        *,
        estimator="biased",
        critic=None,
        critic_steps=1,
        generator_penalty=None,
        obs_site="x",
        critic_name="critic",
        backward=None,
        num_masks=1,
        num_data=None,
    ):
        if estimator not in ("biased", "unbiased"):
            raise ValueError(f"Expected estimator 'biased' or 'unbiased', actual {estimator!r}")
        if critic is None and critic_steps != 1:
            raise ValueError(f"Expected critic_steps=1 without a critic, actual {critic_steps}")
        super().__init__(
            critic,
            critic_steps=critic_steps,
            generator_penalty=generator_penalty,
            obs_site=obs_site,
            critic_name=critic_name,
            backward=backward,
            num_masks=num_masks,
            num_data=num_data,
        )
        self.kernel = kernel if kernel is not None else RBFMixture()
        self.estimator = estimator

    def _mmd2(self, x, y):
        # A pairwise statistic, not a mean over samples: on several processes it is computed on
        # the global batch (bayesgan.distributed.gather), so DDP's average is the global gradient.
        return mmd2(gather(x), gather(y), self.kernel, estimator=self.estimator)

    def _losses(self, model, guide, args, kwargs, generator):
        real, fake, model_trace, guide_trace = self._sample(model, guide, args, kwargs, generator)
        if self.critic is None:
            generator_loss = self._mmd2(real, fake)
            critic_loss = torch.zeros((), dtype=generator_loss.dtype, device=generator_loss.device)
            estimate = generator_loss
        else:
            self._register(self.critic_name, self.critic)
            phi_real = self.critic(real)
            estimate = self._mmd2(phi_real, self.critic(fake.detach()))
            critic_loss = -estimate
            if generator:
                v_gen = _call_frozen(self.critic, fake, higher_order=self.generator_penalty is not None)
                generator_loss = self._mmd2(phi_real.detach(), v_gen)
            else:
                generator_loss = estimate.detach()
        record = {"mmd2": estimate, "divergence": estimate}
        generator_loss = self._add_generator_penalty(generator_loss, record, model_trace, guide_trace, fake, generator)
        return (critic_loss, generator_loss), record

    def __repr__(self):
        return f"MMDLoss(kernel={self.kernel!r}, estimator={self.estimator!r}, critic={self.critic!r})"
