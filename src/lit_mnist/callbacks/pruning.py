"""An Optuna trial's intermediate values, and its early stop when the study's pruner says so."""

import json
from pathlib import Path

import lightning as L

from lit_mnist.errors import ParameterError
from lit_mnist.loggers import run_folder

PRUNED_FILE = "pruned.json"
PRUNERS = ("median", "hyperband", "none")


def make_pruner(name: str):
    """An Optuna pruner by name; the median pruner spares every trial's first epoch."""
    import optuna

    if name not in PRUNERS:
        raise ValueError(f"unknown pruner {name!r}; the pruners are {', '.join(PRUNERS)}")
    if name == "median":
        return optuna.pruners.MedianPruner(n_warmup_steps=1)
    return optuna.pruners.HyperbandPruner() if name == "hyperband" else optuna.pruners.NopPruner()


class OptunaPruning(L.Callback):
    """Reports `monitor` after each validation to trial `trial` of an Optuna study, and stops the
    run when the study's pruner prunes it, except at the run's last validation. The run then ends
    as any other (checkpoints, curves and metrics.json are kept, no test follows) and
    `pruned.json` in its folder says at which epoch: `lit-mnist sweep` records the trial as
    pruned from it. Pruning inside `fit` by raising, as
    Optuna's own Lightning callback does, would skip what Lightning runs after fit.

    Args:
        storage: the study's storage URL (sqlite:///..., postgresql+psycopg2://...).
        study: the study's name.
        trial: the trial's id in the storage (`trial._trial_id`), which `lit-mnist sweep` passes.
        monitor: the logged metric to report, e.g. val/acc_best.
        pruner: the study's pruner, by name (Optuna keeps no pruner in the storage): median,
            hyperband or none.
    """

    def __init__(
        self, storage: str, study: str, trial: int, monitor: str = "val/acc_best", pruner: str = "median"
    ) -> None:
        if trial < 0:
            raise ParameterError(self, "trial", f"must be 0 or more, got {trial}")
        if pruner not in PRUNERS:
            raise ParameterError(self, "pruner", f"must be one of {', '.join(PRUNERS)}, got {pruner!r}")
        self.storage, self.study, self.trial_id, self.monitor = storage, study, trial, monitor
        self.pruner = pruner
        self._trial = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and trainer.is_global_zero:
            import optuna

            study = optuna.load_study(
                study_name=self.study, storage=self.storage, pruner=make_pruner(self.pruner)
            )
            # the trial was created by the sweep process: this one reports to it by its id
            self._trial = optuna.trial.Trial(study, self.trial_id)
        self._folder = run_folder(trainer)  # every process asks

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or self._trial is None or value is None:
            return
        epoch = trainer.current_epoch
        self._trial.report(float(value), step=epoch)
        if not _last_validation(trainer) and self._trial.should_prune():
            trainer.should_stop = True
            if self._folder is not None:
                self._folder.mkdir(parents=True, exist_ok=True)
                record = {"epoch": epoch, self.monitor: float(value)}
                (self._folder / PRUNED_FILE).write_text(json.dumps(record))


def _last_validation(trainer: L.Trainer) -> bool:
    """Whether the run's budget ends with this validation: a trial that ran it all is complete,
    whatever the pruner says (stopping it would save nothing, and would lose its result)."""
    by_epochs = trainer.max_epochs is not None and 0 < trainer.max_epochs <= trainer.current_epoch + 1
    by_steps = 0 < trainer.max_steps <= trainer.global_step
    return by_epochs or by_steps


def pruned_at(run_dir: Path) -> dict | None:
    """What OptunaPruning wrote when it stopped the run in `run_dir`; None when it did not."""
    path = Path(run_dir) / PRUNED_FILE
    return json.loads(path.read_text()) if path.is_file() else None
