r"""Kernels and the kernel two-sample statistic MMD².

.. math::

    \mathrm{MMD}^2(P, Q) = \mathbb{E}[k(x, x')] + \mathbb{E}[k(y, y')] - 2\,\mathbb{E}[k(x, y)],
    \qquad x, x' \sim P,\; y, y' \sim Q.

The *biased* (V-statistic) estimate averages over all pairs, diagonal included; the *unbiased*
(U-statistic) estimate drops the diagonal terms :math:`k(x_i, x_i)` and :math:`k(y_j, y_j)`, so
that its expectation is exactly MMD² (it can be negative).

>>> import torch
>>> x = torch.randn(50, 2, dtype=torch.float64)
>>> float(mmd2(x, x, RBFMixture(), estimator="biased"))
0.0
"""

import torch

__all__ = ["GMMN_BANDWIDTHS", "PAPER_INVERSE_BANDWIDTHS", "Polynomial", "RBFMixture", "mmd2"]

#: The inverse bandwidths :math:`\lambda` of the paper's code: :math:`\sum_\lambda e^{-\lambda \|x - y\|^2}`.
PAPER_INVERSE_BANDWIDTHS = (1.0, 0.5, 0.1, 0.02, 0.01, 0.002, 0.001)
#: The bandwidths :math:`\sigma` of GMMN (Li et al., 2015): :math:`e^{-\|x - y\|^2 / (2\sigma^2)}`.
GMMN_BANDWIDTHS = (2.0, 5.0, 10.0, 20.0, 40.0, 80.0)


def _flat(x):
    return x.reshape(x.shape[0], -1)


class RBFMixture:
    r"""A sum of Gaussian (RBF) kernels, :math:`k(x, y) = \sum_\lambda e^{-\lambda\|x - y\|^2}`.

    :param inverse_bandwidths: the :math:`\lambda` values (default: the paper's set).
    :param bandwidths: alternatively the :math:`\sigma` values, :math:`\lambda = 1/(2\sigma^2)`
        (e.g. :data:`GMMN_BANDWIDTHS`).
    """

    def __init__(self, inverse_bandwidths=None, *, bandwidths=None):
        if inverse_bandwidths is not None and bandwidths is not None:
            raise ValueError("Expected inverse_bandwidths or bandwidths, actual both")
        if bandwidths is not None:
            bandwidths = tuple(float(s) for s in bandwidths)
            if not bandwidths or min(bandwidths) <= 0:
                raise ValueError(f"Expected positive bandwidths, actual {bandwidths}")
            inverse_bandwidths = [1.0 / (2.0 * s**2) for s in bandwidths]
        if inverse_bandwidths is None:
            inverse_bandwidths = PAPER_INVERSE_BANDWIDTHS
        values = tuple(float(v) for v in inverse_bandwidths)
        if not values or min(values) <= 0:
            raise ValueError(f"Expected positive inverse bandwidths, actual {values}")
        self.inverse_bandwidths = values

    def __call__(self, x, y):
        # |x|^2 + |y|^2 - 2 x.y is twice differentiable; torch.cdist has no double backward for
        # 25 rows or fewer (generator gradient penalties and Hessian-vector products need one).
        x, y = _flat(x), _flat(y)
        d2 = (x.pow(2).sum(1, keepdim=True) + y.pow(2).sum(1) - 2 * x @ y.T).clamp(min=0)
        return sum(torch.exp(-lam * d2) for lam in self.inverse_bandwidths)

    def __repr__(self):
        return f"RBFMixture({self.inverse_bandwidths})"


class Polynomial:
    r"""The polynomial kernel :math:`k(x, y) = (\gamma\, x^\top y + c)^d`; the KID kernel is
    ``degree=3``, :math:`\gamma = 1/\text{dim}`, ``coef=1`` (the default ``gamma=None``).
    """

    def __init__(self, degree=3, gamma=None, coef=1.0):
        self.degree, self.gamma, self.coef = degree, gamma, coef

    def __call__(self, x, y):
        x, y = _flat(x), _flat(y)
        gamma = 1.0 / x.shape[1] if self.gamma is None else self.gamma
        return (gamma * x @ y.T + self.coef) ** self.degree

    def __repr__(self):
        return f"Polynomial(degree={self.degree}, gamma={self.gamma}, coef={self.coef})"


def mmd2(x, y, kernel, *, estimator="unbiased"):
    """The squared maximum mean discrepancy between samples ``x`` (``[n, ...]``) and ``y``
    (``[m, ...]``), differentiable in both.

    :param torch.Tensor x: samples of P.
    :param torch.Tensor y: samples of Q.
    :param callable kernel: ``kernel(a, b) -> [len(a), len(b)]`` Gram matrix.
    :param str estimator: ``"unbiased"`` (U-statistic, needs two or more samples each) or
        ``"biased"`` (V-statistic, the paper's choice).
    :rtype: torch.Tensor
    """
    if estimator not in ("unbiased", "biased"):
        raise ValueError(f"Expected estimator 'unbiased' or 'biased', actual {estimator!r}")
    n, m = x.shape[0], y.shape[0]
    if x.shape[1:] != y.shape[1:]:
        raise ValueError(f"Expected samples of one shape, actual {tuple(x.shape)} and {tuple(y.shape)}")
    kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
    if estimator == "biased":
        return kxx.mean() + kyy.mean() - 2 * kxy.mean()
    if n < 2 or m < 2:
        raise ValueError(f"Expected at least 2 samples each for the unbiased estimate, actual {n} and {m}")
    off_x = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    off_y = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return off_x + off_y - 2 * kxy.mean()
