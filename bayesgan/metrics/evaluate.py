r"""Image metrics in one call, with the protocol stored beside every number: FID, KID and improved
precision/recall of generated images against real ones in the feature space of any extractor
(:class:`~bayesgan.metrics.InceptionFeatures`, :class:`~bayesgan.metrics.DigitsFeatures`, or any
module mapping images to ``[N, d]``), with the real set's features cached in an ``.npz`` file.

Images are in the extractor's ``input_range``: :math:`[-1, 1]` by default, the range of the
generators' Tanh output and of :mod:`bayesgan.images`. The extractors map that range to pixel
values themselves; the target paper's reference code does not rescale (it saves [-1, 1] images as
they are, so negatives clamp to black before torch-fidelity reads them).
"""

import hashlib
from pathlib import Path

import numpy as np
import torch

from ..distributed import is_main_process
from .features import check_images, extract_features, extractor_protocol
from .frechet import KEY_FID, FeatureStatistics, feature_statistics, fid
from .kernel_distance import kid
from .prd import precision_recall

__all__ = ["KEY_PROTOCOL", "image_metrics", "reference_statistics"]

KEY_PROTOCOL = "protocol"
_METRICS = ("fid", "kid", "precision_recall")


def _images_sha256(images):
    array = np.ascontiguousarray(images.detach().to(torch.float32).cpu().numpy())
    return hashlib.sha256(memoryview(array).cast("B")).hexdigest()


def reference_statistics(real, *, extractor, cache=None, batch_size=50):
    """The :class:`~bayesgan.metrics.FeatureStatistics` of real images, features kept, read from
    ``cache`` if that file exists and was made by the same extractor protocol from the same images
    (by SHA-256 of their float32 values), else computed and written there.

    :param torch.Tensor real: images ``[N, C, H, W]`` in the extractor's input range; ``None`` to
        take whatever ``cache`` holds.
    :param torch.nn.Module extractor: images to ``[N, d]`` features.
    :param cache: an ``.npz`` path, or ``None``.
    :param int batch_size: images per forward pass.
    :rtype: FeatureStatistics

    >>> stats = reference_statistics(torch.rand(4, 1, 2, 2), extractor=torch.nn.Flatten())
    >>> stats.features.shape, stats.protocol["num_images"]
    ((4, 4), 4)
    """
    wanted = extractor_protocol(extractor)
    if real is None and (cache is None or not Path(cache).is_file()):
        raise ValueError(f"Expected real images or an existing cache file, actual neither (cache={cache!r})")
    if real is not None:
        check_images(real)
    digest = _images_sha256(real) if real is not None else None
    if cache is not None and Path(cache).is_file():
        stats = FeatureStatistics.load(cache)
        if stats.protocol.get("extractor") != wanted:
            raise ValueError(f"Expected {cache} made with extractor protocol {wanted}, actual "
                             f"{stats.protocol.get('extractor')}; delete it to recompute")
        if digest is not None and stats.protocol.get("images_sha256") != digest:
            raise ValueError(f"Expected {cache} made from these images (SHA-256 {digest}), actual "
                             f"{stats.protocol.get('images_sha256')}; delete it to recompute")
        return stats
    features = extract_features(extractor, real, batch_size=batch_size)
    protocol = {"extractor": wanted, "num_images": len(real), "image_shape": list(real.shape[1:]),
                "images_sha256": digest}
    stats = feature_statistics(features, protocol=protocol, keep_features=True)
    if cache is not None and is_main_process():  # one writer under torchrun
        stats.save(cache)
    return stats


def _generate(generated, num_samples, batch_size):
    if callable(generated) and not isinstance(generated, torch.Tensor):
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 2:
            raise ValueError(f"Expected num_samples to be an int >= 2 with a sampler, actual {num_samples!r}")
        with torch.no_grad():
            parts = [generated(min(batch_size, num_samples - i)) for i in range(0, num_samples, batch_size)]
        for part in parts:
            check_images(part)
        images = torch.cat(parts)
        if len(images) != num_samples:
            raise ValueError(f"Expected the sampler to return {num_samples} images in all, actual {len(images)}")
    else:
        images = generated
        check_images(images)
        if num_samples is not None:
            if len(images) < num_samples:
                raise ValueError(f"Expected at least num_samples = {num_samples} images, actual {len(images)}")
            images = images[:num_samples]
    return images.detach()


def image_metrics(generated, real, *, extractor, num_samples=None, batch_size=50, cache=None,
                  compute=_METRICS, kid_subsets=100, kid_subset_size=1000, k=3, generator=None):
    r"""FID, KID and improved precision/recall of generated images against real ones in an
    extractor's feature space, and the protocol that produced them.

    .. note:: FID is biased upwards at small sample counts (KID is unbiased but noisier there):
        compare numbers only under equal protocols. Published FIDs use 10,000 or 50,000 generated
        images and Inception features; with few images or another extractor the number is a
        Fréchet distance in that feature space, comparable only to itself.

    :param generated: images ``[N, C, H, W]`` in the extractor's input range, or a sampler
        ``generated(n) -> [n, C, H, W]`` (e.g. ``lambda n: model(num_samples=n)``), called without
        gradients in batches of at most ``batch_size``.
    :param real: images ``[M, C, H, W]``, a :class:`~bayesgan.metrics.FeatureStatistics` with
        features (from :func:`reference_statistics`), or ``None`` to use ``cache``.
    :param torch.nn.Module extractor: images to ``[N, d]`` features.
    :param int num_samples: how many generated images (all of a tensor by default).
    :param int batch_size: images per forward pass.
    :param cache: an ``.npz`` file for the real set's features (see :func:`reference_statistics`).
    :param compute: which of ``"fid"``, ``"kid"``, ``"precision_recall"``.
    :param int kid_subsets: KID's number of subsets.
    :param int kid_subset_size: KID's largest subset size.
    :param int k: the neighbourhood size of precision and recall.
    :param torch.Generator generator: KID's subset draws.
    :returns: a dict with the keys ``KEY_FID``, ``KEY_KID``, ``KEY_KID_STD``, ``KEY_PRECISION``,
        ``KEY_RECALL`` (of those computed) and ``KEY_PROTOCOL``.
    :rtype: dict

    >>> g = torch.Generator().manual_seed(0)
    >>> real, fake = torch.rand(2, 20, 1, 2, 2, generator=g)
    >>> result = image_metrics(fake, real, extractor=torch.nn.Flatten(), kid_subsets=5, generator=g)
    >>> sorted(result), result["protocol"]["generated"]["num_images"]
    (['fid', 'kid', 'kid_std', 'precision', 'protocol', 'recall'], 20)
    """
    unknown = set(compute) - set(_METRICS)
    if unknown or not compute:
        raise ValueError(f"Expected compute to name some of {_METRICS}, actual {compute!r}")
    if isinstance(real, FeatureStatistics):
        reference = real
        if reference.protocol.get("extractor") != extractor_protocol(extractor):
            raise ValueError(f"Expected reference statistics made with extractor protocol "
                             f"{extractor_protocol(extractor)}, actual {reference.protocol.get('extractor')}")
    else:
        reference = reference_statistics(real, extractor=extractor, cache=cache, batch_size=batch_size)
    if reference.features is None:
        raise ValueError("Expected reference statistics with features (keep_features=True), actual none")
    images = _generate(generated, num_samples, batch_size)
    fake = extract_features(extractor, images, batch_size=batch_size)
    real_features = np.asarray(reference.features, dtype=np.float64)
    result, protocol = {}, {
        "extractor": reference.protocol.get("extractor"),
        "real": {key: value for key, value in reference.protocol.items() if key != "extractor"},
        "generated": {"num_images": len(images), "image_shape": list(images.shape[1:])},
    }
    protocol["real"]["num_images"] = reference.num_samples
    if "fid" in compute:
        result[KEY_FID] = fid(real_features, fake)
        protocol["fid"] = "Frechet distance of Gaussians (mean, unbiased covariance), float64"
    if "kid" in compute:
        result.update(kid(real_features, fake, num_subsets=kid_subsets, subset_size=kid_subset_size,
                          generator=generator))
        protocol["kid"] = {"subsets": kid_subsets, "subset_size": min(kid_subset_size, len(fake), len(real_features)),
                           "kernel": "(x.y / d + 1)^3", "estimator": "unbiased"}
    if "precision_recall" in compute:
        result.update(precision_recall(real_features, fake, k=k))
        protocol["precision_recall"] = {"k": k, "balls": "closed, radius to the k-th nearest other sample"}
    result[KEY_PROTOCOL] = protocol
    return result
