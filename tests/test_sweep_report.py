"""What a sweep writes beside its study: the trials table, the best config and Optuna's plots."""

import warnings
from datetime import datetime, timedelta

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from lit_mnist.tools.sweep.report import write_report
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


def add(study, state, lr, optimizer, value=None, curve=(), seconds=75):
    number = len(study.trials)
    trial = create_trial(
        state=state,
        value=value,
        params={LR: lr, OPTIMIZER: optimizer},
        distributions=DISTRIBUTIONS,
        intermediate_values=dict(enumerate(curve)),
        user_attrs={"epochs": len(curve), "run_dir": f"logs/sweep/version_{number}"},
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

    style = dict(matplotlib.rcParams)
    write_report(study, tmp_path, SPACE)
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
