"""Stop a fit whose loss has left the finite numbers, or exploded, before a broken checkpoint is
written."""

import math

import lightning as L
import torch


class Diverged(RuntimeError):
    """Training produced a non-finite or exploding loss."""


class StopOnDivergence(L.Callback):
    """Stops a fit at a NaN or infinite training loss, or one more than `factor` times its starting
    value (the first step's loss, at least 1), with one line that says where; it raises before a
    checkpoint of the broken weights can be written, so the last good one stays.

    The losses are not read every step on an accelerator, where reading one waits for the step to
    finish: they are kept on the device and read together every `check_every` steps, at each
    epoch's end and before every checkpoint. On the CPU reading costs nothing and each step is
    checked at once.

    Args:
        factor: how many times the starting loss counts as exploding; 0 checks finiteness only.
        check_every: steps between reads of the losses off an accelerator (None: 1 on the CPU, 50
            elsewhere).
    """

    def __init__(self, factor: float = 100.0, check_every: int | None = None) -> None:
        self.factor, self.check_every = factor, check_every
        self.start: float | None = None  # the first step's loss, carried in checkpoints
        self._pending: list[tuple[int, torch.Tensor]] = []

    def state_dict(self) -> dict:
        return {"start": self.start}

    def load_state_dict(self, state_dict: dict) -> None:
        self.start = state_dict.get("start")

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.check_every is None:
            self.check_every = 1 if trainer.strategy.root_device.type == "cpu" else 50
        self._pending = []

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx):
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        self._pending.append((trainer.global_step, loss.detach()))
        if self.start is None or len(self._pending) >= self.check_every:
            self.check(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self.check(trainer)  # called before the file is written: raising keeps the last good one

    def check(self, trainer: L.Trainer) -> None:
        """Reads the losses kept since the last check (one transfer); raises Diverged at the first
        bad one."""
        if not self._pending:
            return
        steps = [step for step, _ in self._pending]
        losses = torch.stack([loss.float().reshape(()) for _, loss in self._pending]).tolist()
        self._pending = []
        if self.start is None:
            self.start = losses[0]
        limit = self.factor * max(abs(self.start), 1.0) if self.factor else float("inf")
        for step, loss in zip(steps, losses, strict=True):
            if not math.isfinite(loss):
                raise diverged(trainer, f"loss {loss} at step {step}")
            if loss > limit:
                raise diverged(
                    trainer,
                    f"loss {loss:.3g} at step {step}, over {self.factor:g}x its starting value "
                    f"{self.start:.3g}",
                )


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
