r"""Improved precision and recall: the k-nearest-neighbour manifolds of Kynkäänniemi et al. (2019).

Each feature vector :math:`\phi` of a set :math:`\Phi` gets the closed ball of radius
:math:`\|\phi - \mathrm{NN}_k(\phi, \Phi)\|`, its distance to its k-th nearest neighbour in the set
(itself excluded); the set's manifold is the union of those balls, and

.. math::

    \mathrm{precision} = \frac{1}{|\Phi_g|} \sum_{\phi \in \Phi_g} [\phi \in \mathrm{manifold}(\Phi_r)],
    \qquad
    \mathrm{recall} = \frac{1}{|\Phi_r|} \sum_{\phi \in \Phi_r} [\phi \in \mathrm{manifold}(\Phi_g)].

Precision is the fraction of generated samples that look real (quality), recall the fraction of
real samples the generator covers (diversity).

References

1. Kynkäänniemi, Karras, Laine, Lehtinen, Aila, "Improved precision and recall metric for assessing
   generative models", NeurIPS 2019 (``github.com/kynkaat/improved-precision-and-recall-metric``:
   k = 3, closed balls).
2. torch-fidelity ``metric_prc.py`` (the same definition, ``prc_neighborhood=3``).
"""

import numpy as np
import scipy.spatial.distance

from .frechet import _features

__all__ = ["KEY_PRECISION", "KEY_RECALL", "precision_recall"]

KEY_PRECISION = "precision"
KEY_RECALL = "recall"

# Bounds each [chunk, n] block of distances to about 32 MiB of float64.
_BLOCK_ELEMENTS = 1 << 22


def _blocks(n, m):
    step = max(1, _BLOCK_ELEMENTS // max(m, 1))
    return range(0, n, step), step


def _radii(x, k):
    """The distance from each row of ``x`` to its k-th nearest other row."""
    starts, step = _blocks(len(x), len(x))
    # Index k of the sorted row: entry 0 is the row itself (distance 0), as in the reference code.
    return np.concatenate([np.partition(scipy.spatial.distance.cdist(x[i : i + step], x), k, axis=1)[:, k]
                           for i in starts])


def _inside(points, centres, radii):
    """Whether each point lies in at least one closed ball (centre, radius)."""
    starts, step = _blocks(len(points), len(centres))
    return np.concatenate([(scipy.spatial.distance.cdist(points[i : i + step], centres) <= radii).any(1)
                           for i in starts])


def precision_recall(real_features, fake_features, *, k=3):
    """Improved precision and recall (Kynkäänniemi et al., 2019) of generated features against real
    ones, with k-nearest-neighbour balls (:math:`k = 3` in the paper).

    .. note:: Both sets need more than ``k`` samples. Distances are computed in blocks, so memory
        stays bounded, but time is :math:`O((n_r + n_g)^2 d)`: the paper uses 50,000 of each.

    :param real_features: ``[n_r, d]`` features of real data.
    :param fake_features: ``[n_g, d]`` features of generated data.
    :param int k: the neighbourhood size.
    :returns: ``{KEY_PRECISION: float, KEY_RECALL: float}``.
    :rtype: dict

    >>> real = [[0.0], [1.0], [2.0], [3.0]]
    >>> precision_recall(real, [[0.5], [1.5], [2.5], [10.0]], k=1)
    {'precision': 0.75, 'recall': 1.0}
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"Expected k to be an int >= 1, actual {k!r}")
    real, fake = _features(real_features, "real_features"), _features(fake_features, "fake_features")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"Expected features of one dimension, actual {real.shape[1]} and {fake.shape[1]}")
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"Expected more than k = {k} samples in each set, actual {len(real)} and {len(fake)}")
    precision = _inside(fake, real, _radii(real, k)).mean()
    recall = _inside(real, fake, _radii(fake, k)).mean()
    return {KEY_PRECISION: float(precision), KEY_RECALL: float(recall)}
