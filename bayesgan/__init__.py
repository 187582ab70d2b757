"""bayesgan: GANs as Bayesian neural networks with partial stochasticity, on Pyro and PyTorch."""

from . import datasets, divergences, infer, metrics, models
from .infer import FGANLoss
from .models import GeneratorModel

__version__ = "0.1.0"

__all__ = [
    "FGANLoss",
    "GeneratorModel",
    "__version__",
    "datasets",
    "divergences",
    "infer",
    "metrics",
    "models",
]
