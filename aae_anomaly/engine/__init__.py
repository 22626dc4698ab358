"""The adversarial autoencoder itself: networks, losses and the two-phase training loop."""

from .model import AAEModule, Discriminator
from .training import Trainer, TrainingConfig

__all__ = ["AAEModule", "Discriminator", "Trainer", "TrainingConfig"]
