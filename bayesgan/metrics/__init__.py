"""
Sample-quality metrics.

- Toy targets (:mod:`~bayesgan.metrics.toy`): PacGAN's mode coverage, exact 1-D and point-cloud
  Wasserstein distances, the target paper's chi-square calibration score.
- Features of images or anything else: the Fréchet distance (:func:`fid`,
  :func:`frechet_distance`), KID (:func:`kid`), improved precision and recall
  (:func:`precision_recall`), and statistics cached with their protocol (:class:`FeatureStatistics`).
- Feature extractors: the TF FID Inception network from a local TorchScript file
  (:class:`InceptionFeatures`), a small digits classifier for quick CPU runs
  (:class:`DigitsFeatures`), or any module mapping images to ``[N, d]``.
- :func:`image_metrics`: all of the above for generated against real images in one call, with the
  protocol (extractor, weights hash, resizing, sample counts) stored with the numbers.

Result dictionaries use the exported ``KEY_*`` constants as keys.
"""

from .digits import DigitsFeatures
from .evaluate import KEY_PROTOCOL, image_metrics, reference_statistics
from .features import extract_features, extractor_protocol
from .frechet import KEY_FID, FeatureStatistics, feature_statistics, fid, frechet_distance
from .inception import INCEPTION_SHA256, InceptionFeatures, inception_weights_path
from .kernel_distance import KEY_KID, KEY_KID_STD, kid, mmd2
from .prd import KEY_PRECISION, KEY_RECALL, precision_recall
from .toy import (
    KEY_CHI2_DECILE,
    KEY_HIGH_QUALITY,
    KEY_MODE_COUNTS,
    KEY_MODES,
    KEY_REVERSE_KL,
    KEY_W1,
    KEY_W2,
    chi2_decile_score,
    mode_coverage,
    wasserstein_1d,
    wasserstein_2d,
)

# Bounds the [chunk, K, d] distance array of mode_coverage to about 32 MiB of float64.
_CHUNK_ELEMENTS = 1 << 22

__all__ = [
    "INCEPTION_SHA256",
    "KEY_CHI2_DECILE",
    "KEY_FID",
    "KEY_HIGH_QUALITY",
    "KEY_KID",
    "KEY_KID_STD",
    "KEY_MODES",
    "KEY_MODE_COUNTS",
    "KEY_PRECISION",
    "KEY_PROTOCOL",
    "KEY_RECALL",
    "KEY_REVERSE_KL",
    "KEY_W1",
    "KEY_W2",
    "DigitsFeatures",
    "FeatureStatistics",
    "InceptionFeatures",
    "chi2_decile_score",
    "extract_features",
    "extractor_protocol",
    "feature_statistics",
    "fid",
    "frechet_distance",
    "image_metrics",
    "inception_weights_path",
    "kid",
    "mmd2",
    "mode_coverage",
    "precision_recall",
    "reference_statistics",
    "wasserstein_1d",
    "wasserstein_2d",
]
