"""The adversarial autoencoder itself: networks, losses and the two-phase training loop."""

from .model import AAEModule, Discriminator
from .training import TrainingConfig, train

__all__ = ["AAEModule", "Discriminator", "TrainingConfig", "train"]
