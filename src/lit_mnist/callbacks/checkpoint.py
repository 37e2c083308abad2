"""checkpoints/last.ckpt, written often enough that a killed run loses little."""

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint

from lit_mnist.callbacks.divergence import diverged
from lit_mnist.errors import ParameterError
from lit_mnist.loggers import run_folder


class LastCheckpoint(Checkpoint):
    """checkpoints/last.ckpt, rewritten after every epoch (validation and metric resets included)
    and every `every_n_steps` optimizer steps mid-epoch: what `--ckpt_path last` resumes from.

    Lightning's `save_last` only writes when a best checkpoint is written, so a killed run could
    lose every epoch since its last improvement. Writes are atomic (a temporary file moved into
    place): a kill during a write leaves the previous last.ckpt intact.
    """

    FILENAME = "last.ckpt"

    def __init__(self, every_n_steps: int = 0) -> None:
        if every_n_steps < 0:
            raise ParameterError(self, "every_n_steps", f"must be 0 or more, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.dirpath: Path | None = None
        self._saved_step = -1

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        main = trainer.checkpoint_callback
        folder = getattr(main, "dirpath", None) if main is not self else None
        default = (run_folder(trainer) or Path(trainer.default_root_dir)) / "checkpoints"
        self.dirpath = Path(folder) if folder else default

    @property
    def path(self) -> Path:
        assert self.dirpath is not None, "setup() resolves the folder"
        return self.dirpath / self.FILENAME

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx):
        step = trainer.global_step
        if self.every_n_steps and step % self.every_n_steps == 0 and step != self._saved_step:
            self._save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # monitoring callbacks run after the module's hook: the epoch's train metrics are reset
        self._save(trainer)

    def _save(self, trainer: L.Trainer) -> None:
        if trainer.fast_dev_run or trainer.sanity_checking:
            return
        # an update can break the weights while the loss that led to it was still finite
        if not all(bool(torch.isfinite(p).all()) for p in trainer.lightning_module.parameters()):
            raise diverged(trainer, f"non-finite weights after step {trainer.global_step}")
        trainer.save_checkpoint(self.path)
        self._saved_step = trainer.global_step
