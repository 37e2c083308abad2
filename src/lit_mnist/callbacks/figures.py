"""What the net gets wrong, drawn each validation epoch: confusion matrix and worst digits."""

from collections.abc import Sequence

import lightning as L
import torch
from torchmetrics.classification import MulticlassConfusionMatrix

from lit_mnist.data.spec import DataSpec
from lit_mnist.errors import ParameterError
from lit_mnist.loggers import log_figure


class ValidationFigures(L.Callback):
    """Each validation epoch, two figures for the logger (TensorBoard's IMAGES tab, MLflow's
    artifacts, PNGs in the run's figures/ folder for CSV): the confusion matrix (counted over every
    process) and the worst misclassified digits (highest loss) with their true and predicted
    labels. `every_n_epochs=0` turns them off.

    Args:
        every_n_epochs: draw every this many epochs; 0 never.
        worst: how many misclassified digits to show.
    """

    def __init__(self, every_n_epochs: int = 1, worst: int = 16) -> None:
        if every_n_epochs < 0:
            raise ParameterError(self, "every_n_epochs", f"must be 0 or more, got {every_n_epochs}")
        if worst < 1:
            raise ParameterError(self, "worst", f"must be at least 1, got {worst}")
        self.every_n_epochs, self.worst = every_n_epochs, worst
        # (true, predicted) counts of the last drawn epoch, summed over every process
        self.confusion: torch.Tensor | None = None
        self._counter: MulticlassConfusionMatrix | None = None
        self._worst: tuple[torch.Tensor, ...] | None = None

    def _active(self, trainer: L.Trainer) -> bool:
        every = self.every_n_epochs
        return bool(every) and not trainer.sanity_checking and (trainer.current_epoch + 1) % every == 0

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._counter, self._worst = None, None

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if not self._active(trainer) or not isinstance(outputs, dict) or "logits" not in outputs:
            return
        logits, (images, labels) = outputs["logits"].float(), batch
        if self._counter is None:
            # the logits' width is the class count the predictions can take
            classes = logits.shape[1]
            self._counter = MulticlassConfusionMatrix(classes, validate_args=False).to(logits.device)
        predictions = logits.argmax(1)
        self._counter.update(predictions, labels)
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
        if not self._active(trainer) or self._counter is None:
            return
        self.confusion = self._counter.compute()  # a collective: every process sums its counts in
        if not trainer.is_global_zero or trainer.logger is None:
            return
        spec = getattr(pl_module, "data", None)
        names = spec.class_names if spec is not None else ()
        log_figure(trainer, "val/confusion_matrix", confusion_figure(self.confusion.cpu(), class_names=names))
        if self._worst is not None:
            log_figure(trainer, "val/worst_misclassified", worst_figure(*self._worst, spec=spec))


def confusion_figure(
    confusion: torch.Tensor, title: str = "Validation confusion matrix", class_names: Sequence[str] = ()
):
    """A matplotlib figure of a (true, predicted) count matrix, counts written in, accuracy in the
    title, the axes labelled with the class names when given."""
    from matplotlib.figure import Figure  # no pyplot: leaves the backend (a notebook's) alone

    classes = confusion.shape[0]
    fig = Figure(figsize=(5.5, 5) if not class_names else (7, 6.5))
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
    if class_names:
        ax.set_xticklabels(class_names, rotation=45, ha="right", fontsize=7)
        ax.set_yticklabels(class_names, fontsize=7)
    accuracy = confusion.diag().sum() / confusion.sum().clamp(min=1)
    ax.set_title(f"{title} (accuracy {100 * float(accuracy):.2f}%)")
    fig.tight_layout()
    return fig


def worst_figure(
    losses,
    images,
    labels,
    predictions,
    title="Worst misclassified validation images (highest loss first)",
    spec: DataSpec | None = None,
):
    """A grid of images titled with their true and predicted labels (class names with a `spec`,
    which also turns normalised colour images back into pixels)."""
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
        if image.shape[0] == 3 and spec is not None:
            pixels = image * torch.tensor(spec.std).view(3, 1, 1) + torch.tensor(spec.mean).view(3, 1, 1)
            ax.imshow(pixels.clamp(0, 1).permute(1, 2, 0))
        else:
            ax.imshow(image[0], cmap="gray")
        name = spec.class_name if spec is not None else str
        ax.set_title(f"true {name(label)}, got {name(prediction)}", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
