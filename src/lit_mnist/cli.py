"""The command line: LightningCLI with the template's defaults, fit followed by test."""

import csv
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import lightning as L
import torch
import yaml
from jsonargparse import ArgumentError
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import TensorBoardLogger

from lit_mnist.callbacks import LastCheckpoint, StopOnNonFiniteLoss, ValidationFigures
from lit_mnist.data import MNISTDataModule
from lit_mnist.errors import UserError
from lit_mnist.model import MNISTClassifier
from lit_mnist.tools.diagnosis import diagnose_run
from lit_mnist.tools.events import read_scalars
from lit_mnist.tools.runs import read_checkpoint, run_dir_of

# Lightning's own meanings of --ckpt_path; anything else must be a file.
CKPT_KEYWORDS = ("best", "hpc", "registry")
HPARAM_TRAINER_KEYS = (
    "max_epochs",
    "max_steps",
    "accumulate_grad_batches",
    "precision",
    "gradient_clip_val",
)


class SaveFitConfig(SaveConfigCallback):
    """Writes config.yaml for `fit` only: testing a checkpoint must not overwrite its run's config."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            super().setup(trainer, pl_module, stage)


class MNISTCLI(LightningCLI):
    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("seed_everything_default", 0)
        args = kwargs.get("args")
        # recorded in metrics.json, so `make results` can say how each run was made
        self.argv = sys.argv[1:] if args is None else list(args) if isinstance(args, list | tuple) else None
        super().__init__(
            MNISTClassifier,
            MNISTDataModule,
            auto_configure_optimizers=False,
            save_config_callback=SaveFitConfig,
            save_config_kwargs={"overwrite": True},  # a resumed run rewrites its own config
            **kwargs,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/acc",
                "checkpoint.mode": "max",
                "checkpoint.save_last": False,  # LastCheckpoint writes last.ckpt
                "checkpoint.filename": "epoch{epoch:02d}-step{step:06d}-val_acc{val/acc:.4f}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.add_lightning_class_args(ValidationFigures, "figures")
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.set_defaults({"lr_monitor.log_momentum": True, "lr_monitor.log_weight_decay": True})
        parser.set_defaults(
            {
                "trainer.logger": {
                    "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                    "init_args": {"save_dir": "logs", "name": "default", "default_hp_metric": False},
                },
                "trainer.max_epochs": 10,
            }
        )
        parser.add_argument(
            "--auto_precision",
            type=bool,
            default=True,
            help="When trainer.precision is unset, use the fastest precision the device runs natively: "
            "bf16-mixed on GPUs with bf16 and on CPUs with AVX512-BF16 or AMX, 16-mixed on older GPUs, "
            "else 32-true.",
        )
        parser.add_argument(
            "--threads",
            type=int | None,
            default=None,
            help="CPU threads for PyTorch's operators (torch.set_num_threads); None keeps its default.",
        )
        parser.add_argument(
            "--save_every_n_steps",
            type=int,
            default=200,
            help="Also write checkpoints/last.ckpt every this many optimizer steps, mid-epoch, so "
            "`--ckpt_path last` resumes a killed run at its next batch; 0 saves at epoch ends only.",
        )
        parser.add_argument(
            "--stop_on_nan",
            type=bool,
            default=True,
            help="Stop at the first non-finite training loss with one line saying where.",
        )
        parser.add_argument(
            "--predictions_file",
            type=str | None,
            default=None,
            help="predict with --data.predict_path: the CSV to write (default: predictions.csv in "
            "the checkpoint's run folder, else in the working folder).",
        )
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="After fit, test the best checkpoint on the official test set.",
        )

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        super().parse_arguments(parser, args)
        config = self._active_config()
        if config.get("ckpt_path"):
            config.ckpt_path = self._resolve_checkpoint(config)
            run_dir = run_dir_of(Path(config.ckpt_path))
            if run_dir is not None:
                _log_into(config.trainer.logger, run_dir)

    def _active_config(self):
        """The config of the subcommand, or the whole config when built with run=False."""
        subcommand = self.config.get("subcommand")
        return self.config[subcommand] if subcommand else self.config

    def before_instantiate_classes(self) -> None:
        config = self._active_config()
        if config.threads is not None:
            if config.threads < 1:
                raise UserError(f"--threads must be at least 1, got {config.threads}")
            torch.set_num_threads(config.threads)
        _check_values(config)
        if config.auto_precision and config.trainer.precision is None:
            config.trainer.precision = fastest_precision(config.trainer.accelerator)
        if config.trainer.fast_dev_run:
            # a smoke run saves nothing; ModelCheckpoint's save_last would still write ./checkpoints
            config.checkpoint.save_last = False

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except ValueError as err:
            # jsonargparse wraps a class's own complaint ("ConvNet needs ...") in a list of the
            # types it tried: surface that complaint alone
            reasons = [
                line.strip()[2:]
                for line in str(err).splitlines()
                if line.strip().startswith("- ") and "Expected a <class 'NoneType'>" not in line
            ]
            if not reasons:
                raise
            raise UserError(reasons[0]) from None

    def instantiate_trainer(self, **kwargs) -> L.Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        if not trainer.loggers:  # --trainer.logger=false: nothing to write learning rates to
            trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, LearningRateMonitor)]
        config = self._active_config()
        if config.get("stop_on_nan"):
            trainer.callbacks.insert(0, StopOnNonFiniteLoss())
        if trainer.checkpoint_callback is not None:
            trainer.callbacks.append(LastCheckpoint(config.get("save_every_n_steps") or 0))
        resuming = self.config.get("subcommand") == "fit" and config.get("ckpt_path")
        if resuming and isinstance(trainer.logger, TensorBoardLogger):
            # a killed run logged past its last checkpoint: TensorBoard hides those events, the
            # resumed run writes them again, so no step shows twice
            trainer.logger._kwargs["purge_step"] = getattr(self, "_ckpt_step", None)
        return trainer

    def _resolve_checkpoint(self, config) -> str:
        """`last` means the newest last.ckpt of this experiment's runs; a path must exist."""
        ckpt_path = config.ckpt_path
        if ckpt_path in CKPT_KEYWORDS:
            return ckpt_path
        if ckpt_path == "last":
            if not _is_tensorboard(config.trainer.logger):
                raise UserError("--ckpt_path last needs the default TensorBoardLogger to know where runs are")
            init = config.trainer.logger.init_args
            experiment = Path(init.save_dir) / init.name
            candidates = sorted(experiment.glob("*/checkpoints/last.ckpt"), key=os.path.getmtime)
            if not candidates:
                raise UserError(f"--ckpt_path last: no run under {experiment} has checkpoints/last.ckpt")
            ckpt_path = str(candidates[-1])
        elif not Path(ckpt_path).is_file():
            raise UserError(f"--ckpt_path {ckpt_path}: no such checkpoint file")
        checkpoint = read_checkpoint(ckpt_path, "--ckpt_path")
        self._ckpt_step = checkpoint.get("global_step")
        state = checkpoint["state_dict"]
        self._ckpt_shapes = {k: tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")}
        return ckpt_path

    def _check_checkpoint_fits(self) -> None:
        """A checkpoint of another model would fail deep inside Lightning: say what differs."""
        saved = getattr(self, "_ckpt_shapes", None)
        if saved is None:
            return
        here = {k: tuple(v.shape) for k, v in self.model.state_dict().items()}
        problems = [f"missing {k}" for k in here if k not in saved][:3]
        problems += [f"unexpected {k}" for k in saved if k not in here][:3]
        problems += [
            f"{k} is {saved[k]} there, {here[k]} here" for k in here if k in saved and saved[k] != here[k]
        ][:3]
        if problems:
            path = self._active_config().ckpt_path
            raise UserError(f"--ckpt_path {path} holds a different model: {'; '.join(problems)}")

    def before_fit(self) -> None:
        self._check_checkpoint_fits()
        self._started = time.perf_counter()

    def before_validate(self) -> None:
        self._check_checkpoint_fits()

    def before_test(self) -> None:
        self._check_checkpoint_fits()

    def before_predict(self) -> None:
        self._check_checkpoint_fits()

    def after_fit(self) -> None:
        trainer = self.trainer
        fit_seconds = time.perf_counter() - self._started
        results = {
            "epochs": trainer.current_epoch,
            "steps": trainer.global_step,
            "val/acc_best": _scalar(trainer.callback_metrics.get("val/acc_best")),
        }
        if self.config.fit.test_after_fit:
            # fast_dev_run saves no checkpoint: then test the weights in memory
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            tested = trainer.test(self.model, datamodule=self.datamodule, ckpt_path="best" if best else None)
            results.update({k: v for k, v in tested[0].items() if k.startswith("test/")})
            results["best_checkpoint"] = best
        results["fit_seconds"] = round(fit_seconds, 2)
        results["wall_seconds"] = round(time.perf_counter() - self._started, 2)
        log_dir = trainer.log_dir  # a collective under DDP: every process asks
        if trainer.fast_dev_run or not trainer.is_global_zero or log_dir is None:
            return
        run_dir = Path(log_dir)
        results["hardware"] = hardware(trainer)
        results["seed"] = self.config.fit.seed_everything
        results["experiment"] = getattr(trainer.logger, "name", None)
        if self.argv is not None:
            results["command"] = shlex.join(["lit-mnist", *self.argv])
        if isinstance(trainer.logger, TensorBoardLogger):
            results["diagnosis"] = diagnose_run(read_scalars(run_dir))
        (run_dir / "metrics.json").write_text(json.dumps(results, indent=2) + "\n")
        self._log_hparams(results)
        print(f"\nRun folder: {run_dir}")
        summary = {
            k: results[k] for k in ("test/acc", "test/loss", "val/acc_best") if results.get(k) is not None
        }
        print("  " + "  ".join(f"{k}={v:.4f}" for k, v in summary.items()))
        if "diagnosis" in results:
            print(f"  Diagnosis: {results['diagnosis']}")

    def after_predict(self) -> None:
        batches = self.trainer.predict_loop.predictions
        if not batches:
            return
        if self.datamodule.hparams.predict_path:
            self._write_predictions(batches)
            return
        predictions = torch.cat([b["prediction"] for b in batches])
        counts = torch.bincount(predictions, minlength=self.model.hparams.num_classes).tolist()
        print(f"Predicted {len(predictions)} images; per class: {counts}")

    def _write_predictions(self, batches: list[dict]) -> None:
        """predictions.csv (file, prediction, confidence, top3) and a short table; files that
        could not be read are named, and the exit status is then 2."""
        data = self.datamodule
        probabilities = torch.cat([b["probabilities"] for b in batches]).float()
        top = probabilities.topk(min(3, probabilities.shape[1]), dim=1)
        rows = []
        for file, values, classes in zip(data.predict_files, top.values, top.indices, strict=True):
            top3 = " ".join(f"{c}:{v:.3f}" for c, v in zip(classes.tolist(), values.tolist(), strict=True))
            rows.append((str(file), int(classes[0]), f"{float(values[0]):.4f}", top3))
        config = self._active_config()
        output = config.get("predictions_file")
        if output is None:
            run_dir = run_dir_of(Path(config.ckpt_path)) if config.get("ckpt_path") else None
            output = (run_dir or Path(".")) / "predictions.csv"
        output = Path(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        with output.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["file", "prediction", "confidence", "top3"])
            writer.writerows(rows)
        width = max(len(r[0]) for r in rows)
        print(f"\n{'file':<{width}}  prediction  confidence  converted")
        for file, prediction, confidence, _ in rows:
            converted = ", ".join(data.predict_notes[Path(file)]) or "-"
            print(f"{file:<{width}}  {prediction:>10}  {confidence:>10}  {converted}")
        print(f"\nPredictions of {len(rows)} images written to {output}")
        if data.predict_rejected:
            for reason in data.predict_rejected.values():
                print(f"error: {reason}", file=sys.stderr)
            sys.exit(2)

    def _log_hparams(self, results: dict) -> None:
        """The run's settings with its final metrics, so TensorBoard's HPARAMS tab compares runs."""
        logger = self.trainer.logger
        if not isinstance(logger, TensorBoardLogger):
            return
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))["fit"]
        params = {"seed": config.get("seed_everything"), "model": config["model"], "data": config["data"]}
        params["trainer"] = {k: config["trainer"].get(k) for k in HPARAM_TRAINER_KEYS}
        metrics = {k: v for k, v in results.items() if "/" in k and isinstance(v, float)}
        logger.log_hyperparams(params, metrics)
        if "diagnosis" in results:
            logger.experiment.add_text("diagnosis", results["diagnosis"], self.trainer.global_step)
        # The trainer closed the logger after testing; this reopened it. Close again, or the
        # queued events may never reach the file.
        logger.finalize("success")


def fastest_precision(accelerator: str) -> str:
    """The precision the chosen device computes fastest without emulation."""
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    if accelerator in ("auto", "cpu") and _cpu_has_native_bf16():
        return "bf16-mixed"
    return "32-true"


def _cpu_has_native_bf16() -> bool:
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # not public API: may vanish
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def _check_values(config) -> None:
    """Values every optimizer and the trainer would reject later, rejected before any work."""
    model = config.get("model")
    for part in ("optimizer", "scheduler"):
        init = getattr(model.get(part) if model else None, "init_args", None)
        for key in ("lr", "weight_decay", "max_lr"):
            value = init.get(key) if init is not None else None
            if isinstance(value, int | float) and value < 0:
                raise UserError(f"--model.{part}.{key} must be 0 or more, got {value}")
    accumulate = config.trainer.get("accumulate_grad_batches")
    if accumulate is not None and accumulate < 1:
        raise UserError(f"--trainer.accumulate_grad_batches must be at least 1, got {accumulate}")


def _log_into(logger_config, run_dir: Path) -> None:
    """Point a TensorBoardLogger config at an existing run folder, so a resumed run continues there."""
    if _is_tensorboard(logger_config):
        init = logger_config.init_args
        init.save_dir, init.name, init.version = str(run_dir.parent.parent), run_dir.parent.name, run_dir.name


def _is_tensorboard(logger_config) -> bool:
    return bool(logger_config) and str(logger_config.get("class_path", "")).endswith("TensorBoardLogger")


def _scalar(value) -> float | None:
    return None if value is None else float(value)


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


SUBCOMMANDS = ("fit", "validate", "test", "predict")


def main() -> None:
    # parse errors raise instead of printing the usage: the user gets one line
    raising = {"exit_on_error": False}
    try:
        _check_config_files(sys.argv[1:])
        MNISTCLI(parser_kwargs={**raising, **{name: raising for name in SUBCOMMANDS}})
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except ArgumentError as err:
        print(f"error: {_one_line(str(err))} (see lit-mnist <subcommand> --help)", file=sys.stderr)
        sys.exit(2)


def _check_config_files(argv: list[str]) -> None:
    """A --config that names no file, or a file that is not YAML, named in one line."""
    for flag, value in zip(argv, [*argv[1:], ""], strict=True):
        if flag.startswith("--config="):
            value = flag.split("=", 1)[1]
        elif flag not in ("--config", "-c"):
            continue
        path = Path(value)
        if not path.is_file():
            if path.suffix in (".yaml", ".yml", ".json") or "/" in value:  # not inline YAML
                raise UserError(f"--config {value}: no such file")
            continue
        try:
            yaml.safe_load(path.read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise UserError(f"--config {value} is not valid YAML{where}: {reason}") from None


def _one_line(message: str) -> str:
    """jsonargparse nests its reasons over several lines: the first says where, the last what."""
    lines = [line.strip(" -") for line in message.splitlines() if line.strip(" -")]
    return lines[0] if len(lines) < 2 else f"{lines[0]} {lines[-1]}"


if __name__ == "__main__":
    main()
