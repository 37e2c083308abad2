"""The command line: LightningCLI with the template's defaults, fit followed by test, one-line
errors, and the tools around finished runs as subcommands of the same command."""

import importlib.util
import inspect
import os
import re
import shlex
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import torch
import yaml
from jsonargparse import ArgumentError, Namespace
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.callbacks import ProgressBar as AnyProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from lit_mnist import loggers, precision
from lit_mnist.callbacks import (
    LastCheckpoint,
    PredictionWriter,
    ProgressBar,
    RunSummary,
    StopOnDivergence,
    ValidationFigures,
)
from lit_mnist.callbacks.checkpoint import Stopped
from lit_mnist.callbacks.divergence import Diverged
from lit_mnist.compat import keep_hyperparameters_as_given, starts_processes_per_stage
from lit_mnist.data import DataError, ImageDataModule, preset_spec
from lit_mnist.errors import ParameterError, UserError, config_key, named_class
from lit_mnist.loggers import allow_mlflow_file_store, experiment_dir, resume_into, run_folder
from lit_mnist.model import MNISTClassifier
from lit_mnist.nets import StockNet, constructor_defaults, takes_spec
from lit_mnist.tools import TOOLS
from lit_mnist.tools.runs import newest_last_checkpoint, read_checkpoint, run_dir_of, shape_mismatch

# Lightning's own meanings of --ckpt_path (and `registry:<model>[:version:<v>]`, Lightning's model
# registry); anything else must be a file.
CKPT_KEYWORDS = ("best", "hpc", "registry")
# Callbacks with a group of flags of their own (--checkpoint.*, --figures.*, --lr_monitor.*).
CALLBACK_GROUPS = {
    "checkpoint": ModelCheckpoint,
    "figures": ValidationFigures,
    "lr_monitor": LearningRateMonitor,
}
# The other callbacks of every run, also a group each, by default the template's class and shown
# with its arguments in --print_config and config.yaml: `--last_checkpoint.every_n_steps=500`
# sets one, `--divergence=null` removes it, `--progress_bar=<class>` swaps in any of the kind.
# name -> (the kind any replacement must be, the default)
SWAPPABLE = {
    "divergence": (Callback, StopOnDivergence),
    "last_checkpoint": (Callback, LastCheckpoint),
    "summary": (Callback, RunSummary),
    "predictions": (Callback, PredictionWriter),
    "progress_bar": (AnyProgressBar, ProgressBar),
}
# Flags of earlier versions, found in the config.yaml of older runs: what each sets now.
# name -> (type, the group, its argument; None: false removes the group)
DEPRECATED = {
    "save_every_n_steps": (int, "last_checkpoint", "every_n_steps"),
    "divergence_factor": (float, "divergence", "factor"),
    "predictions_file": (str, "predictions", "output"),
    "stop_on_nan": (bool, "divergence", None),
}
SUBCOMMANDS = ("fit", "validate", "test", "predict")
DEFAULTS = {
    "checkpoint.monitor": "val/acc",
    "checkpoint.mode": "max",
    "checkpoint.save_last": False,  # LastCheckpoint writes last.ckpt
    "checkpoint.filename": "epoch{epoch:02d}-step{step:06d}-val_acc{val/acc:.4f}",
    "checkpoint.auto_insert_metric_name": False,
    "lr_monitor.log_momentum": True,
    "lr_monitor.log_weight_decay": True,
    "trainer.logger": {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        "init_args": {"save_dir": "logs", "name": "default", "default_hp_metric": False},
    },
    "trainer.max_epochs": 10,
    **{name: {"class_path": f"{cls.__module__}.{cls.__name__}"} for name, (_, cls) in SWAPPABLE.items()},
    # --data=lit_mnist.data.ImageFolderDataModule (or any ImageDataModule) swaps it
    "data": {"class_path": "lit_mnist.data.MNISTDataModule"},
}
# The template's own flags: name -> (type, default, help).
OPTIONS = {
    "auto_precision": (
        bool,
        True,
        "When trainer.precision is unset, use the fastest precision the device runs natively: "
        "bf16-mixed on GPUs with bf16 and on CPUs with AVX512-BF16 or AMX, 16-mixed on older GPUs, "
        "else 32-true.",
    ),
    "threads": (
        int | None,
        None,
        "CPU threads for PyTorch's operators (torch.set_num_threads); None keeps its default.",
    ),
    "test_after_fit": (bool, True, "After fit, test the best checkpoint on the official test set."),
}


class SaveFitConfig(SaveConfigCallback):
    """Writes config.yaml into the run folder, whatever the logger, and for `fit` only: testing a
    checkpoint must not overwrite its run's config. A resumed run rewrites its own."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":
            self.folder = run_folder(trainer) or Path(trainer.default_root_dir)  # every process asks
            super().setup(trainer, pl_module, stage)

    def save_config(self, trainer, pl_module, stage: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / self.config_filename
        self.parser.save(self.config, path, skip_none=False, overwrite=True, multifile=self.multifile)


class MNISTCLI(LightningCLI):
    def __init__(self, args: list[str] | None = None, **kwargs) -> None:
        kwargs.setdefault("seed_everything_default", 0)
        self.command = shlex.join(["lit-mnist", *(sys.argv[1:] if args is None else args)])
        self.checkpoint: dict | None = None  # the --ckpt_path checkpoint, read once
        try:
            super().__init__(
                MNISTClassifier,
                ImageDataModule,
                subclass_mode_data=True,
                args=args,
                auto_configure_optimizers=False,
                save_config_callback=SaveFitConfig,
                save_config_kwargs={"save_to_log_dir": False},  # SaveFitConfig knows the run folder
                **kwargs,
            )
        except ParameterError as err:
            raise UserError(self._as_flag(err)) from None

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for name, callback in CALLBACK_GROUPS.items():
            parser.add_lightning_class_args(callback, name)
        for name, (kind, _) in SWAPPABLE.items():
            parser.add_lightning_class_args(kind, name, subclass_mode=True, required=False)
        parser.set_defaults(DEFAULTS)
        # the data owns its shape: the net is built for the images the datamodule describes
        parser.link_arguments("data.spec", "model.data", apply_on="instantiate")
        for name, (kind, default, help) in OPTIONS.items():
            parser.add_argument(f"--{name}", type=kind, default=default, help=help)
        for name, (kind, group, argument) in DEPRECATED.items():
            instead = f"--{group}.{argument}" if argument else f"--{group}=null"
            parser.add_argument(f"--{name}", type=kind | None, default=None, help=f"Deprecated: {instead}.")

    def _active_config(self):
        """The config of the subcommand, or the whole config when built with run=False."""
        subcommand = self.config.get("subcommand")
        return self.config[subcommand] if subcommand else self.config

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        super().parse_arguments(parser, args)
        config = self._active_config()
        _apply_deprecated(config)
        allow_mlflow_file_store(config.trainer.logger)
        if self._slurm_restart(config):
            config.ckpt_path = "last"
        ckpt = str(config.get("ckpt_path"))
        registry = ckpt.lower() == "registry" or ckpt.lower().startswith("registry:")
        if registry and importlib.util.find_spec("litmodels") is None:  # else Lightning opens it as a file
            raise UserError(
                f"--ckpt_path {config.ckpt_path}: Lightning's model registry needs the litmodels package "
                "(pip install litmodels)"
            )
        if config.get("ckpt_path") and not _lightning_keyword(config.ckpt_path):
            path = config.ckpt_path
            if path == "last":
                path = str(newest_last_checkpoint(experiment_dir(config.trainer.logger)))
            elif not Path(path).is_file():
                raise UserError(f"--ckpt_path {path}: no such checkpoint file")
            config.ckpt_path, self.checkpoint = path, read_checkpoint(path, "--ckpt_path")
            run_dir = run_dir_of(Path(path))
            if run_dir is not None and config.trainer.logger:
                resuming = self.config.get("subcommand") == "fit"
                purge_step = self.checkpoint.get("global_step") if resuming else None
                resume_into(config.trainer.logger, run_dir, purge_step)

    def _slurm_restart(self, config) -> bool:
        """A fit that SLURM requeued (after the requeue signal stopped it) continues from its
        experiment's newest last.ckpt when no --ckpt_path is given."""
        restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
        if self.config.get("subcommand") != "fit" or config.get("ckpt_path") or restarts in ("", "0"):
            return False
        if not SLURMEnvironment.detect():
            return False
        try:
            newest_last_checkpoint(experiment_dir(config.trainer.logger))
        except UserError:
            return False  # nothing written before the requeue: start afresh
        print(f"SLURM restart {restarts}: resuming from the experiment's newest last.ckpt", file=sys.stderr)
        return True

    def instantiate_classes(self) -> None:
        # Evaluating a checkpoint: its net reads the images as its own spec says (shape, classes,
        # the training split's mean and std), whatever the data at hand would give.
        spec = self.checkpoint and self.checkpoint.get("hyper_parameters", {}).get("data")
        given = spec if self.config.get("subcommand") in ("validate", "test", "predict") else None
        config = self._active_config()
        net = config.model.net
        stock = _stock_net(net, weights=self.checkpoint is None)  # a checkpoint brings the weights
        if stock is not None:
            # built here, for the data's classes and channels; the hyper-parameters keep it as given
            keep_hyperparameters_as_given(self)
            config.model.net = stock
        try:
            with preset_spec(given):
                super().instantiate_classes()
        except ValueError as err:
            # the datamodule is a subclass choice: jsonargparse wraps what its __init__ raised
            if (parameter := _parameter_error(err)) is not None:
                raise parameter from None
            if CLASS_PATH_ENTRY not in str(err):
                raise
            # a class named in a list (--trainer.callbacks+=X) that failed to build
            raise UserError(_one_line(str(err))) from None
        finally:
            config.model.net = net
        if stock is not None:  # config.yaml shows the arguments the net was built with
            spec = stock.spec(self.model.data)
            for key, value in spec["init_args"].items():
                net.init_args[key] = value
            if spec.get("dict_kwargs"):
                net.dict_kwargs = {**(net.get("dict_kwargs") or {}), **spec["dict_kwargs"]}

    def before_instantiate_classes(self) -> None:
        config = self._active_config()
        for flag, value, least in (
            ("--threads", config.threads, 1),
            ("--trainer.accumulate_grad_batches", config.trainer.get("accumulate_grad_batches"), 1),
        ):
            if value is not None and value < least:
                raise UserError(f"{flag} must be at least {least}, got {value}")
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        if config.trainer.fast_dev_run:
            # a smoke run saves nothing; ModelCheckpoint's save_last would still write ./checkpoints,
            # and a logger may create its store (MLflow's mlruns/) before Lightning swaps it out
            config.checkpoint.save_last = False
            config.trainer.logger = False
        listed = [named_class(entry) for entry in _as_list(config.trainer.get("callbacks"))]
        if config.trainer.enable_progress_bar is False or any(_is(cls, AnyProgressBar) for cls in listed):
            config.progress_bar = None  # no bar, or the one in --trainer.callbacks (a RichProgressBar)

    def instantiate_trainer(self, **kwargs):
        config = self._active_config()
        self._choose_precision(config)
        kwargs.setdefault("precision", config.trainer.precision)
        trainer = super().instantiate_trainer(**kwargs)
        callbacks = trainer.callbacks
        test_follows = self.config.get("subcommand") == "fit" and config.get("test_after_fit")
        for callback in callbacks:  # the command line they record, unless the config gave one
            if isinstance(callback, LastCheckpoint) and callback.resume_command is None:
                callback.resume_command = self.command
            if isinstance(callback, RunSummary):
                callback.command, callback.test_follows = callback.command or self.command, test_follows
        loggers.share_run_folder(trainer)
        if trainer.logger is not None and starts_processes_per_stage(trainer):
            # ddp_spawn: the fit and the test after it run in processes started afresh, and each
            # would ask the logger for a new version: fixed here, both write into one run folder
            _ = trainer.logger.version
        if not trainer.loggers:  # --trainer.logger=false: nothing to write learning rates to
            callbacks[:] = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
        return trainer

    def _instantiate_trainer(self, config: dict, callbacks: list) -> Trainer:
        # a group set to null (--divergence=null) is a callback left out
        return super()._instantiate_trainer(config, [c for c in callbacks if c is not None])

    def _choose_precision(self, config) -> None:
        """--auto_precision: the precision and layout left unset, timed on the net and device at
        hand (cached), or for evaluation the cached choice if any; config.yaml records the result."""
        model = self.model
        layout = config.model.get("channels_last")
        if not config.auto_precision or not isinstance(model, MNISTClassifier):
            config.model.channels_last = model.channels_last if isinstance(model, MNISTClassifier) else layout
            return
        if config.trainer.precision is not None and layout is not None:
            return
        device = _device(config.trainer.accelerator)
        fitting = self.config.get("subcommand") in ("fit", None)
        if device is None or model.hparams.compile:  # not timed: mps, other accelerators, compiled nets
            config.trainer.precision = config.trainer.precision or fastest_precision(
                config.trainer.accelerator
            )
            config.model.channels_last = model.channels_last
            return
        batch = getattr(getattr(self.datamodule, "hparams", None), "batch_size", None) or 64
        spec = model.data
        choice = precision.choose(
            model.net,
            (batch, spec.channels, spec.height, spec.width),
            spec.num_classes,
            device,
            None if config.trainer.precision is None else [config.trainer.precision],
            None if layout is None else [layout],
            measure=fitting,
        )
        if choice is None:  # evaluating, nothing measured yet: fp32, exact
            choice = precision.Choice(config.trainer.precision or "32-true", layout is not False, {})
        elif choice.timings:
            print(choice.describe(), file=sys.stderr)
        config.trainer.precision = choice.precision
        config.model.channels_last = choice.channels_last
        model.set_channels_last(choice.channels_last)
        model.hparams.channels_last = choice.channels_last

    def _check_checkpoint_fits(self) -> None:
        """A checkpoint of another model would fail deep inside Lightning: say what differs."""
        if self.checkpoint is not None and (
            problems := shape_mismatch(self.checkpoint["state_dict"], self.model)
        ):
            path = self._active_config().ckpt_path
            raise UserError(f"--ckpt_path {path} holds a different model: {'; '.join(problems)}")

    before_fit = before_validate = before_test = before_predict = _check_checkpoint_fits

    def after_fit(self) -> None:
        if self.config.fit.test_after_fit:
            # fast_dev_run saves no checkpoint: then test the weights in memory
            callback = self.trainer.checkpoint_callback
            # the file, not "best": Lightning warns about "best" with more than one checkpoint callback
            best = callback.best_model_path if callback else ""
            self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None)

    def after_predict(self) -> None:
        if getattr(self.datamodule, "predict_rejected", None):  # named on stderr by PredictionWriter
            sys.exit(2)

    def _as_flag(self, err: ParameterError) -> str:
        """The error with the flag that set the parameter, as the user typed it."""
        config = getattr(self, "config", None)
        prefix = config_key(_active_dict(config), err.owner) if config is not None else None
        groups = {"model": self.model_class, "data": self.datamodule_class, **CALLBACK_GROUPS}
        prefix = prefix or next((k for k, cls in groups.items() if issubclass(err.owner, cls)), None)
        if prefix is None:
            return f"{err.owner.__name__}: {err}"
        return f"--{prefix}.{err.parameter} {err.problem}"


def _stock_net(net, weights: bool) -> StockNet | None:
    """A --model.net that is not written for the template (torchvision.models.resnet18,
    timm.create_model), as the StockNet that builds it; None for the template's own kind."""
    if not isinstance(net, Namespace) or not isinstance(net.get("class_path"), str):
        return None
    stock = StockNet.from_spec(net.as_dict(), weights)
    return None if takes_spec(stock.target) else stock


def _apply_deprecated(config) -> None:
    """Flags (and config.yaml keys) of earlier versions, set on the groups that took their place,
    with a line saying so; the run's config.yaml then has them in the new place only."""
    for name, (_, group, argument) in DEPRECATED.items():
        value = config.get(name)
        if value is None:
            continue
        config[name] = None
        instead = f"--{group}.{argument}" if argument else f"--{group}=null"
        print(f"--{name} is deprecated and will be removed: use {instead}", file=sys.stderr)
        if argument is None:
            if value is False:
                config[group] = None
        elif config.get(group) is not None:
            config[group].init_args[argument] = value


def _as_list(value) -> list:
    return value if isinstance(value, list) else [] if value is None else [value]


def _is(cls: type | None, kind: type) -> bool:
    return isinstance(cls, type) and issubclass(cls, kind)


def _active_dict(config) -> dict:
    plain = config.as_dict()
    return plain.get(plain["subcommand"], plain) if plain.get("subcommand") else plain


def _device(accelerator: str) -> torch.device | None:
    """The device a single-device run of this accelerator trains on, when precision can be timed there."""
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    if accelerator == "cpu" or (accelerator == "auto" and not torch.backends.mps.is_available()):
        return torch.device("cpu")
    return None


def fastest_precision(accelerator: str) -> str:
    """The precision the chosen device should compute fastest without emulation, from its flags
    alone: the guess where the precision is not timed (compiled nets, other accelerators)."""
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    if accelerator in ("auto", "cpu") and _cpu_has_native_bf16():
        return "bf16-mixed"
    return "32-true"


def _cpu_has_native_bf16() -> bool:
    """torch has no public query for the CPU's bf16 instructions; these private checks may vanish,
    and then the answer is no (fp32)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def _lightning_keyword(ckpt_path: str) -> bool:
    return ckpt_path in CKPT_KEYWORDS or ckpt_path.lower().startswith("registry:")


def _lightning_refusal(err: BaseException) -> str | None:
    """What Lightning said when it refused the run's settings, in one line: its
    MisconfigurationException, or a ValueError, TypeError or ImportError raised in Lightning's own
    code (`val_check_interval` longer than an epoch, the model registry without `litmodels`)."""
    if not isinstance(err, MisconfigurationException | ValueError | TypeError | ImportError):
        return None
    frames = traceback.extract_tb(err.__traceback__)
    if not isinstance(err, MisconfigurationException) and not (
        frames and f"{os.sep}lightning{os.sep}" in frames[-1].filename
    ):
        return None
    return " ".join(str(err).split()) or type(err).__name__


def _parameter_error(err: BaseException | None) -> ParameterError | None:
    """The ParameterError behind an error, following its causes."""
    while err is not None and not isinstance(err, ParameterError):
        err = err.__cause__ or err.__context__
    return err


def main(argv: list[str] | None = None) -> None:
    """`lit-mnist fit|validate|test|predict ...` (the command itself is lit_mnist.__main__)."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "--version") or argv[0] in TOOLS:
        from lit_mnist.__main__ import main as command

        command(argv)
        return

    def run() -> None:
        nonlocal argv
        _check_config_files(argv)
        from_shell = argv == sys.argv[1:]  # then LightningCLI reads sys.argv itself, without a warning
        argv = _through_kwargs(argv)
        if from_shell:
            sys.argv[1:] = argv
        # parse errors raise instead of printing the usage: the user gets one line
        parser_kwargs = {**RAISING, **{name: RAISING for name in SUBCOMMANDS}}
        MNISTCLI(args=None if from_shell else argv, parser_kwargs=parser_kwargs)

    with_one_line_errors(run)


# a parser that raises on bad input instead of printing its usage and exiting
RAISING = {"exit_on_error": False}


def with_one_line_errors(run: Callable[[], None]) -> None:
    """Run a command built on MNISTCLI: what a user can fix ends in one line on stderr and exit
    status 2; a stopped run in its own line and status."""
    try:
        run()
    except (UserError, DataError, Diverged) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except Stopped as err:  # SIGTERM or Ctrl+C: last.ckpt written
        if str(err):  # the first process of a DDP run speaks for all
            print(err, file=sys.stderr)
        sys.exit(err.exit_code)
    except ArgumentError as err:
        print(f"error: {_one_line(str(err))} (see lit-mnist <subcommand> --help)", file=sys.stderr)
        sys.exit(2)
    except Exception as err:
        if (unsupported := _unsupported_here(err)) is not None:
            print(f"error: {unsupported}", file=sys.stderr)
            sys.exit(2)
        if (refusal := _lightning_refusal(err)) is None:
            raise
        print(f"error: Lightning refused these settings: {refusal}", file=sys.stderr)
        sys.exit(2)


def _unsupported_here(err: BaseException) -> str | None:
    """oneDNN's refusal of a layer in the precision asked for (a bf16 LSTM on a CPU without
    AVX-512), in one line with what to do; None for any other error."""
    first = (str(err).splitlines() or [""])[0]
    if not isinstance(err, RuntimeError) or not first.startswith("could not create a primitive descriptor"):
        return None
    return (
        f"this CPU cannot run the net in the precision asked ({first.split('. ')[0]}): "
        "use --trainer.precision=32-true, or leave it unset and auto_precision picks one that runs here"
    )


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


# where a jsonargparse Union error says why the class named failed (--model.net's two kinds)
CLASS_PATH_ENTRY = "- Problem with given class_path"
KWARGS_HINT = "in a config file, what a function passes on through **kwargs goes under dict_kwargs"
# the lines of a jsonargparse Union error that say which types were tried, not why the class failed
UNION_NOISE = ("Does not validate", "Subtypes:", "Errors:", "Expected a <class 'NoneType'>", "Given value")


def _through_kwargs(argv: list[str]) -> list[str]:
    """`--model.net.NAME=VALUE` flags for a net function that takes **kwargs the parser cannot
    follow (timm.create_model's in_chans, drop_rate, ...), as the `dict_kwargs` it passes on."""
    prefix = "--model.net"
    named = [
        a.split("=", 1)[1] if "=" in a else b
        for a, b in zip(argv, [*argv[1:], ""], strict=True)
        if a.split("=")[0] == prefix
    ]
    if not named or not _passes_kwargs_on(named[-1]):
        return argv
    known = set(constructor_defaults(StockNet(named[-1]).target))
    out = []
    for arg in argv:
        flag, eq, value = arg.partition("=")
        name = flag.removeprefix(f"{prefix}.").removeprefix("init_args.")
        if flag.startswith(f"{prefix}.") and "." not in name and name not in known and name != "dict_kwargs":
            arg = f"{prefix}.dict_kwargs.{name}{eq}{value}"
        out.append(arg)
    return out


def _passes_kwargs_on(class_path: str) -> bool:
    """Whether a function named on the command line takes **kwargs that the parser cannot follow."""
    try:
        target = StockNet(class_path).target
    except ParameterError:
        return False
    return inspect.isfunction(target) and any(
        p.kind is p.VAR_KEYWORD for p in inspect.signature(target).parameters.values()
    )


def _one_line(message: str) -> str:
    """jsonargparse nests its reasons over several lines: the first says where, the last what. For
    a class-or-None argument (--data, --model.net) the last line is the value given, and the
    reason is under the class's own entry ("Option 'x' is not accepted")."""
    raw = message.splitlines()
    entry = next((i for i, line in enumerate(raw) if line.strip().startswith(CLASS_PATH_ENTRY)), None)
    if entry is not None:  # a union of class kinds (--model.net): the reason given for the class named
        depth = len(raw[entry]) - len(raw[entry].lstrip())
        reason = [raw[entry].strip(" -")]
        for line in raw[entry + 1 :]:
            if len(line) - len(line.lstrip()) <= depth:
                break
            reason.append(line.strip())
        where = "" if raw[0].startswith(UNION_NOISE) else f"{raw[0].strip()} "  # a list names no key
        text = where + " ".join(reason)
        named = re.search(r"class_path '([^']+)'", raw[entry])
        if "is not accepted" in text and named and _passes_kwargs_on(named.group(1)):
            text += f" ({KWARGS_HINT})"
        return text
    lines = [line.strip(" -") for line in raw if line.strip(" -")]
    if len(lines) > 2 and lines[-1].startswith("Given value"):
        lines = [lines[0], *(line for line in lines[1:] if not line.startswith(UNION_NOISE))]
        return " ".join(lines[:1] + lines[-2:]) if len(lines) > 1 else lines[0]
    return lines[0] if len(lines) < 2 else f"{lines[0]} {lines[-1]}"
