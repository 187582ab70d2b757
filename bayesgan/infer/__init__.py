"""Objectives: GAN losses as :class:`pyro.infer.ELBO` subclasses that plug into
:class:`pyro.infer.SVI`. Each returns ``(critic_loss, generator_loss)`` from ``svi.step``."""

from .bigan import BiGANLoss
from .fgan import FGANLoss
from .gan import AdversarialLoss, TrainingDivergedError
from .mmd import MMDLoss
from .sam import SAM
from .relativistic import RelativisticLoss
from .wgan import WassersteinLoss, WeightClipping

__all__ = [
    "AdversarialLoss",
    "BiGANLoss",
    "FGANLoss",
    "MMDLoss",
    "RelativisticLoss",
    "SAM",
    "TrainingDivergedError",
    "WassersteinLoss",
    "WeightClipping",
]
