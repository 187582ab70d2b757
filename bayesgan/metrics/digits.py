r"""A small digits classifier whose hidden layer serves as a feature space for Fréchet distances
and KID where Inception is too slow on a CPU (it runs at a few images per second there; this
network at tens of thousands).

An MLP 64 -> 128 (ReLU) -> 64 (Tanh, the features) -> 10, trained full-batch on scikit-learn's
8 x 8 digits (:func:`bayesgan.images.load_digits`) from a fixed seed in about a second: 97.5%
accuracy on 397 held-out digits when trained on the other 1,400 (measured). Distances in its
feature space are comparable only between results with the same ``weights_sha256`` in their
protocol.
"""

from pathlib import Path

import torch
import torch.nn.functional as F

from ..distributed import is_main_process
from .features import check_images, check_input_range, state_sha256

__all__ = ["DigitsFeatures"]

_SIDE = 8


class DigitsFeatures(torch.nn.Module):
    r"""Images ``[N, C, H, W]`` (C = 1, or 3 averaged to gray; any size, area-resized to 8 x 8) to
    the 64 Tanh features of a digits classifier, float32 ``[N, 64]``. Float32 throughout, whatever
    the default dtype. Build a trained one with :meth:`trained`.

    :param tuple input_range: the values that map to the training data's :math:`[-1, 1]`; images
        are clamped to it.

    >>> extractor = DigitsFeatures.trained(steps=20)
    >>> extractor(torch.zeros(5, 1, 28, 28)).shape
    torch.Size([5, 64])
    """

    num_features = 64  # torchmetrics reads this attribute of a custom feature extractor

    def __init__(self, *, input_range=(-1.0, 1.0)):
        super().__init__()
        self.input_range = check_input_range(input_range)
        linear = {"dtype": torch.float32}
        self.body = torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(_SIDE * _SIDE, 128, **linear), torch.nn.ReLU(),
            torch.nn.Linear(128, self.num_features, **linear), torch.nn.Tanh(),
        )
        self.head = torch.nn.Linear(self.num_features, 10, **linear)
        self.training_record = {}

    @classmethod
    def trained(cls, *, steps=150, seed=0, lr=0.01, cache=None, input_range=(-1.0, 1.0)):
        """A network trained on all 1,797 digits: ``steps`` full-batch Adam steps from
        ``torch.manual_seed(seed)`` (the global RNG state is restored after).

        :param int steps: Adam steps.
        :param int seed: the initialisation seed.
        :param float lr: Adam's learning rate.
        :param cache: a ``.pt`` file: loaded if it exists, else written after training.
        :param tuple input_range: as for the constructor.
        :rtype: DigitsFeatures
        """
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"Expected steps to be an int >= 1, actual {steps!r}")
        record = {"data": "sklearn load_digits, 1797 images in [-1, 1]", "optimizer": f"Adam lr {lr}, full batch",
                  "steps": steps, "seed": seed}
        if cache is not None and Path(cache).is_file():
            saved = torch.load(cache, weights_only=True)
            model = cls(input_range=input_range)
            model.load_state_dict(saved["state"])
            model.training_record = saved["training"]
            return model.eval()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = cls(input_range=input_range)
            _fit(model, steps, lr)
        model.training_record = record
        if cache is not None and is_main_process():  # one writer under torchrun
            Path(cache).parent.mkdir(parents=True, exist_ok=True)
            torch.save({"state": model.state_dict(), "training": record}, cache)
        return model.eval()

    @property
    def protocol(self):
        """How the features are made, including the SHA-256 of the weights (a JSON-ready dict)."""
        return {
            "extractor": "digits-mlp-64",
            "weights_sha256": state_sha256(self),
            "training": dict(self.training_record),
            "feature_dim": self.num_features,
            "input_range": list(self.input_range),
            "rescaling": f"{list(self.input_range)} -> [-1, 1], clamped",
            "channels": "RGB averaged to grayscale",
            "resize": f"area (adaptive average pooling) to {_SIDE}x{_SIDE}",
        }

    def _inputs(self, images):
        check_images(images, channels=(1, 3))
        low, high = self.input_range
        x = images.to(torch.float32).mean(1, keepdim=True)
        x = ((x - low) * (2.0 / (high - low)) - 1.0).clamp(-1.0, 1.0)
        return F.adaptive_avg_pool2d(x, _SIDE) if tuple(x.shape[-2:]) != (_SIDE, _SIDE) else x

    def forward(self, images):
        return self.body(self._inputs(images))

    def logits(self, images):
        """The class scores ``[N, 10]``."""
        return self.head(self.forward(images))


def _fit(model, steps, lr):
    from ..images import load_digits

    images, labels = load_digits(labels=True, dtype=torch.float32)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(model.logits(images), labels).backward()
        optimizer.step()
