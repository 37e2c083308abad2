"""What a sweep leaves beside its study: a table of the trials, the best trial's parameters as a
config overlay, and Optuna's plots of the search."""

import warnings
from datetime import timedelta
from pathlib import Path

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from lit_mnist.tools.sweep.space import Space, best_config

# how Optuna says the importances it drew tell nothing (too few trials, or all alike)
MEANINGLESS = "importances will be equal"


def write_report(study: optuna.Study, folder: Path, space: Space) -> list[Path]:
    """trials.md, best.yaml (once a trial completed) and the plots Optuna can draw so far, in
    `folder`; returns the files written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    complete = [trial for trial in trials if trial.state == TrialState.COMPLETE]
    best = study.best_trial if complete else None
    written = [_write(folder / "trials.md", trials_table(study, trials, space, best))]
    if best is not None:
        written.append(_write(folder / "best.yaml", best_yaml(study, best, space)))
    written += write_plots(study, folder, space, trials)
    return written


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def trials_table(
    study: optuna.Study, trials: list[FrozenTrial], space: Space, best: FrozenTrial | None
) -> str:
    """A summary line, then one Markdown row per trial."""
    counts = ", ".join(
        f"{n} {state.name}" for state in TrialState if (n := sum(t.state == state for t in trials))
    )
    best_text = (
        f"best: trial {best.number} ({space.metric} = {best.value:.6g})" if best else "no trial complete"
    )
    direction = study.direction.name.lower()
    counted = f" ({counts})" if counts else ""
    summary = (
        f"Study {study.study_name}: {direction} {space.metric}; {len(trials)} trials{counted}; {best_text}."
    )
    keys = [param.key for param in space.params]
    header = ["trial", "state", *keys, space.metric, "epochs", "time", "run folder"]
    rows = [_row(trial, keys) for trial in trials]
    lines = ["| " + " | ".join(cells) + " |" for cells in [header, ["---"] * len(header), *rows]]
    return "\n".join([summary, "", *lines]) + "\n"


def _row(trial: FrozenTrial, keys: list[str]) -> list[str]:
    params = [_cell(trial.params[key]) if key in trial.params else "" for key in keys]
    epochs = trial.user_attrs.get("epochs")
    return [
        str(trial.number),
        trial.state.name,
        *params,
        _cell(metric_value(trial)),
        "" if epochs is None else str(epochs),
        _minutes(trial.duration),
        _cell(trial.user_attrs.get("run_dir", "")),
    ]


def metric_value(trial: FrozenTrial) -> float | None:
    """A finished trial's value; for a pruned one, the last value it reported before it was stopped."""
    if trial.value is not None:
        return trial.value
    if trial.state == TrialState.PRUNED and trial.intermediate_values:
        return trial.intermediate_values[max(trial.intermediate_values)]
    return None


def _cell(value) -> str:
    if value is None:
        return ""
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|")  # a | would split the Markdown cell


def _minutes(duration: timedelta | None) -> str:
    if duration is None:
        return ""
    minutes, seconds = divmod(round(duration.total_seconds()), 60)
    return f"{minutes}:{seconds:02d}"


def best_yaml(study: optuna.Study, best: FrozenTrial, space: Space) -> str:
    """The best trial's params as a config overlay, headed by where they come from."""
    header = [
        f"# Best trial of study {study.study_name}: trial {best.number}, {space.metric} = {best.value!r}.",
        "# Every trial also ran with the space's flags: " + (" ".join(space.flags) or "(none)"),
        "# lit-mnist fit --config <the sweep's config> --config best.yaml",
    ]
    return "\n".join(header) + "\n" + yaml.safe_dump(best_config(space.values(best.params)), sort_keys=False)


def write_plots(study: optuna.Study, folder: Path, space: Space, trials: list[FrozenTrial]) -> list[Path]:
    """history.png, importances.png and intermediate.png, each when there is something to draw."""
    from optuna.visualization import matplotlib as plots

    complete = [trial for trial in trials if trial.state == TrialState.COMPLETE]
    target = {"target_name": space.metric}
    # PED-ANOVA needs no scikit-learn, which Optuna's default importance evaluator (fANOVA) does
    importance = {**target, "evaluator": optuna.importance.PedAnovaImportanceEvaluator()}
    wanted = {
        "history.png": (plots.plot_optimization_history, target, bool(complete)),
        "importances.png": (plots.plot_param_importances, importance, _varied(complete)),
        "intermediate.png": (plots.plot_intermediate_values, {}, any(t.intermediate_values for t in trials)),
    }
    written = []
    for name, (plot, kwargs, drawable) in wanted.items():
        if drawable and _save_plot(plot, study, kwargs, folder / name):
            written.append(folder / name)
    return written


def _varied(complete: list[FrozenTrial]) -> bool:
    """Importances need two complete trials and a param that differs between them."""
    keys = {key for trial in complete for key in trial.params}
    return len(complete) >= 2 and any(len({t.params.get(key) for t in complete}) > 1 for key in keys)


def _save_plot(plot, study: optuna.Study, kwargs: dict, path: Path) -> bool:
    """Draws with pyplot, as Optuna does, and closes what it opened at once, so a notebook's backend
    is left as it was and shows nothing extra; Optuna's style sheet is undone after, as Optuna sets
    it for the whole process. False when Optuna cannot draw this study."""
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    try:
        # Optuna's notes (experimental API, few trials) would be repeated at every report: not shown
        with plt.rc_context(), warnings.catch_warnings(record=True) as notes:
            warnings.simplefilter("always")
            ax = plot(study, **kwargs)
            if any(MEANINGLESS in str(note.message) for note in notes):
                return False
            ax.figure.savefig(path, dpi=100, bbox_inches="tight")
        return True
    except (ValueError, RuntimeError):  # e.g. no variance in the values to explain
        return False
    finally:
        for number in set(plt.get_fignums()) - before:
            plt.close(number)
