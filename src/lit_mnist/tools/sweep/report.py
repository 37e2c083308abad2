"""What a sweep leaves beside its study: a table of the trials (with their mean and spread over
seeds when the space draws seeds), the best trial's parameters as a config overlay, Optuna's plots of
the search and the trials' validation curves."""

import statistics
import warnings
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from lit_mnist.tools.events import read_scalars
from lit_mnist.tools.sweep.space import Space, best_config

# how Optuna says the importances it drew tell nothing (too few trials, or all alike)
MEANINGLESS = "importances will be equal"
SEED = "seed_everything"
# the validation accuracy the curves are measured against (a dashed line, the zoomed panel's top 1%)
TARGET = 0.985
# a legend label longer than this names the trial alone
MAX_LABEL = 60


def write_report(study: optuna.Study, folder: Path, space: Space) -> list[Path]:
    """trials.md, best.yaml (once a trial completed) and the plots Optuna can draw so far, in
    `folder`; returns the files written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    complete = [trial for trial in trials if trial.state == TrialState.COMPLETE]
    best = study.best_trial if complete else None
    text = trials_table(study, trials, space, best)
    seeds = _seed_section(trials, space)
    written = [_write(folder / "trials.md", text if seeds is None else f"{text}\n{seeds}")]
    if best is not None:
        written.append(_write(folder / "best.yaml", best_yaml(study, best, space)))
    written += write_plots(study, folder, space, trials)
    if write_curves(trials, folder / "curves.png"):
        written.append(folder / "curves.png")
    return written


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def trials_table(
    study: optuna.Study, trials: list[FrozenTrial], space: Space, best: FrozenTrial | None
) -> str:
    """A summary line, then one Markdown row per trial, with a column per test metric when trials
    were tested."""
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
    tests = tested_keys(trials)
    header = ["trial", "state", *keys, space.metric, *tests, "epochs", "time", "run folder"]
    rows = [_row(trial, keys, tests) for trial in trials]
    return "\n".join([summary, "", *_markdown(header, rows)]) + "\n"


def _markdown(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(cells) + " |" for cells in [header, ["---"] * len(header), *rows]]


def _row(trial: FrozenTrial, keys: list[str], tests: list[str]) -> list[str]:
    params = [_cell(trial.params[key]) if key in trial.params else "" for key in keys]
    epochs = trial.user_attrs.get("epochs")
    return [
        str(trial.number),
        trial.state.name,
        *params,
        _cell(metric_value(trial)),
        *(_cell(_tested(trial).get(key)) for key in tests),
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


def tested_keys(trials: Sequence[FrozenTrial]) -> list[str]:
    """The test metrics any of the trials has (`user_attrs["test"]`), sorted."""
    return sorted({key for trial in trials for key in _tested(trial)})


def _tested(trial: FrozenTrial) -> dict:
    test = trial.user_attrs.get("test")
    return test if isinstance(test, dict) else {}


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


def seed_summary(study: optuna.Study, space: Space) -> str | None:
    """The section `## Mean ± std over seeds` of trials.md; None when the space draws no
    seed_everything or no trial is complete."""
    return _seed_section(study.get_trials(deepcopy=False), space)


def _seed_section(trials: Sequence[FrozenTrial], space: Space) -> str | None:
    """One row per setting of the params other than the seed, in the order the settings first
    appear: how many complete trials it has, and the metric's and each test metric's mean ± std
    over them."""
    keys = [param.key for param in space.params]
    complete = [trial for trial in trials if trial.state == TrialState.COMPLETE]
    if SEED not in keys or not complete:
        return None
    others = [key for key in keys if key != SEED]
    groups: dict[tuple, list[FrozenTrial]] = {}
    for trial in complete:
        groups.setdefault(tuple(trial.params.get(key) for key in others), []).append(trial)
    tests = tested_keys(complete)
    header = [*others, "seeds", space.metric, *tests]
    rows = []
    for setting, group in groups.items():
        spreads = [_spread(space.metric, [trial.value for trial in group])]
        for key in tests:
            spreads.append(_spread(key, [_tested(t)[key] for t in group if key in _tested(t)]))
        rows.append([*(_cell(label) for label in setting), str(len(group)), *spreads])
    return "\n".join(["## Mean ± std over seeds", "", *_markdown(header, rows)]) + "\n"


def _spread(key: str, values: list[float]) -> str:
    """`mean ± std` (the sample's), in percent for an accuracy; std is n/a for one value."""
    values = [value for value in values if value is not None]
    if not values:
        return ""
    mean = statistics.mean(values)
    std = statistics.stdev(values) if len(values) > 1 else None
    if key.rsplit("/", 1)[-1].startswith("acc"):  # test/acc, val/acc_best
        return f"{100 * mean:.2f}% ± " + ("n/a" if std is None else f"{100 * std:.2f}")
    return f"{mean:.4g} ± " + ("n/a" if std is None else f"{std:.4g}")


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


def write_curves(trials: Sequence[FrozenTrial], path: Path) -> bool:
    """The validation accuracy per epoch of every finished or pruned trial whose run folder can be
    read, overlaid in `path`; False (nothing written) when no trial has such a curve."""
    plotted, curves = [], []
    for trial in trials:
        if (curve := _val_curve(trial)) is not None:
            plotted.append(trial)
            curves.append(curve)
    if not curves:
        return False
    plot_curves(dict(zip(curve_labels(plotted), curves, strict=True)), path)
    return True


def _val_curve(trial: FrozenTrial) -> list[float] | None:
    run_dir = trial.user_attrs.get("run_dir")
    if trial.state not in (TrialState.COMPLETE, TrialState.PRUNED) or not run_dir:
        return None
    try:
        points = read_scalars(run_dir).get("val/acc")
    except FileNotFoundError:  # a trial of another machine's worker, or a folder deleted since
        return None
    return [value for _, value in points] if points else None


def curve_labels(trials: Sequence[FrozenTrial]) -> list[str]:
    """`trial <n>: key=value, ...` per trial, naming the params whose values differ between the
    trials by their last part (`lr` for model.optimizer.init_args.lr) when that is unambiguous;
    `trial <n>` alone for all when a label would be longer than MAX_LABEL characters."""
    keys = list(dict.fromkeys(key for trial in trials for key in trial.params))
    varied = [key for key in keys if len({_label_value(t.params.get(key)) for t in trials}) > 1]
    short = {key: _short_key(key) for key in varied}
    names = {key: name if list(short.values()).count(name) == 1 else key for key, name in short.items()}
    labels = []
    for trial in trials:
        values = [f"{names[key]}={_label_value(trial.params[key])}" for key in varied if key in trial.params]
        labels.append(f"trial {trial.number}" + (": " + ", ".join(values) if values else ""))
    if max(map(len, labels), default=0) > MAX_LABEL:  # a search over many keys: trials.md has them
        return [f"trial {trial.number}" for trial in trials]
    return labels


def _short_key(key: str) -> str:
    parts = [part for part in key.split(".") if part != "init_args"]
    return parts[-1] if parts else key


def _label_value(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def plot_curves(
    curves: Mapping[str, Sequence[float]],
    path: Path,
    target: float = TARGET,
    title: str = "Validation accuracy",
) -> None:
    """Accuracy curves (fractions, one value per epoch from epoch 1) by label, in percent: the
    whole range beside a zoom on the top 1% below `target`, which a dashed line marks; the legend
    lies below both panels, so it hides no curve however many there are."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    with plt.rc_context():
        fig, (full, zoom) = plt.subplots(1, 2, figsize=(12, 5))
        try:
            for label, curve in curves.items():
                epochs = range(1, len(curve) + 1)
                for ax in (full, zoom):
                    ax.plot(epochs, [100 * value for value in curve], marker="o", label=label)
            full.set_title(title)
            zoom.set_title(f"{title} above {100 * target - 1:.1f}%")
            zoom.set_ylim(100 * target - 1, 100)
            zoom.axhline(100 * target, color="gray", linestyle="--", linewidth=1)
            longest = max(map(len, curves.values()), default=1)
            for ax in (full, zoom):
                ax.set_xlim(0.5, longest + 0.5)
                ax.set_xlabel("epoch")
                ax.set_ylabel("accuracy (%)")
                ax.grid(alpha=0.3)
                ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
            fig.tight_layout()
            handles, labels = full.get_legend_handles_labels()
            fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0), ncol=4, fontsize=8)
            fig.savefig(path, dpi=100, bbox_inches="tight")
        finally:
            plt.close(fig)
