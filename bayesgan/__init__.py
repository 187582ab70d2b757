"""bayesgan: GANs as Bayesian neural networks with partial stochasticity, on Pyro and PyTorch."""

from . import datasets, divergences, infer, kernels, metrics, models, penalties
from .infer import FGANLoss, MMDLoss, RelativisticLoss, TrainingDivergedError, WassersteinLoss
from .models import GeneratorModel, prior_guide

__version__ = "0.1.0"

__all__ = [
    "FGANLoss",
    "GeneratorModel",
    "MMDLoss",
    "RelativisticLoss",
    "TrainingDivergedError",
    "WassersteinLoss",
    "__version__",
    "datasets",
    "divergences",
    "infer",
    "kernels",
    "metrics",
    "models",
    "penalties",
    "prior_guide",
]
