"""Callbacks: each file watches one thing about a run. Configs name them under
`trainer.callbacks` as `lit_mnist.callbacks.<Name>`."""

from lit_mnist.callbacks.checkpoint import LastCheckpoint
from lit_mnist.callbacks.divergence import Diverged, StopOnDivergence
from lit_mnist.callbacks.ema import EMA
from lit_mnist.callbacks.figures import ValidationFigures

__all__ = ["EMA", "Diverged", "LastCheckpoint", "StopOnDivergence", "ValidationFigures"]
