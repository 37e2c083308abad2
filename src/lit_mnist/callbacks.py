"""Callbacks the configs can name under `trainer.callbacks`."""

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint, EMAWeightAveraging
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.trainer.states import TrainerFn

from lit_mnist.errors import UserError


class EMA(EMAWeightAveraging):
    """An exponential moving average of the weights and batch-norm statistics, updated after every
    optimizer step: `average = decay * average + (1 - decay) * weights`.

    Validation, the saved checkpoints' `state_dict` and the model after training hold the average,
    so the best checkpoint is chosen and tested with it. Checkpoints also keep the raw weights, and
    a resumed fit continues both.

    Lightning's callback, when it still holds an average from a fit in the same process, loads a
    checkpoint's raw weights for test, validate and predict; this one loads the average, the
    weights that were validated.

    Args:
        decay: weight of the old average per step; about 1 / (1 - decay) steps are remembered.
        update_starting_at_step: first optimizer step (from 0) that updates the average; before it
            the average only copies the weights. None: from the first step.
    """

    def __init__(self, decay: float = 0.999, update_starting_at_step: int | None = None) -> None:
        if not 0 < decay < 1:
            raise UserError(f"EMA decay must be between 0 and 1, got {decay}")
        super().__init__(decay=decay, update_starting_at_step=update_starting_at_step)

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
        # otherwise the state_dict already loaded into the module is the average: keep it


class Diverged(UserError):
    """Training produced a non-finite loss."""


class StopOnNonFiniteLoss(L.Callback):
    """Stops a fit at the first NaN or infinite training loss with one line that says where, and
    raises before a checkpoint of the broken weights can be written: the last good one stays."""

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx):
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and not bool(torch.isfinite(loss).all()):
            raise diverged(trainer, f"loss {float(loss)} at step {trainer.global_step}")


def diverged(trainer: L.Trainer, what: str) -> Diverged:
    rates = ", ".join(
        f"{group.get('name', i)}={group['lr']:.3g}"
        for optimizer in trainer.optimizers
        for i, group in enumerate(optimizer.param_groups)
    )
    return Diverged(
        f"training diverged: {what} (epoch {trainer.current_epoch}); learning rates {rates}. "
        "Lower the learning rate (or clip gradients: --trainer.gradient_clip_val=1.0); the last good "
        "checkpoint is kept"
    )


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
            raise UserError(f"--save_every_n_steps must be 0 or more, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.dirpath: Path | None = None
        self._saved_step = -1

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        main = trainer.checkpoint_callback
        folder = getattr(main, "dirpath", None) if main is not self else None
        default = Path(trainer.log_dir or trainer.default_root_dir) / "checkpoints"
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


class ValidationFigures(L.Callback):
    """Each validation epoch, two figures in TensorBoard's IMAGES tab: the confusion matrix
    (counted over every process) and the worst misclassified digits (highest loss) with their true
    and predicted labels. `every_n_epochs=0` turns them off.

    Args:
        every_n_epochs: draw every this many epochs; 0 never.
        worst: how many misclassified digits to show.
    """

    def __init__(self, every_n_epochs: int = 1, worst: int = 16) -> None:
        if every_n_epochs < 0 or worst < 1:
            raise UserError("--figures.every_n_epochs must be 0 or more and --figures.worst at least 1")
        self.every_n_epochs, self.worst = every_n_epochs, worst
        self.confusion: torch.Tensor | None = None
        self._worst: tuple[torch.Tensor, ...] | None = None

    def _active(self, trainer: L.Trainer) -> bool:
        every = self.every_n_epochs
        return bool(every) and not trainer.sanity_checking and (trainer.current_epoch + 1) % every == 0

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        classes = pl_module.hparams.get("num_classes", 10)
        self.confusion = torch.zeros(classes, classes, dtype=torch.long, device=pl_module.device)
        self._worst = None

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if not self._active(trainer) or not isinstance(outputs, dict) or "logits" not in outputs:
            return
        logits, (images, labels) = outputs["logits"].float(), batch
        predictions = logits.argmax(1)
        self.confusion += count_confusion(labels, predictions, self.confusion.shape[0])
        wrong = predictions != labels
        if not wrong.any():
            return
        losses = torch.nn.functional.cross_entropy(logits[wrong], labels[wrong], reduction="none")
        found = (losses, images[wrong].float(), labels[wrong], predictions[wrong])
        if self._worst is not None:
            found = tuple(torch.cat([a, b]) for a, b in zip(self._worst, found, strict=True))
        keep = found[0].topk(min(self.worst, len(found[0]))).indices
        self._worst = tuple(t[keep] for t in found)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._active(trainer):
            return
        self.confusion = trainer.strategy.reduce(self.confusion, reduce_op="sum")  # every process
        logger = trainer.logger
        if not trainer.is_global_zero or not isinstance(logger, TensorBoardLogger):
            return
        step = trainer.global_step
        logger.experiment.add_figure("val/confusion_matrix", confusion_figure(self.confusion.cpu()), step)
        if self._worst is not None:
            logger.experiment.add_figure("val/worst_misclassified", worst_figure(*self._worst), step)


def count_confusion(labels: torch.Tensor, predictions: torch.Tensor, classes: int) -> torch.Tensor:
    """(classes, classes) counts: row the true class, column the predicted one."""
    return torch.bincount(labels * classes + predictions, minlength=classes**2).view(classes, classes)


def confusion_figure(confusion: torch.Tensor, title: str = "Validation confusion matrix"):
    """A matplotlib figure of a (true, predicted) count matrix, counts written in, accuracy in the title."""
    from matplotlib.figure import Figure  # no pyplot: leaves the backend (a notebook's) alone

    classes = confusion.shape[0]
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    shade = confusion.float().log1p()
    ax.imshow(shade, cmap="Blues")
    for true in range(classes):
        for predicted in range(classes):
            count = int(confusion[true, predicted])
            if count:
                dark = shade[true, predicted] > shade.max() / 2
                ax.text(predicted, true, count, ha="center", va="center", fontsize=7,
                        color="white" if dark else "black")  # fmt: skip
    ax.set(xlabel="predicted", ylabel="true", xticks=range(classes), yticks=range(classes))
    accuracy = confusion.diag().sum() / confusion.sum().clamp(min=1)
    ax.set_title(f"{title} (accuracy {100 * float(accuracy):.2f}%)")
    fig.tight_layout()
    return fig


def worst_figure(
    losses, images, labels, predictions, title="Worst misclassified validation digits (highest loss first)"
):
    """A grid of digits titled with their true and predicted labels."""
    from matplotlib.figure import Figure

    columns = 8
    rows = -(-len(losses) // columns)
    fig = Figure(figsize=(columns * 1.2, rows * 1.45))
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    # the grid may have more cells than digits
    shown = zip(axes.flat, images.cpu(), labels.tolist(), predictions.tolist(), strict=False)
    for ax, image, label, prediction in shown:
        ax.imshow(image.squeeze(0), cmap="gray")
        ax.set_title(f"true {label}, got {prediction}", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
