"""An LR range test: the learning rate grows step by step while the training loss is recorded,
until the loss diverges. `lit-mnist lr-find` runs it on a recipe and suggests a learning rate."""

import math

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback


class LRRangeTest(Callback):
    """The base learning rate grows exponentially from `min_lr` to `max_lr` over `steps` optimizer
    steps; every parameter group keeps its ratio to the base rate (its `lr_mult` and the batch
    scaling), so the groups of the recipe are tested as they train. The loss of every step is
    recorded with the base rate it was taken at. The test stops when the smoothed loss exceeds
    `divergence` times its lowest value, rises back half-way to its first value after falling by
    a fifth (a diverged classifier's loss tends to settle near chance), or is not finite.
    Learning-rate schedulers are set aside.

    Afterwards: `lrs`, `losses`, `smoothed`, `diverged` (bool), `ratios` (each group's rate over
    the base rate) and `suggestion()`.

    Args:
        min_lr, max_lr: the first and the last base learning rate.
        steps: optimizer steps from min_lr to max_lr.
        divergence: the smoothed loss over this many times its lowest stops the test.
        smoothing: weight of the past in the loss's exponential moving average (bias corrected).
    """

    def __init__(
        self,
        min_lr: float = 1e-6,
        max_lr: float = 1.0,
        steps: int = 100,
        divergence: float = 4.0,
        smoothing: float = 0.9,
    ) -> None:
        if not 0 < min_lr < max_lr:
            raise ValueError(f"the range needs 0 < min_lr < max_lr, got {min_lr} and {max_lr}")
        if steps < 10:
            raise ValueError(f"steps must be at least 10, got {steps}")
        if divergence <= 1:
            raise ValueError(f"divergence must be over 1, got {divergence}")
        if not 0 <= smoothing < 1:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.min_lr, self.max_lr, self.steps = min_lr, max_lr, steps
        self.divergence, self.smoothing = divergence, smoothing
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.smoothed: list[float] = []
        self.diverged = False
        self.ratios: list[float] = []
        self._pending: list[torch.Tensor] = []
        self._average = 0.0

    def lr_at(self, step: int) -> float:
        return self.min_lr * (self.max_lr / self.min_lr) ** (step / (self.steps - 1))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if len(trainer.optimizers) != 1:
            raise ValueError(f"the range test takes one optimizer, the model has {len(trainer.optimizers)}")
        optimizer = trainer.optimizers[0]
        base = optimizer.defaults.get("lr")
        if not base:
            raise ValueError(f"{type(optimizer).__name__} has no base learning rate to scale the groups by")
        self.ratios = [group["lr"] / base for group in optimizer.param_groups]
        trainer.strategy.lr_scheduler_configs = []  # the test sets the rates itself
        self._set_lr(trainer, 0)

    def _set_lr(self, trainer: L.Trainer, step: int) -> None:
        lr = self.lr_at(step)
        for group, ratio in zip(trainer.optimizers[0].param_groups, self.ratios, strict=True):
            group["lr"] = lr * ratio

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self._pending.append(loss.detach().float())
        step = trainer.global_step
        if step == len(self.lrs):  # no optimizer step yet: an accumulating batch
            return
        # Lightning hands over each batch's loss divided by the batches a step accumulates
        value = torch.stack(self._pending).sum().item()
        self._pending = []
        self.lrs.append(self.lr_at(len(self.lrs)))
        self.losses.append(value)
        n = len(self.losses)
        self._average = self.smoothing * self._average + (1 - self.smoothing) * value
        smoothed = self._average / (1 - self.smoothing**n)
        self.smoothed.append(smoothed)
        lowest, first = min(self.smoothed), self.smoothed[0]
        limit = self.divergence * lowest
        if lowest < 0.8 * first:
            # a classifier's loss that diverges often settles near chance (ln of the classes),
            # under `divergence` times its lowest: once it has fallen by a fifth, rising back
            # half-way to the start counts too
            limit = min(limit, (first + lowest) / 2)
        if not math.isfinite(smoothed) or smoothed > limit:
            self.diverged = True
            trainer.should_stop = True
        elif n >= self.steps:
            trainer.should_stop = True
        else:
            self._set_lr(trainer, n)

    def suggestion(self, span: float = 0.25) -> float | None:
        """The base learning rate where the smoothed loss falls fastest against log10(lr), each
        slope taken over `span` decades either side (the single steps are too noisy), before its
        lowest point; None when it never falls."""
        lowest = min(range(len(self.smoothed)), key=self.smoothed.__getitem__, default=0)
        per_decade = (self.steps - 1) / math.log10(self.max_lr / self.min_lr)
        k = max(1, round(span * per_decade))
        if lowest < 2 * k:
            return None
        logs = [math.log10(lr) for lr in self.lrs]
        slopes = {
            i: (self.smoothed[i + k] - self.smoothed[i - k]) / (logs[i + k] - logs[i - k])
            for i in range(k, lowest - k + 1)
        }
        steepest = min(slopes, key=slopes.__getitem__)
        return self.lrs[steepest] if slopes[steepest] < 0 else None
