r"""Maximum mean discrepancy (Li et al., 2015; Dziugaite et al., 2015; Li et al., 2017) as a JAX
pair, with the torch side's kernel (:class:`RBFMixture`) and estimator (:func:`mmd2`)."""

import jax.numpy as jnp

from ..kernels import PAPER_INVERSE_BANDWIDTHS
from .gan import AdversarialObjective, _average

__all__ = ["MMD", "RBFMixture", "mmd2"]


def _flat(x):
    return x.reshape(x.shape[0], -1)


class RBFMixture:
    r""":math:`k(x, y) = \sum_\lambda e^{-\lambda\|x - y\|^2}` (the torch side's kernel).

    :param inverse_bandwidths: the :math:`\lambda` values (default: the paper's set).
    """

    def __init__(self, inverse_bandwidths=PAPER_INVERSE_BANDWIDTHS):
        values = tuple(float(v) for v in inverse_bandwidths)
        if not values or min(values) <= 0:
            raise ValueError(f"Expected positive inverse bandwidths, actual {values}")
        self.inverse_bandwidths = values

    def __call__(self, x, y):
        x, y = _flat(x), _flat(y)
        d2 = jnp.maximum((x**2).sum(1, keepdims=True) + (y**2).sum(1) - 2 * x @ y.T, 0.0)
        return sum(jnp.exp(-lam * d2) for lam in self.inverse_bandwidths)

    def __repr__(self):
        return f"RBFMixture({self.inverse_bandwidths})"


def mmd2(x, y, kernel, *, estimator="unbiased"):
    """The squared MMD between samples ``x`` and ``y`` (:func:`bayesgan.kernels.mmd2`).

    :param str estimator: ``"unbiased"`` (U-statistic) or ``"biased"`` (V-statistic).

    >>> import jax.numpy as jnp
    >>> x = jnp.arange(6.0).reshape(3, 2)
    >>> float(mmd2(x, x, RBFMixture(), estimator="biased"))
    0.0
    """
    if estimator not in ("unbiased", "biased"):
        raise ValueError(f"Expected estimator 'unbiased' or 'biased', actual {estimator!r}")
    n, m = x.shape[0], y.shape[0]
    if x.shape[1:] != y.shape[1:]:
        raise ValueError(f"Expected samples of one shape, actual {tuple(x.shape)} and {tuple(y.shape)}")
    if estimator == "unbiased" and (n < 2 or m < 2):
        raise ValueError(f"Expected at least 2 samples each for the unbiased estimate, actual {n} and {m}")
    kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
    if estimator == "biased":
        return kxx.mean() + kyy.mean() - 2 * kxy.mean()
    off_x = (kxx.sum() - jnp.trace(kxx)) / (n * (n - 1))
    off_y = (kyy.sum() - jnp.trace(kyy)) / (m * (m - 1))
    return off_x + off_y - 2 * kxy.mean()


class MMD(AdversarialObjective):
    r"""Generative moment matching, the JAX twin of :class:`bayesgan.infer.MMDLoss`:
    :math:`L_G = \mathrm{MMD}^2_k(P, Q_\theta)` with a fixed kernel and no critic
    (``critic=None`` in ``init``; the critic's loss is then 0), or on learned features
    :math:`\phi` with a critic that maximizes it (MMD-GAN). ``GANInfo.divergence`` is the
    estimate.

    :param kernel: ``kernel(a, b) -> Gram matrix`` (default :class:`RBFMixture`).
    :param str estimator: ``"biased"`` (the paper's) or ``"unbiased"``.
    :param generator_optimizer: optax transformation of the generator.
    :param critic_optimizer: optax transformation of the critic, if any.
    :param int critic_steps: critic updates per generator update (1 without a critic).
    :param kwargs: ``generator_penalty`` (e.g. ``wrt="samples"``), ``obs_site``, ``num_data``, ``num_masks``.

    **References**

    1. Y. Li, K. Swersky, R. Zemel, *Generative Moment Matching Networks*, ICML 2015.
    2. C.-L. Li et al., *MMD GAN*, NeurIPS 2017.

    >>> import optax
    >>> MMD(generator_optimizer=optax.adam(1e-3))
    MMD(kernel=RBFMixture((1.0, 0.5, 0.1, 0.02, 0.01, 0.002, 0.001)), estimator='biased')
    """

    def __init__(self, kernel=None, *, estimator="biased", generator_optimizer, critic_optimizer=None,
                 critic_steps=1, **kwargs):
        if estimator not in ("biased", "unbiased"):
            raise ValueError(f"Expected estimator 'biased' or 'unbiased', actual {estimator!r}")
        super().__init__(generator_optimizer=generator_optimizer, critic_optimizer=critic_optimizer,
                         critic_steps=critic_steps, **kwargs)
        self.kernel = kernel if kernel is not None else RBFMixture()
        self.estimator = estimator

    def _check_critic(self, critic):
        if critic is None:
            if self.critic_steps != 1:
                raise ValueError(f"Expected critic_steps=1 without a critic, actual {self.critic_steps}")
            return
        super()._check_critic(critic)

    def _mmd2(self, x, y):
        return mmd2(x, y, self.kernel, estimator=self.estimator)

    def _critic_run(self, critic_params, x, critic_state=None, **kwargs):
        if self.critic is None:
            return x, critic_state
        return super()._critic_run(critic_params, x, critic_state, **kwargs)

    def _critic_update(self, key, critic_params, state, reals, fakes):
        if self.critic is not None:
            return super()._critic_update(key, critic_params, state, reals, fakes)
        estimate = _average([self._mmd2(real, fake) for real, fake in zip(reals, fakes)])
        zero = jnp.zeros_like(estimate)
        return critic_params, state.critic_opt_state, zero, {"divergence": estimate}, zero, state.critic_state

    def _critic_objective(self, v_real, v_fake):
        estimate = self._mmd2(v_real, v_fake)
        return -estimate, {"divergence": estimate}

    def _generator_objective(self, v_real, v_gen):
        return self._mmd2(v_real, v_gen)

    def __repr__(self):
        return f"MMD(kernel={self.kernel!r}, estimator={self.estimator!r})"
