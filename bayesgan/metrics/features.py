"""What every feature extractor shares: the input range of the images, 8-bit quantisation,
grayscale to RGB, TensorFlow-1 bilinear resizing, batched extraction and the protocol record.

An *extractor* is any :class:`torch.nn.Module` mapping images ``[N, C, H, W]`` to features
``[N, d]``. It may carry a ``protocol`` dict (how it turns images into features, which weights)
that the metrics store with every result; a module without one is recorded by its class name.
"""

import hashlib
import math
from pathlib import Path

import numpy as np
import torch

__all__ = ["extract_features", "extractor_protocol"]

# (path, size, mtime) -> sha256 hex digest, so each weight file is hashed once per process.
_SHA256 = {}


def file_sha256(path):
    """The SHA-256 of a file, cached by path, size and modification time."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA256:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _SHA256[key] = digest.hexdigest()
    return _SHA256[key]


def state_sha256(module):
    """The SHA-256 of a module's state dict (names, dtypes, shapes and bytes, in name order)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        array = tensor.detach().cpu().contiguous().numpy()
        digest.update(f"{name}:{array.dtype}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def check_input_range(input_range):
    """``input_range`` as a pair of floats ``(low, high)`` with ``low < high``."""
    try:
        low, high = (float(v) for v in input_range)
    except (TypeError, ValueError):
        raise ValueError(f"Expected input_range as a pair (low, high), actual {input_range!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"Expected input_range (low, high) with finite low < high, actual {input_range!r}")
    return low, high


def check_images(images, channels=None):
    """Raise unless ``images`` is a tensor ``[N, C, H, W]`` with ``N >= 1`` (and C in ``channels``)."""
    ok = isinstance(images, torch.Tensor) and images.dim() == 4 and images.shape[0] >= 1
    if not ok or (channels is not None and images.shape[1] not in channels):
        shape = list(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        which = "" if channels is None else f" with C in {channels}"
        raise ValueError(f"Expected images as a tensor [N, C, H, W]{which}, actual {shape}")


def to_pixels(images, input_range, *, quantize):
    """Float32 pixel values in [0, 255]: uint8 images as they are; float images mapped linearly
    from ``input_range`` and clamped, then (``quantize``) rounded as an 8-bit PNG would store them,
    ``floor(255 u + 0.5)`` for ``u`` in [0, 1] (torchvision's ``save_image``)."""
    if images.dtype == torch.uint8:
        return images.to(torch.float32)
    low, high = input_range
    pixels = ((images.to(torch.float32) - low) * (255.0 / (high - low))).clamp(0.0, 255.0)
    return torch.floor(pixels + 0.5) if quantize else pixels


def resize_tf1_bilinear(images, size):
    """Bilinear resizing as TensorFlow 1's ``ResizeBilinear`` without corner alignment (the FID
    Inception graph's): output pixel ``j`` samples input coordinate ``j * in / out``, edges clamped.
    torch-fidelity and NVIDIA's FID code resize the same way."""
    if tuple(images.shape[-2:]) == (size, size):
        return images

    def axis(n_in):
        src = torch.arange(size, dtype=torch.float32) * torch.tensor(n_in / size, dtype=torch.float32)
        lo = src.long()
        return lo, (lo + 1).clamp_max(n_in - 1), (src - lo).to(images.dtype)

    y_lo, y_hi, dy = axis(images.shape[-2])
    x_lo, x_hi, dx = axis(images.shape[-1])
    top, bottom = images[..., y_lo, :], images[..., y_hi, :]
    rows = top + (bottom - top) * dy[:, None]
    left, right = rows[..., x_lo], rows[..., x_hi]
    return left + (right - left) * dx


def extractor_protocol(extractor):
    """The extractor's ``protocol`` dict, or its class name for a module without one."""
    protocol = getattr(extractor, "protocol", None)
    if protocol is None:
        return {"extractor": type(extractor).__name__}
    return dict(protocol)


def extract_features(extractor, images, *, batch_size=50):
    """Features of ``images`` ``[N, C, H, W]`` in batches, without gradients, as float64 numpy.

    :param torch.nn.Module extractor: maps ``[B, C, H, W]`` to ``[B, d]``.
    :param torch.Tensor images: the images, in the extractor's input range.
    :param int batch_size: images per forward pass.
    :rtype: numpy.ndarray

    >>> extract_features(torch.nn.Flatten(), torch.ones(3, 1, 2, 2), batch_size=2).shape
    (3, 4)
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"Expected batch_size to be an int >= 1, actual {batch_size!r}")
    check_images(images)
    was_training = extractor.training
    extractor.eval()
    try:
        with torch.inference_mode():
            parts = [extractor(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    finally:
        extractor.train(was_training)
    features = torch.cat(parts).to(torch.float64).cpu().numpy()
    if features.ndim != 2 or features.shape[0] != len(images):
        raise ValueError(f"Expected the extractor to return [N, d] features, actual {list(features.shape)}")
    return np.ascontiguousarray(features)
