"""What a sweep writes beside its study: the trials table, its mean ± std over seeds, the best
config, Optuna's plots and the trials' validation curves."""

import statistics
import warnings
from datetime import datetime, timedelta

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from lit_mnist.tools.sweep import report
from lit_mnist.tools.sweep.report import curve_labels, seed_summary, write_report
from lit_mnist.tools.sweep.space import Space

LR, OPTIMIZER = "model.optimizer.init_args.lr", "model.optimizer"
SPACE = Space(
    {
        LR: {"float": [1e-4, 1e-2], "log": True},
        OPTIMIZER: {"choice": ["torch.optim.Adam", "torch.optim.SGD"]},
    },
    flags=("--trainer.max_epochs=3",),
)
DISTRIBUTIONS = {
    LR: FloatDistribution(1e-4, 1e-2, log=True),
    OPTIMIZER: CategoricalDistribution(["torch.optim.Adam", "torch.optim.SGD"]),
}
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def quiet_optuna():
    optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    """The trials' run folders (relative paths) are looked for in tmp_path, not in the project."""
    monkeypatch.chdir(tmp_path)


def add(study, state, lr, optimizer, value=None, curve=(), seconds=75, test=None):
    number = len(study.trials)
    attrs = {"epochs": len(curve), "run_dir": f"logs/sweep/version_{number}"}
    trial = create_trial(
        state=state,
        value=value,
        params={LR: lr, OPTIMIZER: optimizer},
        distributions=DISTRIBUTIONS,
        intermediate_values=dict(enumerate(curve)),
        user_attrs=attrs if test is None else {**attrs, "test": test},
    )
    # create_trial stamps both ends with now: give each trial a duration of its own
    trial.datetime_start = datetime(2025, 1, 1, 12, 0, 0)
    trial.datetime_complete = trial.datetime_start + timedelta(seconds=seconds)
    study.add_trial(trial)


@pytest.fixture
def study():
    study = optuna.create_study(study_name="lr-search", direction="maximize")
    add(study, TrialState.COMPLETE, 1e-3, "torch.optim.Adam", 0.95, curve=(0.90, 0.95))
    add(study, TrialState.COMPLETE, 5e-3, "torch.optim.SGD", 0.975, curve=(0.93, 0.97, 0.975), seconds=125)
    add(study, TrialState.PRUNED, 2e-4, "torch.optim.SGD", curve=(0.80,))
    add(study, TrialState.FAIL, 3e-3, "torch.optim.Adam")
    add(study, TrialState.COMPLETE, 2e-3, "torch.optim.SGD", 0.96, curve=(0.91, 0.96))
    return study


def test_the_report_writes_table_best_config_and_plots(study, tmp_path):
    written = write_report(study, tmp_path / "report", SPACE)
    names = ["trials.md", "best.yaml", "history.png", "importances.png", "intermediate.png"]
    assert written == [tmp_path / "report" / name for name in names]
    for path in written[2:]:
        assert path.read_bytes()[:8] == PNG and path.stat().st_size > 1000


def test_the_table_has_a_summary_and_one_row_per_trial(study, tmp_path):
    write_report(study, tmp_path, SPACE)
    summary, blank, header, rule, *rows = (tmp_path / "trials.md").read_text().splitlines()
    assert summary == (
        "Study lr-search: maximize val/acc_best; 5 trials (3 COMPLETE, 1 PRUNED, 1 FAIL); "
        "best: trial 1 (val/acc_best = 0.975)."
    )
    assert blank == "" and rule == "| --- " * 8 + "|"
    assert header == f"| trial | state | {LR} | {OPTIMIZER} | val/acc_best | epochs | time | run folder |"
    assert rows == [
        "| 0 | COMPLETE | 0.001 | torch.optim.Adam | 0.95 | 2 | 1:15 | logs/sweep/version_0 |",
        "| 1 | COMPLETE | 0.005 | torch.optim.SGD | 0.975 | 3 | 2:05 | logs/sweep/version_1 |",
        # a pruned trial shows the last value it reported
        "| 2 | PRUNED | 0.0002 | torch.optim.SGD | 0.8 | 1 | 1:15 | logs/sweep/version_2 |",
        "| 3 | FAIL | 0.003 | torch.optim.Adam |  | 0 | 1:15 | logs/sweep/version_3 |",
        "| 4 | COMPLETE | 0.002 | torch.optim.SGD | 0.96 | 2 | 1:15 | logs/sweep/version_4 |",
    ]


def test_best_yaml_holds_the_best_trials_params_as_a_fit_config(study, tmp_path):
    write_report(study, tmp_path, SPACE)
    text = (tmp_path / "best.yaml").read_text()
    assert text.startswith("# Best trial of study lr-search: trial 1, val/acc_best = 0.975.\n")
    assert "--trainer.max_epochs=3" in text.splitlines()[1]
    assert yaml.safe_load(text) == {
        "model": {"optimizer": {"class_path": "torch.optim.SGD", "init_args": {"lr": 5e-3}}}
    }


def test_a_study_with_nothing_complete_gets_only_its_table(tmp_path):
    study = optuna.create_study(study_name="early")
    add(study, TrialState.FAIL, 1e-3, "torch.optim.Adam")
    study.ask()  # a trial still running
    assert write_report(study, tmp_path, SPACE) == [tmp_path / "trials.md"]
    summary, *_, failed, running = (tmp_path / "trials.md").read_text().splitlines()
    assert summary == "Study early: minimize val/acc_best; 2 trials (1 RUNNING, 1 FAIL); no trial complete."
    assert running == "| 1 | RUNNING |  |  |  |  |  |  |"
    assert failed.startswith("| 0 | FAIL |")


@pytest.mark.parametrize(
    ("lrs", "values"),
    [((1e-3, 1e-3), (0.5, 0.6)), ((1e-3, 2e-3, 3e-3), (0.5, 0.5, 0.5))],
    ids=["no param varies", "every value alike"],
)
def test_importances_are_drawn_only_when_they_can_tell_something(tmp_path, lrs, values):
    study = optuna.create_study()
    for lr, value in zip(lrs, values, strict=True):
        add(study, TrialState.COMPLETE, lr, "torch.optim.Adam", value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no warning of Optuna's shows
        names = [path.name for path in write_report(study, tmp_path, SPACE)]
    assert names == ["trials.md", "best.yaml", "history.png"]


def test_drawing_leaves_no_figure_open_and_the_style_as_it_was(study, tmp_path):
    import matplotlib
    import matplotlib.pyplot as plt

    write_run(tmp_path / "logs" / "sweep" / "version_0", (0.9, 0.95))
    style = dict(matplotlib.rcParams)
    assert write_report(study, tmp_path, SPACE)[-1].name == "curves.png"
    assert plt.get_fignums() == []
    assert dict(matplotlib.rcParams) == style


def test_a_list_choice_is_a_list_again_in_best_yaml(tmp_path):
    space = Space({"model.net.init_args.channels": {"choice": [[16, 32], [32, 64]]}})
    study = optuna.create_study(direction="maximize")
    study.optimize(lambda trial: sum(space.suggest(trial)["model.net.init_args.channels"]), n_trials=4)
    write_report(study, tmp_path, space)
    best = yaml.safe_load((tmp_path / "best.yaml").read_text())
    assert best == {"model": {"net": {"init_args": {"channels": [32, 64]}}}}
    assert "| [32, 64] |" in (tmp_path / "trials.md").read_text()


def test_the_table_gets_a_column_per_test_metric_once_a_trial_was_tested(study, tmp_path):
    write_report(study, tmp_path / "untested", SPACE)
    assert "test/" not in (tmp_path / "untested" / "trials.md").read_text()
    add(
        study, TrialState.COMPLETE, 1e-3, "torch.optim.SGD", 0.98, test={"test/loss": 0.03, "test/acc": 0.991}
    )
    add(study, TrialState.COMPLETE, 4e-3, "torch.optim.SGD", 0.97, test={"test/acc": 0.98049})
    write_report(study, tmp_path, SPACE)
    _, _, header, rule, *rows = (tmp_path / "trials.md").read_text().splitlines()
    tests = "val/acc_best | test/acc | test/loss | epochs"
    assert header == f"| trial | state | {LR} | {OPTIMIZER} | {tests} | time | run folder |"
    assert rule == "| --- " * 10 + "|"
    assert [row.split(" | ")[4:7] for row in rows] == [
        ["0.95", "", ""],
        ["0.975", "", ""],
        ["0.8", "", ""],
        ["", "", ""],
        ["0.96", "", ""],
        ["0.98", "0.991", "0.03"],
        ["0.97", "0.9805", ""],  # a trial tested on less than the others
    ]


SEED = "seed_everything"


def add_seeded(study, state, params, value=None, test=None):
    """A trial of a space that draws seed_everything (and maybe the optimizer)."""
    distributions = {OPTIMIZER: DISTRIBUTIONS[OPTIMIZER], SEED: IntDistribution(0, 9)}
    trial = create_trial(
        state=state,
        value=value,
        params=params,
        distributions={key: distributions[key] for key in params},
        intermediate_values={0: 0.5} if state == TrialState.PRUNED else None,
        user_attrs={} if test is None else {"test": test},
    )
    study.add_trial(trial)


def spread(values, percent):
    mean, std = statistics.mean(values), statistics.stdev(values)
    return f"{100 * mean:.2f}% ± {100 * std:.2f}" if percent else f"{mean:.4g} ± {std:.4g}"


def test_seeds_alone_give_one_row_of_mean_and_std(tmp_path):
    space = Space({SEED: {"int": [0, 9]}})
    study = optuna.create_study(study_name="seeds", direction="maximize")
    values, accs, losses = (0.99, 0.992, 0.994), (0.991, 0.993, 0.995), (0.03, 0.04, 0.05)
    for seed, value, acc, loss in zip(range(3), values, accs, losses, strict=True):
        add_seeded(study, TrialState.COMPLETE, {SEED: seed}, value, {"test/acc": acc, "test/loss": loss})
    add_seeded(study, TrialState.PRUNED, {SEED: 3})  # left out, as is a failed one
    add_seeded(study, TrialState.FAIL, {SEED: 4})
    section = seed_summary(study, space)
    title, blank, header, rule, *rows = section.splitlines()
    assert (title, blank) == ("## Mean ± std over seeds", "")
    assert header == "| seeds | val/acc_best | test/acc | test/loss |" and rule == "| --- " * 4 + "|"
    expected = [spread(values, True), spread(accs, True), spread(losses, False)]
    assert rows == ["| 3 | " + " | ".join(expected) + " |"]
    assert rows == ["| 3 | 99.20% ± 0.20 | 99.30% ± 0.20 | 0.04 ± 0.01 |"]
    write_report(study, tmp_path, space)
    table, after = (tmp_path / "trials.md").read_text().split("\n\n## ")
    assert table.splitlines()[-1].startswith("| 4 | FAIL |") and "## " + after == section


def test_seeds_are_summed_up_per_optimizer_in_the_order_they_first_ran():
    space = Space({OPTIMIZER: {"choice": ["torch.optim.Adam", "torch.optim.SGD"]}, SEED: {"int": [0, 9]}})
    study = optuna.create_study(direction="maximize")
    runs = [  # optimizer, seed, val/acc_best, test/acc
        ("torch.optim.SGD", 0, 0.97, 0.971),
        ("torch.optim.Adam", 0, 0.985, 0.987),
        ("torch.optim.Adam", 1, 0.988, 0.989),
        ("torch.optim.Adam", 2, 0.983, 0.986),
    ]
    for optimizer, seed, value, acc in runs:
        add_seeded(study, TrialState.COMPLETE, {OPTIMIZER: optimizer, SEED: seed}, value, {"test/acc": acc})
    add_seeded(study, TrialState.PRUNED, {OPTIMIZER: "torch.optim.SGD", SEED: 1})
    _, _, header, _, sgd, adam = seed_summary(study, space).splitlines()
    assert header == f"| {OPTIMIZER} | seeds | val/acc_best | test/acc |"
    assert sgd == "| torch.optim.SGD | 1 | 97.00% ± n/a | 97.10% ± n/a |"
    adam_values, adam_accs = [run[2] for run in runs[1:]], [run[3] for run in runs[1:]]
    assert adam == f"| torch.optim.Adam | 3 | {spread(adam_values, True)} | {spread(adam_accs, True)} |"
    assert adam == "| torch.optim.Adam | 3 | 98.53% ± 0.25 | 98.73% ± 0.15 |"


def test_there_is_no_seed_summary_without_a_seed_param_or_a_complete_trial(study, tmp_path):
    assert seed_summary(study, SPACE) is None
    write_report(study, tmp_path, SPACE)
    assert "## Mean ± std over seeds" not in (tmp_path / "trials.md").read_text()
    seeds = optuna.create_study()
    add_seeded(seeds, TrialState.PRUNED, {SEED: 0})
    assert seed_summary(seeds, Space({SEED: {"int": [0, 9]}})) is None


def write_run(folder, curve):
    """A CSVLogger metrics.csv: a training row and a validation row per epoch."""
    folder.mkdir(parents=True)
    lines = ["epoch,step,train/loss,val/acc"]
    for epoch, acc in enumerate(curve):
        lines += [f"{epoch},{100 * epoch + 49},0.5,", f"{epoch},{100 * epoch + 99},,{acc}"]
    (folder / "metrics.csv").write_text("\n".join(lines) + "\n")


def test_curves_are_drawn_from_the_run_folders_that_exist(study, tmp_path, monkeypatch):
    for number, curve in [(0, (0.90, 0.95)), (1, (0.93, 0.97, 0.975)), (2, (0.80,)), (3, (0.5,))]:
        write_run(tmp_path / "logs" / "sweep" / f"version_{number}", curve)
    # trial 3 failed and trial 4's folder is gone: neither is drawn
    written = write_report(study, tmp_path / "report", SPACE)
    assert [path.name for path in written[-2:]] == ["intermediate.png", "curves.png"]
    assert written[-1].read_bytes()[:8] == PNG and written[-1].stat().st_size > 1000
    drawn = {}
    monkeypatch.setattr(report, "plot_curves", lambda curves, path: drawn.update(curves))
    write_report(study, tmp_path / "again", SPACE)
    assert drawn == {
        "trial 0: lr=0.001, optimizer=torch.optim.Adam": [0.90, 0.95],
        "trial 1: lr=0.005, optimizer=torch.optim.SGD": [0.93, 0.97, 0.975],
        "trial 2: lr=0.0002, optimizer=torch.optim.SGD": [0.80],
    }


def test_no_curves_without_run_folders_or_validation_accuracy(study, tmp_path):
    folder = tmp_path / "logs" / "sweep" / "version_0"
    folder.mkdir(parents=True)
    (folder / "metrics.csv").write_text("epoch,step,train/loss\n0,49,0.5\n")
    names = [path.name for path in write_report(study, tmp_path / "report", SPACE)]
    assert "curves.png" not in names and not (tmp_path / "report" / "curves.png").exists()


def frozen(number, params):
    kinds = {float: FloatDistribution(0, 1), int: IntDistribution(0, 9)}
    distributions = {key: kinds.get(type(v)) or CategoricalDistribution([v]) for key, v in params.items()}
    trial = create_trial(state=TrialState.COMPLETE, value=0.9, params=params, distributions=distributions)
    trial.number = number
    return trial


@pytest.mark.parametrize(
    ("params", "labels"),
    [
        (
            [{LR: 0.00123456, "trainer.max_epochs": 3}, {LR: 0.5, "trainer.max_epochs": 3}],
            ["trial 0: lr=0.001235", "trial 1: lr=0.5"],
        ),
        (
            [{SEED: 0, LR: 0.1}, {SEED: 1, LR: 0.2}],
            ["trial 0: seed_everything=0, lr=0.1", "trial 1: seed_everything=1, lr=0.2"],
        ),
        ([{SEED: 0}, {SEED: 0}], ["trial 0", "trial 1"]),
        (
            [{OPTIMIZER: "adam", SEED: 0}, {OPTIMIZER: "sgd", SEED: 0}],
            ["trial 0: optimizer=adam", "trial 1: optimizer=sgd"],
        ),
        (
            [
                {"model.net.init_args.dropout": 0.1, "data.dropout": 0.2},
                {"model.net.init_args.dropout": 0.3, "data.dropout": 0.2},
            ],
            ["trial 0: dropout=0.1", "trial 1: dropout=0.3"],
        ),
        (
            [
                {"model.net.init_args.dropout": 0.1, "data.dropout": 0.2},
                {"model.net.init_args.dropout": 0.3, "data.dropout": 0.4},
            ],
            [
                "trial 0: model.net.init_args.dropout=0.1, data.dropout=0.2",
                "trial 1: model.net.init_args.dropout=0.3, data.dropout=0.4",
            ],
        ),
        (
            [
                {"model.optimizer.init_args.weight_decay": 1e-4, LR: 0.001234, OPTIMIZER: "adam", SEED: 0},
                {"model.optimizer.init_args.weight_decay": 5e-4, LR: 0.005678, OPTIMIZER: "sgd", SEED: 1},
            ],
            ["trial 0", "trial 1"],
        ),
    ],
    ids=[
        "a float",
        "several varied",
        "none varied",
        "a choice",
        "one of two alike names",
        "two alike names",
        "too long: the trial alone",
    ],
)
def test_a_curve_is_labelled_by_its_trial_and_the_params_that_differ(params, labels):
    assert curve_labels([frozen(number, p) for number, p in enumerate(params)]) == labels
