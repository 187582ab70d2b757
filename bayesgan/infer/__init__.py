"""Objectives: GAN losses as :class:`pyro.infer.ELBO` subclasses that plug into
:class:`pyro.infer.SVI`."""

from .fgan import FGANLoss
from .gan import AdversarialLoss, TrainingDivergedError

__all__ = ["AdversarialLoss", "FGANLoss", "TrainingDivergedError"]
