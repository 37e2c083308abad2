"""Callbacks that kill or signal their own process, for the resume tests (imported by the CLI
through --trainer.callbacks+=killer.KillAtStep in a subprocess)."""

import os
import signal

import lightning as L


class KillAtStep(L.Callback):
    """kill -9 right after optimizer step `step` (mid-epoch when the step is)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class KillWhileSaving(L.Callback):
    """kill -9 in the middle of writing the checkpoint of optimizer step `step`."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class SignalAtStep(L.Callback):
    """Sends this process `signum` (SIGTERM by default) right after optimizer step `step`, as a
    scheduler or Ctrl+C would; `again` sends it a second time at once; `rank`: only in that
    process of a DDP run; `in_validation`: in the validation that follows the step instead."""

    def __init__(
        self,
        step: int,
        signum: str = "SIGTERM",
        again: bool = False,
        rank: int | None = None,
        in_validation: bool = False,
    ) -> None:
        self.step, self.signum, self.again, self.rank = step, getattr(signal, signum), again, rank
        self.in_validation = in_validation

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if not self.in_validation:
            self._send(trainer)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if self.in_validation and not trainer.sanity_checking and batch_idx == 0:
            self._send(trainer)

    def _send(self, trainer) -> None:
        if trainer.global_step == self.step and self.rank in (None, trainer.global_rank):
            os.kill(os.getpid(), self.signum)
            if self.again:
                os.kill(os.getpid(), self.signum)
