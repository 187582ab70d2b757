"""
Sample-quality metrics for toy targets: PacGAN's mode coverage, exact 1-D and point-cloud
Wasserstein distances, and the target paper's chi-square calibration score.

Result dictionaries use the exported ``KEY_*`` constants as keys.

References

1. Lin, Khetan, Fanti, Oh, "PacGAN: The power of two samples in generative adversarial networks",
   NeurIPS 2018; ``MetricLogger`` in ``github.com/fjxmlzn/PacGAN``.
2. ``scipy.stats.wasserstein_distance``.
"""

import importlib
import math

import numpy as np
import scipy.optimize
import scipy.spatial.distance
import scipy.stats
import torch


__all__ = [
    "KEY_CHI2_DECILE",
    "KEY_HIGH_QUALITY",
    "KEY_MODES",
    "KEY_MODE_COUNTS",
    "KEY_REVERSE_KL",
    "KEY_W1",
    "KEY_W2",
    "chi2_decile_score",
    "mode_coverage",
    "wasserstein_1d",
    "wasserstein_2d",
]

KEY_MODES = "modes"
KEY_HIGH_QUALITY = "high_quality_fraction"
KEY_REVERSE_KL = "reverse_kl"
KEY_MODE_COUNTS = "mode_counts"
KEY_W1 = "wasserstein_1"
KEY_W2 = "wasserstein_2"
KEY_CHI2_DECILE = "chi2_decile_score"


def _to_numpy(x):
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _as_points(x, name, *, finite=False):
    x = _to_numpy(x)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(
            f"Expected {name} of shape [n, d] with n >= 1, actual {list(x.shape)}; "
            "reshape 1-D data with x.reshape(-1, 1)"
        )
    bad = ~np.isfinite(x) if finite else np.isnan(x)
    if bad.any():
        kind = "finite values" if finite else "no NaN"
        raise ValueError(f"Expected {name} with {kind}, actual {int(bad.sum())} bad entries")
    return x


def _check_positive(name, value):
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"Expected finite {name} > 0, actual {value}")


def mode_coverage(samples, means, std, *, threshold=3.0):
    """
    PacGAN's mode-coverage metrics for a mixture of isotropic Gaussians with a common ``std``.
    Each sample goes to its nearest mode by the variance-normalised distance
    :math:`\\|x - \\mu_k\\| / \\sigma` (ties to the first mode); it is *high quality* if that distance
    is below ``threshold``. With :math:`c_k` the number of high-quality samples of mode :math:`k`
    and :math:`\\hat q_k = c_k / \\sum_j c_j`,

    .. math::

        \\mathrm{modes} = \\#\\{k : c_k > 0\\}, \\qquad
        \\mathrm{KL}(\\hat q \\,\\|\\, \\mathrm{uniform}) = \\sum_{k : c_k > 0} \\hat q_k \\log(K \\hat q_k).

    .. note:: A perfect 2-D sampler scores a high-quality fraction of :math:`1 - e^{-9/2} \\approx 0.989`
        and a reverse KL of about :math:`(K - 1) / (2n)`. The reverse KL is ``inf`` when no sample
        is high quality.

    :param samples: generated points, shape ``[n, d]``, without NaN.
    :param means: the mode means, shape ``[K, d]``.
    :param float std: the isotropic standard deviation of every mode.
    :param float threshold: the high-quality radius in units of ``std``.
    :returns: a dict with keys :data:`KEY_MODES` (int), :data:`KEY_HIGH_QUALITY` (float),
        :data:`KEY_REVERSE_KL` (float) and :data:`KEY_MODE_COUNTS` (list of int).

    >>> result = mode_coverage([[1.0, 0.0], [0.0, 1.05]], [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], 0.01)
    >>> result[KEY_MODES], result[KEY_HIGH_QUALITY]
    (1, 0.5)
    """
    samples = _as_points(samples, "samples")
    means = _as_points(means, "means", finite=True)
    if samples.shape[1] != means.shape[1]:
        raise ValueError(
            f"Expected samples and means of the same dimension, actual {samples.shape[1]} and {means.shape[1]}"
        )
    _check_positive("std", std)
    _check_positive("threshold", threshold)
    counts = _high_quality_counts(samples, means, std, threshold)
    return {
        KEY_MODES: int(np.count_nonzero(counts)),
        KEY_HIGH_QUALITY: float(counts.sum() / len(samples)),
        KEY_REVERSE_KL: _reverse_kl_to_uniform(counts),
        KEY_MODE_COUNTS: counts.tolist(),
    }


def _high_quality_counts(samples, means, std, threshold):
    counts = np.zeros(len(means), dtype=np.int64)
    # The chunk bound lives in the package (bayesgan.metrics._CHUNK_ELEMENTS), where tests patch it.
    chunk = max(1, importlib.import_module(__package__)._CHUNK_ELEMENTS // means.size)
    for start in range(0, len(samples), chunk):
        diff = samples[start : start + chunk, None, :] - means[None, :, :]
        distance = np.sqrt((diff * diff / std**2).sum(-1))
        nearest = distance.argmin(-1)
        good = distance[np.arange(len(nearest)), nearest] < threshold
        counts += np.bincount(nearest[good], minlength=len(means))
    return counts


def _reverse_kl_to_uniform(counts):
    total = counts.sum()
    if total == 0:
        return math.inf
    q = counts[counts > 0] / total
    return float(np.sum(q * np.log(q * len(counts))))


def _as_values(values, weights, name):
    values = _to_numpy(values)
    if values.ndim != 1 or values.size < 1 or not np.isfinite(values).all():
        raise ValueError(f"Expected {name} as a non-empty 1-D array of finite values, actual {values!r:.80}")
    if weights is None:
        return values, np.full(values.size, 1.0 / values.size)
    weights = _to_numpy(weights)
    if weights.shape != values.shape:
        raise ValueError(
            f"Expected {name} weights of shape {list(values.shape)}, actual {list(weights.shape)}"
        )
    if not np.isfinite(weights).all() or (weights < 0).any() or not weights.sum() > 0:
        raise ValueError(f"Expected finite non-negative {name} weights with a positive sum, actual {weights!r:.80}")
    return values, weights / weights.sum()


def wasserstein_1d(u, v, u_weights=None, v_weights=None):
    """
    The exact 1-Wasserstein distance between two weighted empirical distributions on the line,
    as the integral of the absolute difference of their CDFs :math:`U` and :math:`V`,

    .. math::

        W_1(u, v) = \\int_{-\\infty}^{\\infty} |U(x) - V(x)| \\, dx.

    It agrees with ``scipy.stats.wasserstein_distance``.

    :param u: the first sample, shape ``[n]``.
    :param v: the second sample, shape ``[m]``.
    :param u_weights: non-negative weights of ``u`` with a positive sum; ``None`` for uniform.
    :param v_weights: non-negative weights of ``v`` with a positive sum; ``None`` for uniform.
    :rtype: float

    >>> wasserstein_1d([0, 1, 3], [5, 6, 8])
    5.0
    """
    u, u_weights = _as_values(u, u_weights, "u")
    v, v_weights = _as_values(v, v_weights, "v")
    grid = np.sort(np.concatenate([u, v]))
    return float(np.sum(np.abs(_cdf(u, u_weights, grid[:-1]) - _cdf(v, v_weights, grid[:-1])) * np.diff(grid)))


def _cdf(values, weights, x):
    order = np.argsort(values, kind="mergesort")
    cumulative = np.concatenate([[0.0], np.cumsum(weights[order])])
    return cumulative[np.searchsorted(values[order], x, side="right")]


def wasserstein_2d(x, y, *, p=1):
    """
    The exact p-Wasserstein distance between two uniform point clouds of equal size in any
    dimension, from the optimal assignment :math:`\\sigma` of the Euclidean cost,

    .. math::

        W_p(x, y) = \\Big(\\min_\\sigma \\frac{1}{n} \\sum_{i=1}^n \\|x_i - y_{\\sigma(i)}\\|^p\\Big)^{1/p}.

    .. note:: The assignment costs :math:`O(n^3)` time and :math:`O(n^2)` memory: keep ``n`` to a
        few thousand.

    :param x: the first cloud, shape ``[n, d]`` (or ``[n]`` for 1-D data).
    :param y: the second cloud, shape ``[n, d]`` (or ``[n]``).
    :param float p: the order, at least 1.
    :rtype: float

    >>> wasserstein_2d([[0.0, 0.0], [1.0, 0.0]], [[1.0, 3.0], [0.0, 3.0]], p=2)
    3.0
    """
    if not p >= 1 or not math.isfinite(p):
        raise ValueError(f"Expected a finite order p >= 1, actual {p}")
    x, y = (_as_points(_column(c), name, finite=True) for c, name in ((x, "x"), (y, "y")))
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"Expected x and y of the same dimension, actual {x.shape[1]} and {y.shape[1]}")
    if len(x) != len(y):
        raise ValueError(
            f"Expected x and y of equal size for the exact assignment, actual {len(x)} and {len(y)}; "
            f"subsample the larger cloud to {min(len(x), len(y))} points, e.g. x[torch.randperm(len(x))[:m]]"
        )
    cost = scipy.spatial.distance.cdist(x, y) ** p
    rows, cols = scipy.optimize.linear_sum_assignment(cost)
    return float(cost[rows, cols].mean() ** (1.0 / p))


def _column(x):
    x = _to_numpy(x)
    return x.reshape(-1, 1) if x.ndim == 1 else x


def chi2_decile_score(samples, *, num_bins=10):
    """
    The target paper's calibration score for samples meant to follow :math:`\\mathcal{N}(0, I_d)`.
    The squared norms are binned at the quantiles :math:`F^{-1}_{\\chi^2_d}(j / B)`, :math:`j = 0..B`,
    giving counts :math:`c_j` with expected value :math:`n / B` each, and

    .. math::

        \\mathrm{score} = \\sqrt{\\frac{1}{B} \\sum_{j=1}^B \\Big(\\frac{c_j}{n / B} - 1\\Big)^2}.

    .. note:: A perfect sampler scores about :math:`\\sqrt{(B - 1) / n}`, that is 0.03 for
        :math:`n = 10{,}000` and :math:`B = 10`: the multinomial noise.

    :param samples: points of shape ``[n, d]``, without NaN.
    :param int num_bins: the number :math:`B` of equiprobable bins, at least 2.
    :rtype: float

    >>> samples = torch.randn(10000, 2, generator=torch.Generator().manual_seed(0))
    >>> chi2_decile_score(samples) < 0.06
    True
    """
    if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 2:
        raise ValueError(f"Expected num_bins to be an integer >= 2, actual {num_bins!r}")
    samples = _as_points(samples, "samples")
    edges = scipy.stats.chi2.ppf(np.arange(1, num_bins) / num_bins, samples.shape[1])
    bins = np.searchsorted(edges, (samples * samples).sum(-1), side="right")
    counts = np.bincount(bins, minlength=num_bins)
    return float(np.sqrt(np.mean((counts * num_bins / len(samples) - 1.0) ** 2)))
