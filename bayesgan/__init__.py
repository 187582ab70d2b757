"""bayesgan: GANs as Bayesian neural networks with partial stochasticity, on Pyro and PyTorch."""

from . import (
    datasets,
    diagnostics,
    divergences,
    handlers,
    images,
    infer,
    kernels,
    latent,
    metrics,
    models,
    nn,
    optim,
    penalties,
    plots,
)
from .ema import EMA
from .handlers import relax
from .infer import SAM, FGANLoss, MMDLoss, RelativisticLoss, TrainingDivergedError, WassersteinLoss
from .models import GeneratorModel, prior_guide

__version__ = "0.1.0"

__all__ = [
    "EMA",
    "FGANLoss",
    "GeneratorModel",
    "MMDLoss",
    "RelativisticLoss",
    "SAM",
    "TrainingDivergedError",
    "WassersteinLoss",
    "__version__",
    "datasets",
    "diagnostics",
    "divergences",
    "handlers",
    "images",
    "infer",
    "kernels",
    "latent",
    "metrics",
    "models",
    "nn",
    "optim",
    "penalties",
    "plots",
    "prior_guide",
    "relax",
]
