"""checkpoints/last.ckpt, written often enough that a killed run loses little, and written at the
current step when the run is told to stop (SIGTERM, Ctrl+C, SLURM's requeue signal)."""

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import Checkpoint

from lit_mnist.callbacks.divergence import diverged
from lit_mnist.compat import end_restart, resume_after_epoch_end
from lit_mnist.errors import ParameterError
from lit_mnist.loggers import run_folder


class Stopped(Exception):
    """A fit stopped by a signal after writing last.ckpt; `exit_code` is 128 + the signal number,
    the status a shell gives a process that signal ended."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


class LastCheckpoint(Checkpoint):
    """checkpoints/last.ckpt, rewritten after every epoch (validation and metric resets included)
    and every `every_n_steps` optimizer steps mid-epoch: what `--ckpt_path last` resumes from.

    Lightning's `save_last` only writes when a best checkpoint is written, so a killed run could
    lose every epoch since its last improvement. Writes are atomic (a temporary file moved into
    place): a kill during a write leaves the previous last.ckpt intact.

    SIGTERM (a scheduler's preemption, `kill`) and SIGINT (Ctrl+C) during training stop the run at
    the end of the current step: last.ckpt is written there, one line says where the run stopped
    and how to resume it, and the process exits with 143 or 130 (128 + the signal), which batch
    systems read as a failure to retry. A second Ctrl+C aborts at once. On SLURM with Lightning's
    auto-requeue (its SLURMEnvironment, the default there), the requeue signal (SIGUSR1 unless
    the environment says otherwise) does the same and also requeues the job with `scontrol requeue`.

    Args:
        every_n_steps: optimizer steps between mid-epoch writes; 0 writes at epoch ends only.
        resume_command: the command that started the run, for the resume hint (its --ckpt_path,
            if any, is replaced); None: lit-mnist fills in the command line it was given.
        on_signals: stop at the end of the step on SIGTERM, SIGINT and SLURM's requeue signal.
    """

    FILENAME = "last.ckpt"

    def __init__(
        self, every_n_steps: int = 200, resume_command: str | None = None, on_signals: bool = True
    ) -> None:
        if every_n_steps < 0:
            raise ParameterError(self, "every_n_steps", f"must be 0 or more, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.resume_command, self.on_signals = resume_command, on_signals
        self.dirpath: Path | None = None
        self._saved_step = -1
        self._signal: int | None = None  # the signal received, acted on at the end of the step
        self._requeue = False
        self._requeue_signal: int | None = None  # SLURM's, when Lightning's SLURM environment requeues
        self._installed = False
        self._stopping: int | None = None  # last.ckpt written for this signal: stop at the next hook
        self._trained_this_epoch = False  # a batch of the current epoch trained in this process
        self._seen_step = 0  # the optimizer step count after the last batch

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        main = trainer.checkpoint_callback
        folder = getattr(main, "dirpath", None) if main is not self else None
        default = (run_folder(trainer) or Path(trainer.default_root_dir)) / "checkpoints"
        self.dirpath = Path(folder) if folder else default
        self._signal, self._requeue, self._installed, self._stopping = None, False, False, None

    @property
    def path(self) -> Path:
        assert self.dirpath is not None, "setup() resolves the folder"
        return self.dirpath / self.FILENAME

    # Lightning installs its own SIGTERM handler just before the loops run (it ends the fit with
    # status 0 at the next batch, writing nothing): these hooks come after it and replace it.
    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install(trainer)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install(trainer)
        self._seen_step = trainer.global_step  # restored by now, when resuming

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx):
        self._trained_this_epoch = True
        step = trainer.global_step
        stepped, self._seen_step = step != self._seen_step, step
        if not stepped or batch_idx + 1 >= trainer.num_training_batches:
            # Only right after an optimizer step: within a window of accumulated gradients, the
            # gradients so far are not saved. Not at an epoch's last batch: Lightning resumes such a
            # checkpoint by skipping the rest of that epoch (its validation, epoch-end hooks and
            # schedulers); the epoch's end writes and stops instead.
            return
        if self.every_n_steps and step % self.every_n_steps == 0 and step != self._saved_step:
            self._save(trainer)
        if self._stop_requested(trainer):
            self._prepare_stop(trainer)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._trained_this_epoch = False

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop_if_prepared(trainer)
        if self._trained_this_epoch and trainer.fit_loop.restarting:
            end_restart(trainer)  # a resumed epoch's ReduceLROnPlateau step, as in a run never stopped
        if trainer.max_steps != -1:
            # A fit bounded by max_steps does not resume exactly from a checkpoint written here:
            # Lightning 2.6 then runs the end of this epoch a second time and gives the next epoch's
            # sampler the epoch after it (see lit_mnist.compat). The step-wise writes and the
            # write at the end of the fit cover such runs, and a signal stops after the next step.
            return
        # monitoring callbacks run after the module's hook: the epoch's train metrics are reset
        self._save(trainer)
        if self._stop_requested(trainer):
            self._prepare_stop(trainer)

    # The stop itself waits for the next hook: by then Lightning has logged the step's metrics
    # (and an epoch's), so the curves of the stopped run reach the checkpoint's step.
    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx
    ) -> None:
        self._stop_if_prepared(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop_if_prepared(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # a signal during the last epoch's validation: the fit is whole, the test after it skipped
        if self._stopping is None and self._stop_requested(trainer):
            self._prepare_stop(trainer)
        elif self._saved_step != trainer.global_step:  # a fit bounded by max_steps ends here
            self._save(trainer)
        self._stop_if_prepared(trainer, finished=True)

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        # the end of a max_steps fit at an epoch's end: given more steps or epochs, the resumed
        # fit starts the next epoch
        if trainer.state.fn == "fit":
            resume_after_epoch_end(checkpoint, step_bounded=trainer.max_steps != -1)

    def _save(self, trainer: L.Trainer) -> None:
        if trainer.fast_dev_run or trainer.sanity_checking:
            return
        # an update can break the weights while the loss that led to it was still finite
        if not all(bool(torch.isfinite(p).all()) for p in trainer.lightning_module.parameters()):
            raise diverged(trainer, f"non-finite weights after step {trainer.global_step}")
        trainer.save_checkpoint(self.path, weights_only=False)
        self._saved_step = trainer.global_step

    # --- stopping on a signal -------------------------------------------------------------------

    def _install(self, trainer: L.Trainer) -> None:
        if (
            self._installed
            or not self.on_signals
            or threading.current_thread() is not threading.main_thread()
        ):
            return
        self._installed = True
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        environment = trainer._accelerator_connector.cluster_environment
        if isinstance(environment, SLURMEnvironment) and environment.auto_requeue:
            self._requeue_signal = environment.requeue_signal or signal.SIGUSR1
            signal.signal(self._requeue_signal, self._on_signal)
        # Lightning's teardown puts back the handlers that were there before the fit

    def _on_signal(self, signum: int, frame) -> None:
        if signum == signal.SIGINT and self._signal == signal.SIGINT:
            raise KeyboardInterrupt  # Ctrl+C twice: stop now, without a checkpoint
        if signum == self._requeue_signal:
            self._requeue = True
        if self._signal is None or signum == signal.SIGINT:
            self._signal = signum
        # os.write, not print: a handler that prints while the main thread prints raises
        message = f"\n{signal.Signals(signum).name} received: stopping after this step to write last.ckpt\n"
        with contextlib.suppress(OSError):
            os.write(2, message.encode())

    def _stop_requested(self, trainer: L.Trainer) -> bool:
        if not self.on_signals:
            return False
        if trainer.world_size > 1:  # every process stops at the same step, or none does
            return trainer.strategy.reduce_boolean_decision(self._signal is not None, all=False)
        return self._signal is not None

    def _prepare_stop(self, trainer: L.Trainer) -> None:
        """last.ckpt at this step (unless just written); the stop follows at the next hook."""
        if self._saved_step != trainer.global_step:
            self._save(trainer)
        self._stopping = self._signal or signal.SIGTERM  # another process of the run received it

    def _stop_if_prepared(self, trainer: L.Trainer, finished: bool = False) -> None:
        signum = self._stopping
        if signum is None:
            return
        self._stopping = None
        requeued = self._requeue and trainer.is_global_zero and _requeue_slurm_job()
        name = signal.Signals(signum).name
        if finished:  # the epoch counter has moved past the last epoch
            where = f"stopped by {name} after the last step (step {trainer.global_step}), before any test"
        else:
            where = f"stopped by {name} at epoch {trainer.current_epoch}, step {trainer.global_step}"
        if not trainer.is_global_zero:  # one line for the run: the first process says it
            raise Stopped("", signum)
        if self._saved_step != trainer.global_step:  # a smoke run (fast_dev_run) saves nothing
            raise Stopped(f"{where}; no checkpoint written", signum)
        resume = f"resume with: {self._resume(self.path)}"
        if requeued:
            resume = f"SLURM job {requeued} requeued, and it resumes from there by itself; or {resume}"
        raise Stopped(f"{where}: wrote {self.path}; {resume}", signum)

    def _resume(self, path: Path) -> str:
        words = shlex.split(self.resume_command) if self.resume_command else ["lit-mnist", "fit", "..."]
        kept, skip = [], False
        for word in words:
            if skip:
                skip = False
            elif word == "--ckpt_path":
                skip = True
            elif not word.startswith("--ckpt_path="):
                kept.append(word)
        return shlex.join([*kept, f"--ckpt_path={path}"])


def _requeue_slurm_job() -> str | None:
    """`scontrol requeue` for this SLURM job; its id when that worked, else None."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array_job else os.environ.get("SLURM_JOB_ID")
    if not job:
        return None
    try:
        done = subprocess.run(["scontrol", "requeue", job], check=False).returncode == 0
    except OSError as err:
        print(f"could not requeue SLURM job {job}: {err}", file=sys.stderr)
        return None
    if not done:
        print(f"scontrol requeue {job} failed", file=sys.stderr)
    return job if done else None
