"""What the template needs from a logger: where a run's folder is, where an experiment keeps its
runs, how a resumed run writes on into its old folder, and how figures and text reach it.

TensorBoard (the default), CSV, MLflow's local file store and Weights & Biases are known here;
configs/loggers/ holds one file for each, and many.yaml for several at once. With several, the
first one's folder is the run folder (checkpoints, config.yaml, metrics.json), and the others of
the folder kinds (TensorBoard, CSV) with the same save_dir and name write into that same folder.
Any other Lightning logger trains and records metrics.json in <save_dir>/<name>/<version>;
`--ckpt_path last` needs an entry in `experiment_dir`.
"""

import csv
import os
import warnings
from pathlib import Path

import lightning as L
from lightning.pytorch import loggers

from lit_mnist.errors import named_class

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


def entries(config) -> list:
    """The logger configs in `trainer.logger` as parsed: one, a list of them, or none (False/None)."""
    if isinstance(config, list | tuple):
        return [entry for entry in config if hasattr(entry, "get")]
    return [config] if hasattr(config, "get") else []


def logger_class(config) -> type | None:
    """The class a logger config names (the first one of a list); None for no logger."""
    return named_class(next(iter(entries(config)), None))


def _is(cls: type | None, kind: type) -> bool:
    return isinstance(cls, type) and issubclass(cls, kind)


def allow_mlflow_file_store(config=None) -> None:
    """MLflow 3 refuses its local file store unless told to: an MLflow logger writing to a folder
    (the default, and configs/loggers/mlflow.yaml) is what the user asked for, so allow it. Without
    a logger config: allow it (for reading a run folder back)."""
    if config is None or any(
        _is(logger_class(entry), loggers.MLFlowLogger) and _mlflow_folder(entry) for entry in entries(config)
    ):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")


def _mlflow_folder(config) -> Path | None:
    uri = config.init_args.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return Path(config.init_args.get("save_dir") or "./mlruns")
    return Path(uri.removeprefix(MLFLOW_FILE_PREFIX)) if uri.startswith(MLFLOW_FILE_PREFIX) else None


def experiment_dir(config) -> Path | None:
    """The folder that holds one folder per run of the experiment a logger config names, or None
    when the logger keeps its runs elsewhere (or none yet exist, for MLflow). For several loggers:
    the first one's."""
    config = next(iter(entries(config)), None)
    cls, init = logger_class(config), config.get("init_args") if config is not None else None
    if _is(cls, loggers.TensorBoardLogger) or _is(cls, loggers.CSVLogger):
        return Path(init.save_dir) / init.name
    if _is(cls, loggers.WandbLogger):
        return Path(_wandb_save_dir(init)) / _wandb_project(init)
    if _is(cls, loggers.MLFlowLogger) and (folder := _mlflow_folder(config)) is not None:
        from mlflow import MlflowClient

        allow_mlflow_file_store(config)
        found = MlflowClient(f"{MLFLOW_FILE_PREFIX}{folder}").get_experiment_by_name(init.experiment_name)
        return None if found is None else folder / found.experiment_id
    return None


def _wandb_save_dir(init) -> str:
    return init.get("save_dir") or init.get("dir") or "."


def _wandb_project(init) -> str:
    return init.get("project") or os.environ.get("WANDB_PROJECT") or "lightning_logs"


def resume_into(config, run_dir: Path, purge_step: int | None) -> None:
    """Point a logger config at an existing run folder, so a resumed run (or the test of one of its
    checkpoints) writes on there. A killed run logged past its last checkpoint: TensorBoard and
    CSVLogger drop what it logged from `purge_step` on and the resumed run logs it again. MLflow
    keeps both (its history shows the repeated steps twice); W&B continues the run of that id (in
    offline mode a new offline folder of the same id, which `wandb sync` joins to the first).
    Several loggers: the first one's run folder is run_dir, and the others of the folder kinds
    that share its save_dir and name write into it again; the rest start afresh."""
    first, *others = entries(config)
    _resume_one(first, run_dir, purge_step)
    for entry in others:
        if _folder_kind(entry) and _same_place(entry, first):
            _resume_one(entry, run_dir, purge_step)


def _folder_kind(config) -> bool:
    cls = logger_class(config)
    return _is(cls, loggers.TensorBoardLogger) or _is(cls, loggers.CSVLogger)


def _same_place(config, first) -> bool:
    mine, theirs = config.get("init_args") or {}, first.get("init_args") or {}
    return _folder_kind(first) and all(mine.get(k) == theirs.get(k) for k in ("save_dir", "name"))


def _resume_one(config, run_dir: Path, purge_step: int | None) -> None:
    cls, init = logger_class(config), config.get("init_args")
    if _is(cls, loggers.TensorBoardLogger) or _is(cls, loggers.CSVLogger):
        init.save_dir, init.name, init.version = str(run_dir.parent.parent), run_dir.parent.name, run_dir.name
        if purge_step is not None and _is(cls, CSVLogger):
            init.purge_step = purge_step
        elif purge_step is not None and _is(cls, loggers.TensorBoardLogger):
            config.dict_kwargs = {**(config.get("dict_kwargs") or {}), "purge_step": purge_step}
    elif _is(cls, loggers.MLFlowLogger):
        init.run_id = run_dir.name
    elif _is(cls, loggers.WandbLogger):
        init.save_dir, init.project = str(run_dir.parent.parent), run_dir.parent.name
        init.id, init.version = run_dir.name, None


def share_run_folder(trainer: L.Trainer) -> None:
    """Several loggers: those of the folder kinds (TensorBoard, CSV) with the first one's save_dir
    and name take its version, so one run writes one folder (each would count its own next
    version_<n> otherwise, and the second would find the first one's folder taken)."""
    first, *others = trainer.loggers or [None]
    if not others or not isinstance(first, loggers.TensorBoardLogger | loggers.CSVLogger):
        return
    for logger in others:
        folder_kind = isinstance(logger, loggers.TensorBoardLogger | loggers.CSVLogger)
        same = folder_kind and (logger.save_dir, logger.name) == (first.save_dir, first.name)
        if same and logger._version is None:  # the version is read lazily from _version by both
            logger._version = first.version


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
    """A matplotlib figure to the loggers at the current step: TensorBoard's image tab, MLflow's
    artifacts, W&B's media; when no logger takes images (CSV), a PNG in the run's figures/ folder.
    Rank 0 only."""
    step, taken = trainer.global_step, False
    for logger in trainer.loggers:
        if isinstance(logger, loggers.TensorBoardLogger):
            logger.experiment.add_figure(tag, figure, step, close=False)
        elif isinstance(logger, loggers.MLFlowLogger):
            logger.experiment.log_figure(logger.run_id, figure, f"{tag}/step{step:06d}.png")
        elif isinstance(logger, loggers.WandbLogger):
            logger.log_image(tag, [figure], step=step)
        else:
            continue
        taken = True
    if not taken and (folder := _folder_of(trainer.logger)) is not None:  # rank 0 only: no collective
        (Path(folder) / "figures").mkdir(parents=True, exist_ok=True)
        figure.savefig(Path(folder) / "figures" / f"{tag.replace('/', '_')}_step{step:06d}.png")


def log_settings(trainer: L.Trainer, params: dict, metrics: dict[str, float]) -> None:
    """A run's settings (nested dicts) to its logger: with the final metrics for TensorBoard's
    HPARAMS tab. MLflow refuses to change a setting a run has logged, and a resumed run may change
    some (max_epochs, to train longer): it gets only those the run does not have yet."""
    for logger in trainer.loggers:
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
    """A paragraph to the loggers that take text (TensorBoard's text tab, an MLflow artifact, a W&B
    table)."""
    for logger in trainer.loggers:
        if isinstance(logger, loggers.TensorBoardLogger):
            logger.experiment.add_text(tag, text, trainer.global_step)
        elif isinstance(logger, loggers.MLFlowLogger):
            logger.experiment.log_text(logger.run_id, text, f"{tag}.txt")
        elif isinstance(logger, loggers.WandbLogger):
            logger.log_text(tag, columns=[tag], data=[[text]])
