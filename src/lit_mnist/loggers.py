"""What the template needs from a logger: where a run's folder is, where an experiment keeps its
runs, how a resumed run writes on into its old folder, and how figures and text reach it.

TensorBoard (the default), CSV and MLflow's local file store are known here; configs/loggers/ holds
one file for each. Any other Lightning logger trains and records metrics.json in
<save_dir>/<name>/<version>; `--ckpt_path last` needs an entry in `experiment_dir`.
"""

import csv
import importlib
import os
import warnings
from pathlib import Path

import lightning as L
from lightning.pytorch import loggers

MLFLOW_FILE_PREFIX = "file:"


class CSVLogger(loggers.CSVLogger):
    """Lightning's CSVLogger that can continue a run. Given the `version` of a run that exists, it
    keeps that run's metrics.csv rows logged before `purge_step` (a killed run logged past its last
    checkpoint: the resumed run logs those steps again) where Lightning's own starts a new file.

    Args:
        save_dir, name, version, prefix, flush_logs_every_n_steps: as Lightning's CSVLogger.
        purge_step: the step the resumed run starts from; None keeps every earlier row.
    """

    def __init__(
        self,
        save_dir: str = "logs",
        name: str = "default",
        version: int | str | None = None,
        prefix: str = "",
        flush_logs_every_n_steps: int = 100,
        purge_step: int | None = None,
    ) -> None:
        super().__init__(save_dir, name, version, prefix, flush_logs_every_n_steps)
        earlier = Path(self.log_dir) / "metrics.csv"
        self._earlier = _rows_before(earlier, purge_step) if version is not None else []

    @property
    def experiment(self):
        with warnings.catch_warnings():  # Lightning's writer deletes metrics.csv, and warns so
            if self._earlier:  # ... but the rows are put back below
                warnings.filterwarnings("ignore", message="Experiment logs directory")
            writer = super().experiment
        if self._earlier and isinstance(getattr(writer, "metrics", None), list):
            writer.metrics[:0], self._earlier = self._earlier, []
            writer.save()  # the earlier rows are back in the file before anything else happens
        return writer


def _rows_before(path: Path, purge_step: int | None) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="") as file:
        rows = [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(file)]
    for row in rows:
        row["step"] = int(row.get("step", 0))
    return [row for row in rows if purge_step is None or row["step"] < purge_step]


def logger_class(config) -> type | None:
    """The class a logger config (`trainer.logger` as parsed) names; None for no logger or a list."""
    class_path = config.get("class_path") if hasattr(config, "get") else None
    if not isinstance(class_path, str) or "." not in class_path:
        return None
    module, name = class_path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name, None)


def _is(cls: type | None, kind: type) -> bool:
    return isinstance(cls, type) and issubclass(cls, kind)


def allow_mlflow_file_store(config=None) -> None:
    """MLflow 3 refuses its local file store unless told to: an MLflow logger writing to a folder
    (the default, and configs/loggers/mlflow.yaml) is what the user asked for, so allow it. Without
    a logger config: allow it (for reading a run folder back)."""
    if config is None or (_is(logger_class(config), loggers.MLFlowLogger) and _mlflow_folder(config)):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")


def _mlflow_folder(config) -> Path | None:
    uri = config.init_args.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return Path(config.init_args.get("save_dir") or "./mlruns")
    return Path(uri.removeprefix(MLFLOW_FILE_PREFIX)) if uri.startswith(MLFLOW_FILE_PREFIX) else None


def experiment_dir(config) -> Path | None:
    """The folder that holds one folder per run of the experiment a logger config names, or None
    when the logger keeps its runs elsewhere (or none yet exist, for MLflow)."""
    cls, init = logger_class(config), config.get("init_args") if hasattr(config, "get") else None
    if _is(cls, loggers.TensorBoardLogger) or _is(cls, loggers.CSVLogger):
        return Path(init.save_dir) / init.name
    if _is(cls, loggers.MLFlowLogger) and (folder := _mlflow_folder(config)) is not None:
        from mlflow import MlflowClient

        allow_mlflow_file_store(config)
        found = MlflowClient(f"{MLFLOW_FILE_PREFIX}{folder}").get_experiment_by_name(init.experiment_name)
        return None if found is None else folder / found.experiment_id
    return None


def resume_into(config, run_dir: Path, purge_step: int | None) -> None:
    """Point a logger config at an existing run folder, so a resumed run (or the test of one of its
    checkpoints) writes on there. A killed run logged past its last checkpoint: TensorBoard and
    CSVLogger drop what it logged from `purge_step` on and the resumed run logs it again. MLflow
    keeps both (its history shows the repeated steps twice)."""
    cls, init = logger_class(config), config.get("init_args")
    if _is(cls, loggers.TensorBoardLogger) or _is(cls, loggers.CSVLogger):
        init.save_dir, init.name, init.version = str(run_dir.parent.parent), run_dir.parent.name, run_dir.name
        if purge_step is not None and _is(cls, CSVLogger):
            init.purge_step = purge_step
        elif purge_step is not None and _is(cls, loggers.TensorBoardLogger):
            config.dict_kwargs = {**(config.get("dict_kwargs") or {}), "purge_step": purge_step}
    elif _is(cls, loggers.MLFlowLogger):
        init.run_id = run_dir.name


def run_folder(trainer: L.Trainer) -> Path | None:
    """The run's folder, <save_dir>/<name>/<version>: where Lightning's ModelCheckpoint puts
    checkpoints/ for any logger, and where metrics.json goes. None without a logger. A collective
    under DDP: every process must ask."""
    folder = trainer.strategy.broadcast(_folder_of(trainer.logger))
    return None if folder is None else Path(folder)


def _folder_of(logger) -> str | None:
    if logger is None or logger.save_dir is None:
        return None
    version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
    return str(Path(logger.save_dir) / str(logger.name) / version)


def log_figure(trainer: L.Trainer, tag: str, figure) -> None:
    """A matplotlib figure to the logger at the current step: TensorBoard's image tab, MLflow's
    artifacts; for a logger that takes no images, a PNG in the run's figures/ folder. Rank 0 only."""
    logger, step = trainer.logger, trainer.global_step
    if isinstance(logger, loggers.TensorBoardLogger):
        logger.experiment.add_figure(tag, figure, step)
    elif isinstance(logger, loggers.MLFlowLogger):
        logger.experiment.log_figure(logger.run_id, figure, f"{tag}/step{step:06d}.png")
    elif (folder := _folder_of(logger)) is not None:  # rank 0 only: no collective here
        (Path(folder) / "figures").mkdir(parents=True, exist_ok=True)
        figure.savefig(Path(folder) / "figures" / f"{tag.replace('/', '_')}_step{step:06d}.png")


def log_settings(trainer: L.Trainer, params: dict, metrics: dict[str, float]) -> None:
    """A run's settings (nested dicts) to its logger: with the final metrics for TensorBoard's
    HPARAMS tab. MLflow refuses to change a setting a run has logged, and a resumed run may change
    some (max_epochs, to train longer): it gets only those the run does not have yet."""
    logger = trainer.logger
    if isinstance(logger, loggers.TensorBoardLogger):
        logger.log_hyperparams(params, metrics)
    elif isinstance(logger, loggers.MLFlowLogger):
        known = logger.experiment.get_run(logger.run_id).data.params
        logger.log_hyperparams({k: v for k, v in _flatten(params).items() if k not in known})
    else:  # the final metrics are in its curves already
        logger.log_hyperparams(params)


def _flatten(params: dict, prefix: str = "") -> dict:
    """{"model": {"lr": 1}} -> {"model/lr": 1}, the keys Lightning's loggers write."""
    flat = {}
    for key, value in params.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def log_text(trainer: L.Trainer, tag: str, text: str) -> None:
    """A paragraph to the logger, where it takes text (TensorBoard's text tab, an MLflow artifact)."""
    logger = trainer.logger
    if isinstance(logger, loggers.TensorBoardLogger):
        logger.experiment.add_text(tag, text, trainer.global_step)
    elif isinstance(logger, loggers.MLFlowLogger):
        logger.experiment.log_text(logger.run_id, text, f"{tag}.txt")
