r"""The Fréchet distance between Gaussians fitted to two feature sets (FID in Inception features),
and feature statistics that can be cached with the protocol that produced them.

.. math::

    d^2 = \|\mu_1 - \mu_2\|^2 + \operatorname{tr}\big(\Sigma_1 + \Sigma_2 - 2 (\Sigma_1 \Sigma_2)^{1/2}\big).

The trace of the matrix square root is computed in float64 as the nuclear norm (sum of singular
values) of :math:`\Sigma_2^{1/2} \Sigma_1^{1/2}`, whose square is similar to :math:`\Sigma_1\Sigma_2`:
two symmetric eigendecompositions and one SVD, all real. Unlike the square roots of the
eigenvalues of :math:`\Sigma_1 \Sigma_2` (torch-fidelity, torchmetrics) or ``scipy.linalg.sqrtm``
(pytorch-fid, TTUR), this takes no square root of rounding noise, so a rank-deficient covariance
(fewer samples than feature dimensions) costs no accuracy. Given features rather than statistics,
:func:`fid` with fewer samples than dimensions works on the samples directly (the singular values
of :math:`X_1 X_2^\top`), which is exact up to rounding.

References

1. Heusel, Ramsauer, Unterthiner, Nessler, Hochreiter, "GANs trained by a two time-scale update rule
   converge to a local Nash equilibrium", NeurIPS 2017 (``github.com/bioinf-jku/TTUR``).
2. Dowson, Landau, "The Fréchet distance between multivariate normal distributions", 1982.
3. torch-fidelity ``metric_fid.py``; torchmetrics ``image/fid.py``; pytorch-fid ``fid_score.py``.
"""

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

__all__ = ["KEY_FID", "FeatureStatistics", "feature_statistics", "fid", "frechet_distance"]

KEY_FID = "fid"

# The version of the .npz layout written by FeatureStatistics.save.
_FORMAT = 1


def _features(x, name):
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"Expected {name} of shape [n, d] with n >= 2, actual {list(x.shape)}")
    if not np.isfinite(x).all():
        raise ValueError(f"Expected {name} with finite values, actual {int((~np.isfinite(x)).sum())} bad entries")
    return x


def _symmetric_sqrt_factor(sigma):
    """``diag(sqrt(l)) V^T`` for ``sigma = V diag(l) V^T``: a square root up to a rotation.
    Eigenvalues within rounding of zero (``d * eps * max(l)``) count as zero: their square roots
    would be noise of order ``sqrt(eps)``, not small."""
    values, vectors = np.linalg.eigh((sigma + sigma.T) / 2)
    tolerance = len(values) * np.finfo(np.float64).eps * max(values.max(initial=0.0), 0.0)
    return np.sqrt(np.where(values > tolerance, values, 0.0))[:, None] * vectors.T


def _trace_sqrt_product(sigma1, sigma2):
    # tr (S1 S2)^{1/2} = ||S2^{1/2} S1^{1/2}||_* (nuclear norm). With S = V D V^T and F = D^{1/2} V^T,
    # S^{1/2} = V F = F^T V^T, so S2^{1/2} S1^{1/2} = V2 (F2 F1^T) V1^T has the singular values of F2 F1^T.
    product = _symmetric_sqrt_factor(sigma2) @ _symmetric_sqrt_factor(sigma1).T
    return float(np.linalg.svd(product, compute_uv=False).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2, *, eps=1e-6):
    r"""The squared Fréchet (2-Wasserstein) distance between :math:`\mathcal{N}(\mu_1, \Sigma_1)` and
    :math:`\mathcal{N}(\mu_2, \Sigma_2)`,

    .. math::

        \|\mu_1 - \mu_2\|^2 + \operatorname{tr}\Sigma_1 + \operatorname{tr}\Sigma_2
        - 2 \operatorname{tr}(\Sigma_1 \Sigma_2)^{1/2},

    in float64. Eigenvalues of the covariances within rounding of zero (below
    :math:`d\,\epsilon_\text{mach} \lambda_\max`) count as zero.

    .. note:: Should a decomposition fail to converge, the computation is repeated once with
        ``eps`` added to both diagonals, as pytorch-fid and TTUR do, with a :class:`RuntimeWarning`.

    :param mu1: the first mean, shape ``[d]``.
    :param sigma1: the first covariance, shape ``[d, d]``, symmetric positive semi-definite.
    :param mu2: the second mean, shape ``[d]``.
    :param sigma2: the second covariance, shape ``[d, d]``.
    :param float eps: the diagonal offset of the fallback.
    :rtype: float

    >>> frechet_distance([0.0, 0.0], [[4.0, 0.0], [0.0, 1.0]], [3.0, 0.0], [[1.0, 0.0], [0.0, 1.0]])
    10.0
    """
    mu1, mu2 = (np.asarray(m, dtype=np.float64) for m in (mu1, mu2))
    sigma1, sigma2 = (np.asarray(s, dtype=np.float64) for s in (sigma1, sigma2))
    d = mu1.shape[0] if mu1.ndim == 1 else -1
    if mu1.ndim != 1 or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(
            "Expected mu1, sigma1, mu2, sigma2 of shapes [d], [d, d], [d], [d, d], actual "
            f"{list(mu1.shape)}, {list(sigma1.shape)}, {list(mu2.shape)}, {list(sigma2.shape)}"
        )
    if not all(np.isfinite(a).all() for a in (mu1, sigma1, mu2, sigma2)):
        raise ValueError("Expected finite means and covariances, actual non-finite entries")
    if not eps > 0 or not math.isfinite(eps):
        raise ValueError(f"Expected finite eps > 0, actual {eps}")
    try:
        trace_sqrt = _trace_sqrt_product(sigma1, sigma2)
    except np.linalg.LinAlgError as error:
        warnings.warn(f"Frechet distance: {error}; adding {eps} to the covariance diagonals", RuntimeWarning)
        offset = eps * np.eye(d)
        trace_sqrt = _trace_sqrt_product(sigma1 + offset, sigma2 + offset)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)


def fid(features1, features2):
    r"""The Fréchet distance between Gaussians fitted to two feature sets (FID when the features
    are Inception pool features): means and unbiased covariances (``np.cov``), then
    :func:`frechet_distance`. With fewer samples than dimensions the trace term is the nuclear norm
    of :math:`X_1 X_2^\top / \sqrt{(n_1 - 1)(n_2 - 1)}` for the centred features :math:`X_i`, the
    same number computed without a :math:`d \times d` matrix.

    :param features1: ``[n1, d]`` features, ``n1 >= 2``.
    :param features2: ``[n2, d]`` features, ``n2 >= 2``.
    :rtype: float

    >>> x = torch.randn(100, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    >>> abs(fid(x, x)) < 1e-12, round(fid(x, x + 2.0), 10)
    (True, 12.0)
    """
    x1, x2 = _features(features1, "features1"), _features(features2, "features2")
    if x1.shape[1] != x2.shape[1]:
        raise ValueError(f"Expected features of one dimension, actual {x1.shape[1]} and {x2.shape[1]}")
    (n1, d), n2 = x1.shape, x2.shape[0]
    if max(n1, n2) > d:
        return frechet_distance(*_moments(x1), *_moments(x2))
    mu1, mu2 = x1.mean(0), x2.mean(0)
    c1, c2 = x1 - mu1, x2 - mu2
    trace_sqrt = np.linalg.svd(c1 @ c2.T, compute_uv=False).sum() / math.sqrt((n1 - 1) * (n2 - 1))
    diff = mu1 - mu2
    traces = (c1 * c1).sum() / (n1 - 1) + (c2 * c2).sum() / (n2 - 1)
    return float(diff @ diff + traces - 2.0 * trace_sqrt)


def _moments(x):
    return x.mean(0), np.atleast_2d(np.cov(x, rowvar=False))


@dataclass(frozen=True, eq=False)
class FeatureStatistics:
    """The mean and covariance of a feature set, how many samples gave them, the protocol that
    produced the features (a JSON-serialisable dict), and optionally the features themselves
    (kept for KID and precision/recall). :meth:`save` and :meth:`load` round-trip it exactly
    through one ``.npz`` file (features that float32 holds exactly, as extractor outputs are,
    stored as float32).

    :param numpy.ndarray mu: ``[d]``.
    :param numpy.ndarray sigma: ``[d, d]``.
    :param int num_samples: the number of feature vectors.
    :param dict protocol: how the features were made (extractor, weights hash, resizing, ...).
    :param numpy.ndarray features: ``[num_samples, d]`` or ``None``.
    """

    mu: np.ndarray
    sigma: np.ndarray
    num_samples: int
    protocol: dict = field(default_factory=dict)
    features: np.ndarray | None = None

    def save(self, path):
        """Write to ``path`` (``.npz``); the protocol is stored as JSON."""
        arrays = {"mu": self.mu, "sigma": self.sigma, "num_samples": np.int64(self.num_samples),
                  "protocol": np.array(json.dumps(self.protocol, sort_keys=True)), "format": np.int64(_FORMAT)}
        if self.features is not None:
            features = np.asarray(self.features)
            narrow = features.astype(np.float32)
            arrays["features"] = narrow if np.array_equal(narrow, features) else features
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:  # a file object: np.savez would append ".npz" to a bare name
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path):
        """Read a file written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as data:
            if "format" not in data or int(data["format"]) != _FORMAT:
                raise ValueError(f"Expected a FeatureStatistics file of format {_FORMAT}, actual {path}")
            features = data["features"].astype(np.float64) if "features" in data else None
            return cls(data["mu"], data["sigma"], int(data["num_samples"]), json.loads(str(data["protocol"])), features)


def feature_statistics(features, *, protocol=None, keep_features=False):
    """The :class:`FeatureStatistics` of ``[n, d]`` features (float64 mean and ``np.cov``).

    :param features: ``[n, d]``, ``n >= 2``.
    :param dict protocol: recorded with the statistics.
    :param bool keep_features: also keep the features (float64).
    :rtype: FeatureStatistics

    >>> stats = feature_statistics([[0.0, 1.0], [2.0, 1.0]], protocol={"extractor": "identity"})
    >>> stats.mu.tolist(), stats.sigma.tolist(), stats.num_samples
    ([1.0, 1.0], [[2.0, 0.0], [0.0, 0.0]], 2)
    """
    x = _features(features, "features")
    mu, sigma = _moments(x)
    return FeatureStatistics(mu, sigma, x.shape[0], dict(protocol or {}), x.copy() if keep_features else None)
