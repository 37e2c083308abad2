"""The record a run leaves in its folder: metrics.json, the diagnosis of its curves, HPARAMS."""

import json
import os
import platform
import time

import lightning as L
import torch

from lit_mnist.loggers import log_settings, log_text, run_folder
from lit_mnist.precision import cpu_name
from lit_mnist.tools.diagnosis import diagnose_run

TRAINER_SETTINGS = ("max_epochs", "max_steps", "accumulate_grad_batches", "precision", "gradient_clip_val")


class RunSummary(L.Callback):
    """After a fit, `metrics.json` in the run folder: epochs, steps, best validation accuracy, the
    best checkpoint, fit and wall time, hardware and library versions, seed, experiment name, the
    command and a diagnosis of the loss curves (printed too). The settings go to the logger with
    the final metrics, so TensorBoard's HPARAMS tab compares runs. A test that follows in the same
    trainer adds its metrics to both. Works with any logger: the curves are collected here (and
    carried in checkpoints, so a resumed run is diagnosed whole).

    Args:
        command: how the run was started, recorded so tables of runs can say how each was made
            (None: lit-mnist fills in the command line it was given).

    `test_follows` (set by lit-mnist fit before the run): a test follows the fit in the same
    trainer, so the settings go to the logger once, after it, with the test metrics among the
    final ones.
    """

    def __init__(self, command: str | None = None) -> None:
        self.command, self.test_follows = command, False
        self.results: dict = {}
        self.curves = Curves()
        self._started: float | None = None
        self._test_started = 0.0
        self._trainer: L.Trainer | None = None
        self._stage: str | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._stage = stage
        if stage == "fit":  # before a checkpoint's state is loaded into it
            self.curves, self._trainer = Curves(), trainer

    def state_dict(self) -> dict:
        if self._trainer is not None:  # a checkpoint at an epoch's end: that epoch's loss is logged
            self.curves.take_train(self._trainer)
        return self.curves.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        # a resumed fit continues its curves; a test of the best checkpoint keeps the whole fit's
        if self._stage == "fit":
            self.curves = Curves(**state_dict)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.perf_counter()
        self.results = {}

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.curves.take_train(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self.curves.take_val(trainer)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.curves.take_train(trainer)
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        self.results = {
            "epochs": trainer.current_epoch,
            "steps": trainer.global_step,
            "val/acc_best": _scalar(trainer.callback_metrics.get("val/acc_best")),
            "best_checkpoint": best or None,
            "fit_seconds": round(time.perf_counter() - self._started, 2),
        }
        self._record(trainer, pl_module, shown=("val/acc_best",), final=not self.test_follows)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._test_started = time.perf_counter()

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.results and self.test_follows:
            self.results = self._recorded_fit(trainer)
        if not self.results:  # a test of its own, not the end of a fit: its run is recorded already
            return
        metrics = trainer.callback_metrics
        self.results.update({k: _scalar(v) for k, v in metrics.items() if k.startswith("test/")})
        self._record(trainer, pl_module, shown=("test/acc", "test/loss"), final=True)
        self.results = {}

    def _recorded_fit(self, trainer: L.Trainer) -> dict:
        """The fit's record from metrics.json, when the fit ran in other processes than this test
        (ddp_spawn): its wall time continues from there, and its diagnosis is kept."""
        run_dir = run_folder(trainer)  # a collective under DDP: every process asks
        path = run_dir / "metrics.json" if run_dir is not None else None
        if path is None or not path.is_file():
            return {}
        recorded = json.loads(path.read_text())
        self._started = self._test_started - recorded.get("wall_seconds", 0.0)
        return recorded

    def _record(
        self, trainer: L.Trainer, pl_module: L.LightningModule, shown: tuple[str, ...], final: bool
    ) -> None:
        run_dir = run_folder(trainer)  # a collective under DDP: every process asks
        if trainer.fast_dev_run or not trainer.is_global_zero or run_dir is None:
            return
        results = dict(self.results)
        results["wall_seconds"] = round(time.perf_counter() - self._started, 2)
        results["hardware"] = hardware(trainer)
        results["seed"] = _seed()
        results["experiment"] = getattr(trainer.logger, "name", None)
        if self.command:
            results["command"] = self.command
        if self.curves.train or "diagnosis" not in results:  # else the fit ran in other processes
            results["diagnosis"] = diagnose_run(self.curves.scalars())
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "metrics.json").write_text(json.dumps(results, indent=2) + "\n")
        if final:
            self._log_hyperparameters(trainer, pl_module, results)
        tested = "test/acc" in results
        if not tested:
            print(f"\nRun folder: {run_dir}")
        print("  " + "  ".join(f"{k}={results[k]:.4f}" for k in shown if results.get(k) is not None))
        if not tested:
            print(f"  Diagnosis: {results['diagnosis']}")

    def _log_hyperparameters(self, trainer: L.Trainer, pl_module: L.LightningModule, results: dict) -> None:
        params = {"seed": results["seed"], "model": _settings(pl_module.hparams)}
        if trainer.datamodule is not None:
            params["data"] = _settings(trainer.datamodule.hparams)
        params["trainer"] = {k: getattr(trainer, k, None) for k in TRAINER_SETTINGS}
        params["trainer"]["precision"] = str(trainer.precision)
        metrics = {k: v for k, v in results.items() if "/" in k and isinstance(v, float)}
        log_settings(trainer, params, metrics)
        log_text(trainer, "diagnosis", results["diagnosis"])
        # The trainer closed the loggers at the end of the stage; this reopened them. Close again,
        # or the queued events may never reach the file.
        for logger in trainer.loggers:
            logger.finalize("success")


class Curves:
    """The loss and accuracy per epoch, the validation loss and accuracy per evaluation and the
    learning rate (of the first parameter group: every group follows the same schedule, scaled)
    over a fit, as the diagnosis reads them."""

    def __init__(
        self,
        train: dict | None = None,
        val: list | None = None,
        lr: list | None = None,
        train_acc: dict | None = None,
        val_acc: list | None = None,
    ):
        self.train: dict[int, float] = dict(train or {})  # epoch -> mean training loss
        self.val: list[tuple[int, float]] = list(val or [])  # (step, validation loss)
        self.lr: list[tuple[int, float]] = list(lr or [])
        self.train_acc: dict[int, float] = dict(train_acc or {})
        self.val_acc: list[tuple[int, float]] = list(val_acc or [])

    def take_train(self, trainer: L.Trainer) -> None:
        """The newest mean training loss and accuracy, logged by the module at the end of the last
        epoch the loop has processed (callbacks can look at them from the next hook on)."""
        epoch = trainer.fit_loop.epoch_progress.current.processed - 1
        for tag, curve in (("train/loss", self.train), ("train/acc", self.train_acc)):
            value = trainer.callback_metrics.get(tag)
            if value is not None and epoch >= 0:
                curve[epoch] = float(value)

    def take_val(self, trainer: L.Trainer) -> None:
        for tag, curve in (("val/loss", self.val), ("val/acc", self.val_acc)):
            value = trainer.callback_metrics.get(tag)
            if value is not None:
                curve.append((trainer.global_step, float(value)))
        if trainer.optimizers:
            self.lr.append((trainer.global_step, float(trainer.optimizers[0].param_groups[0]["lr"])))

    def state_dict(self) -> dict:
        return {
            "train": dict(self.train),
            "val": list(self.val),
            "lr": list(self.lr),
            "train_acc": dict(self.train_acc),
            "val_acc": list(self.val_acc),
        }

    def scalars(self) -> dict[str, list[tuple[int, float]]]:
        """As lit_mnist.tools.diagnosis.diagnose_run takes them."""
        return {
            "train/loss": sorted(self.train.items()),
            "val/loss": self.val,
            "lr-group0": self.lr,
            "train/acc": sorted(self.train_acc.items()),
            "val/acc": self.val_acc,
        }


def hardware(trainer: L.Trainer) -> dict:
    info = {
        "accelerator": type(trainer.accelerator).__name__.replace("Accelerator", "").lower(),
        "devices": trainer.num_devices,
        "precision": str(trainer.precision),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": L.__version__,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def _seed() -> int | None:
    """The seed Lightning's seed_everything set for this process (the CLI calls it)."""
    seed = os.environ.get("PL_GLOBAL_SEED")
    return int(seed) if seed is not None else None


def _scalar(value) -> float | None:
    return None if value is None else float(value)


def _settings(hparams) -> dict:
    """Hyper-parameters without Lightning's bookkeeping entries (`_instantiator`, `_class_path`)."""
    return {k: v for k, v in hparams.items() if not str(k).startswith("_")}
