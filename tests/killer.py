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
    scheduler or Ctrl+C would; `again` sends it a second time at once."""

    def __init__(self, step: int, signum: str = "SIGTERM", again: bool = False) -> None:
        self.step, self.signum, self.again = step, getattr(signal, signum), again

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)
            if self.again:
                os.kill(os.getpid(), self.signum)
