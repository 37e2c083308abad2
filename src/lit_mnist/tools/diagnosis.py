"""The classic reading of loss curves, in plain words."""

import math

# a loss that moved less than this fraction over the last epochs is flat
FLAT = 0.02
# a validation loss this far above its lowest value has turned: overfitting, not noise
TURNED = 0.10
# a learning rate at most this fraction of its peak: the schedule has annealed it, it is done
SCHEDULE_FINISHED = 0.05
# a cross-entropy this high means logits hundreds apart on the wrong class: chance level is
# ln(classes), 2.3 for ten; a training loss far above that has exploded, finite or not
EXPLODED = 100.0
# with the schedule finished and the validation loss flat, a training loss that fell less than
# this fraction over the last epochs is settling into the minimum, not overfitting
SETTLING = 0.10
# a validation accuracy below this fraction of the training accuracy (and 0.2 or more below it):
# the weights evaluated are not the ones the training curve shows (an EMA still near its start,
# broken batch-norm statistics), which no overfitting explains
LAGGING = 0.5


def _change(values: list[float], window: int) -> float:
    before, now = values[-1 - window], values[-1]
    return (now - before) / max(abs(before), 1e-12)


def _trend(values: list[float], window: int) -> str:
    change = _change(values, window)
    return "falling" if change < -FLAT else "rising" if change > FLAT else "flat"


def _annealed(learning_rates: list[float] | None) -> str | None:
    """How far the schedule brought the learning rate down, when it is finished; else None."""
    if not learning_rates or max(learning_rates) <= 0:
        return None
    last, peak = learning_rates[-1], max(learning_rates)
    if last > SCHEDULE_FINISHED * peak:
        return None
    return f"lr {last:.2g}, {100 * last / peak:.2g}% of its peak"


def diagnose(
    train_loss: list[float],
    val_loss: list[float],
    unit: str = "epoch",
    learning_rates: list[float] | None = None,
    train_acc: list[float] | None = None,
    val_acc: list[float] | None = None,
) -> str:
    """One paragraph from the train and validation losses of each epoch (oldest first); `unit`
    names what one point is ("epoch", or "evaluation" when validation runs within epochs).
    `learning_rates` is the learning rate over the run (oldest first, any sampling): a finished
    schedule turns a plateau into convergence, where lowering the learning rate is no advice.
    `train_acc` and `val_acc`, the accuracies, show evaluated weights far worse than trained ones."""
    losses = train_loss + val_loss
    if any(not math.isfinite(v) for v in losses):
        return "Diverging: a loss is NaN or infinite. The learning rate is too high, or there is a bug."
    if losses and max(losses) > EXPLODED:
        return (
            f"Diverging: the loss exploded to {max(losses):.3g} (chance level is ln(classes), 2.3 for "
            "ten). The learning rate is far too high: lower it (or clip gradients), or look for a bug."
        )
    if train_acc and val_acc and val_acc[-1] < min(LAGGING * train_acc[-1], train_acc[-1] - 0.2):
        return (
            f"Evaluated weights lag behind training: {val_acc[-1]:.1%} validation accuracy against "
            f"{train_acc[-1]:.1%} on the training batches. A moving average of the weights (EMA) "
            "still close to the weights the run started with does this: let its decay warm up, lower "
            "it, or train longer. Otherwise look at what evaluation does differently (batch-norm "
            "statistics, dropout, the validation split)."
        )
    if len(train_loss) < 2 or len(val_loss) < 2:
        return "Too few epochs to read the curves: train at least two (three or more to see a trend)."
    if val_loss[-1] > 1.5 * min(val_loss) and train_loss[-1] > 1.5 * min(train_loss):
        return (
            "Diverging: both losses have risen well above their lowest values. Lower the learning rate "
            "(or clip gradients), or look for a bug."
        )
    window = min(3, len(train_loss) - 1, len(val_loss) - 1)
    train, val = _trend(train_loss, window), _trend(val_loss, window)
    best = val_loss.index(min(val_loss)) + 1
    over = f"last {window} {unit}s"
    turned = best < len(val_loss) and val_loss[-1] > (1 + TURNED) * val_loss[best - 1]
    annealed = _annealed(learning_rates)
    settling = train == "falling" and not turned and _change(train_loss, window) > -SETTLING
    if annealed and val == "flat" and (train == "flat" or settling):
        losses_now = (
            "both losses are flat"
            if train == "flat"
            else "the validation loss is flat while the training loss still falls slightly"
        )
        return (
            f"Converged: the learning-rate schedule has finished ({annealed}) and {losses_now} over "
            f"the {over}. To go further: more epochs or a larger model, not a lower learning rate."
        )
    if train == "falling" and (turned or val in ("flat", "rising")):
        return (
            f"Overfitting from {unit} {best + 1 if turned else best} on: the training loss keeps "
            f"falling while the validation loss {'has risen' if turned else f'is {val}'} since its "
            f"lowest value at {unit} {best}. Stop there (the best checkpoint is kept), or add "
            "regularisation: weight decay, dropout, augmentation, more data."
        )
    if train == "falling" and val == "falling":
        return f"Still learning: both losses fell over the {over}. Train longer."
    if train == "flat" and val == "flat":
        return (
            f"Plateau: both losses are flat over the {over}. Lower the learning rate (a scheduler) or "
            "the batch size, or give the model more capacity."
        )
    if train == "flat" and val == "falling":
        return (
            "Suspect the data: the validation loss falls while the training loss does not. Check the "
            "split, the labels and what augmentation does to the training images."
        )
    if train == "rising" or val == "rising":
        return (
            f"Unstable: the {'training' if train == 'rising' else 'validation'} loss rose over the "
            f"{over}. The learning rate may be too high for this stage of training."
        )
    return f"Mixed: the training loss is {train} and the validation loss {val} over the {over}."


def learning_rates(scalars: dict) -> dict[str, list[tuple[int, float]]]:
    """The learning-rate tags of the LearningRateMonitor (not its momentum or weight decay)."""
    return {
        tag: points
        for tag, points in scalars.items()
        if tag.startswith("lr-") and not tag.endswith(("momentum", "weight_decay"))
    }


def diagnose_run(scalars: dict[str, list[tuple[int, float]]]) -> str:
    """The diagnosis of a run's scalars (as read by lit_mnist.tools.events.read_scalars)."""
    train = [v for _, v in scalars.get("train/loss", [])]
    val = [v for _, v in scalars.get("val/loss", [])]
    unit = "evaluation" if len(val) > len(train) + 1 else "epoch"
    # every parameter group follows the same schedule, only scaled: one group tells when it ends
    groups = sorted(learning_rates(scalars).items())
    lrs = [v for _, v in groups[0][1]] if groups else None
    train_acc, val_acc = ([v for _, v in scalars.get(tag, [])] for tag in ("train/acc", "val/acc"))
    return diagnose(train, val, unit, lrs, train_acc, val_acc)
