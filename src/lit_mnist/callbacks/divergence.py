"""Stop a fit whose loss has left the finite numbers, before a broken checkpoint is written."""

import lightning as L
import torch


class Diverged(RuntimeError):
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
