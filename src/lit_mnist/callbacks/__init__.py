"""Callbacks: each file watches one thing about a run. Configs name them under
`trainer.callbacks` as `lit_mnist.callbacks.<Name>`; the ones every run has are groups of flags of
their own (`--last_checkpoint.*`, `--divergence.*`, ... : see `lit-mnist fit --help`)."""

from lit_mnist.callbacks.checkpoint import LastCheckpoint
from lit_mnist.callbacks.divergence import Diverged, StopOnDivergence
from lit_mnist.callbacks.ema import EMA
from lit_mnist.callbacks.figures import ValidationFigures
from lit_mnist.callbacks.predictions import PredictionWriter
from lit_mnist.callbacks.progress import ProgressBar
from lit_mnist.callbacks.summary import RunSummary

__all__ = [
    "EMA",
    "Diverged",
    "LastCheckpoint",
    "PredictionWriter",
    "ProgressBar",
    "RunSummary",
    "StopOnDivergence",
    "ValidationFigures",
]
