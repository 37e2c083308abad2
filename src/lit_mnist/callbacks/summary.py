"""The record a run leaves in its folder: metrics.json, the diagnosis of its curves, HPARAMS."""

import json
import os
import platform
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from lit_mnist.tools.diagnosis import diagnose_run
from lit_mnist.tools.events import read_scalars

TRAINER_SETTINGS = ("max_epochs", "max_steps", "accumulate_grad_batches", "precision", "gradient_clip_val")


class RunSummary(L.Callback):
    """After a fit, `metrics.json` in the run folder: epochs, steps, best validation accuracy, the
    best checkpoint, fit and wall time, hardware and library versions, seed, experiment name, the
    command and a diagnosis of the loss curves (printed too). The settings go to the logger with
    the final metrics, so TensorBoard's HPARAMS tab compares runs. A test that follows in the same
    trainer adds its metrics to both.

    Args:
        command: how the run was started, recorded so tables of runs can say how each was made.
        test_follows: a test follows the fit in the same trainer: the settings go to the logger
            once, after it, with the test metrics among the final ones.
    """

    def __init__(self, command: str | None = None, test_follows: bool = False) -> None:
        self.command, self.test_follows = command, test_follows
        self.results: dict = {}
        self._started: float | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.perf_counter()
        self.results = {}

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        self.results = {
            "epochs": trainer.current_epoch,
            "steps": trainer.global_step,
            "val/acc_best": _scalar(trainer.callback_metrics.get("val/acc_best")),
            "best_checkpoint": best or None,
            "fit_seconds": round(time.perf_counter() - self._started, 2),
        }
        self._record(trainer, pl_module, shown=("val/acc_best",), final=not self.test_follows)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.results:  # a test of its own, not the end of a fit: its run is recorded already
            return
        metrics = trainer.callback_metrics
        self.results.update({k: _scalar(v) for k, v in metrics.items() if k.startswith("test/")})
        self._record(trainer, pl_module, shown=("test/acc", "test/loss"), final=True)
        self.results = {}

    def _record(
        self, trainer: L.Trainer, pl_module: L.LightningModule, shown: tuple[str, ...], final: bool
    ) -> None:
        log_dir = trainer.log_dir  # a collective under DDP: every process asks
        if trainer.fast_dev_run or not trainer.is_global_zero or log_dir is None:
            return
        run_dir = Path(log_dir)
        results = dict(self.results)
        results["wall_seconds"] = round(time.perf_counter() - self._started, 2)
        results["hardware"] = hardware(trainer)
        results["seed"] = _seed()
        results["experiment"] = getattr(trainer.logger, "name", None)
        if self.command:
            results["command"] = self.command
        if isinstance(trainer.logger, TensorBoardLogger):
            results["diagnosis"] = diagnose_run(read_scalars(run_dir))
        (run_dir / "metrics.json").write_text(json.dumps(results, indent=2) + "\n")
        if final:
            self._log_hyperparameters(trainer, pl_module, results)
        tested = "test/acc" in results
        if not tested:
            print(f"\nRun folder: {run_dir}")
        print("  " + "  ".join(f"{k}={results[k]:.4f}" for k in shown if results.get(k) is not None))
        if "diagnosis" in results and not tested:
            print(f"  Diagnosis: {results['diagnosis']}")

    def _log_hyperparameters(self, trainer: L.Trainer, pl_module: L.LightningModule, results: dict) -> None:
        logger = trainer.logger
        if not isinstance(logger, TensorBoardLogger):
            return
        params = {"seed": results["seed"], "model": _settings(pl_module.hparams)}
        if trainer.datamodule is not None:
            params["data"] = _settings(trainer.datamodule.hparams)
        params["trainer"] = {k: getattr(trainer, k, None) for k in TRAINER_SETTINGS}
        params["trainer"]["precision"] = str(trainer.precision)
        metrics = {k: v for k, v in results.items() if "/" in k and isinstance(v, float)}
        logger.log_hyperparams(params, metrics)
        if "diagnosis" in results:
            logger.experiment.add_text("diagnosis", results["diagnosis"], trainer.global_step)
        # The trainer closed the logger at the end of the stage; this reopened it. Close again, or
        # the queued events may never reach the file.
        logger.finalize("success")


def hardware(trainer: L.Trainer) -> dict:
    info = {
        "accelerator": type(trainer.accelerator).__name__.replace("Accelerator", "").lower(),
        "devices": trainer.num_devices,
        "precision": str(trainer.precision),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": L.__version__,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _seed() -> int | None:
    """The seed Lightning's seed_everything set for this process (the CLI calls it)."""
    seed = os.environ.get("PL_GLOBAL_SEED")
    return int(seed) if seed is not None else None


def _scalar(value) -> float | None:
    return None if value is None else float(value)


def _settings(hparams) -> dict:
    """Hyper-parameters without Lightning's bookkeeping entries (`_instantiator`, `_class_path`)."""
    return {k: v for k, v in hparams.items() if not str(k).startswith("_")}
