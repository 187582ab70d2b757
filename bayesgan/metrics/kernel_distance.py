r"""Kernel Inception Distance (KID) on any features: the unbiased MMD² with the cubic polynomial
kernel, averaged over random subsets.

References

1. Bińkowski, Sutherland, Arbel, Gretton, "Demystifying MMD GANs", ICLR 2018 (arXiv 1801.01401).
2. NVIDIA's ``metrics/kernel_inception_distance.py`` (StyleGAN2-ADA) and torchmetrics'
   ``KernelInceptionDistance``: 100 subsets of size 1000.
"""

import torch

from ..kernels import Polynomial, mmd2

__all__ = ["KEY_KID", "KEY_KID_STD", "kid", "mmd2"]

KEY_KID = "kid"
KEY_KID_STD = "kid_std"


def kid(real_features, fake_features, *, num_subsets=100, subset_size=1000, generator=None, estimator="unbiased"):
    r"""Kernel Inception Distance (Binkowski et al., 2018) on any features: the unbiased MMD²
    with the cubic polynomial kernel :math:`k(x, y) = (x^\top y / d + 1)^3`, averaged over
    ``num_subsets`` random subsets of size ``m = min(n_real, n_fake, subset_size)`` drawn
    without replacement.

    .. note:: The unbiased estimate has expectation exactly MMD² (zero when both sets come from one
        distribution), so it can be negative; the biased (V-statistic) one exceeds it on average by
        :math:`(\mathbb{E}\,k(x, x) - \mathbb{E}\,k(x, x')) / m` per set. ``estimator="biased"`` is
        there for that comparison, not for reporting.

    :param real_features: ``[n, d]`` features of real data.
    :param fake_features: ``[m, d]`` features of generated data.
    :param int num_subsets: the number of subsets (100 in StyleGAN's and torchmetrics' code).
    :param int subset_size: the largest subset size (1000 in both).
    :param torch.Generator generator: the random number generator for the subsets.
    :param str estimator: ``"unbiased"`` (KID) or ``"biased"``.
    :returns: ``{KEY_KID: mean, KEY_KID_STD: standard deviation over subsets}``.
    :rtype: dict

    >>> g = torch.Generator().manual_seed(0)
    >>> x, y = torch.randn(2, 500, 8, dtype=torch.float64, generator=g)
    >>> abs(kid(x, y, num_subsets=10, generator=g)[KEY_KID]) < 0.01
    True
    """
    real = torch.as_tensor(real_features, dtype=torch.float64)
    fake = torch.as_tensor(fake_features, dtype=torch.float64)
    if real.dim() != 2 or fake.dim() != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"Expected features of shape [n, d] with one d, actual {tuple(real.shape)} and {tuple(fake.shape)}"
        )
    if not (isinstance(num_subsets, int) and num_subsets >= 1):
        raise ValueError(f"Expected num_subsets to be an int >= 1, actual {num_subsets!r}")
    m = min(real.shape[0], fake.shape[0], subset_size)
    if m < 2:
        raise ValueError(f"Expected at least 2 samples on each side and subset_size >= 2, actual {m}")
    kernel = Polynomial(degree=3)
    values = []
    for _ in range(num_subsets):
        i = torch.randperm(real.shape[0], generator=generator)[:m]
        j = torch.randperm(fake.shape[0], generator=generator)[:m]
        values.append(mmd2(real[i], fake[j], kernel, estimator=estimator))
    values = torch.stack(values)
    std = values.std().item() if num_subsets > 1 else 0.0
    return {KEY_KID: values.mean().item(), KEY_KID_STD: std}
