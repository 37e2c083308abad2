"""lit-mnist lr-find: an LR range test that keeps the parameter groups' ratios, its suggestion, and
Lightning's own finders from the command line."""

import json
import math

import lightning as L
import pytest
import torch

from conftest import ROOT, SMALL, quiet_trainer
from lit_mnist.callbacks.lr_range import LRRangeTest
from lit_mnist.data import MNISTDataModule
from lit_mnist.model import MNISTClassifier
from lit_mnist.optim import GroupSettings

DEFAULT = ["--config", str(ROOT / "configs/default.yaml")]


class GroupRates(L.Callback):
    """Every group's learning rate at each optimizer step."""

    def __init__(self) -> None:
        self.rates: list[list[float]] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.rates.append([group["lr"] for group in optimizer.param_groups])


def test_the_rate_grows_exponentially_and_the_groups_keep_their_ratios(fake_mnist):
    data = MNISTDataModule(data_dir=str(fake_mnist), val_size=50, batch_size=16)
    model = MNISTClassifier(
        data.spec,
        optimizer=lambda groups, **kw: torch.optim.SGD(groups, lr=0.01, **kw),
        features=GroupSettings(lr_mult=0.1),
        scheduler=lambda optimizer: torch.optim.lr_scheduler.StepLR(optimizer, 1, gamma=0.0),
    )
    test, rates = LRRangeTest(1e-4, 1e-1, steps=10, divergence=1e9), GroupRates()
    quiet_trainer(max_steps=10, limit_val_batches=0, callbacks=[test, rates], accumulate_grad_batches=2).fit(
        model, datamodule=data
    )
    assert len(test.lrs) == 10 and not test.diverged
    expected = [1e-4 * 1000 ** (i / 9) for i in range(10)]
    assert test.lrs == pytest.approx(expected)
    names = [group["name"] for group in model.trainer.optimizers[0].param_groups]
    for step, group_rates in enumerate(rates.rates):  # the scheduler (gamma 0) is set aside
        for name, rate in zip(names, group_rates, strict=True):
            mult = 0.1 if name.startswith("features") else 1.0
            assert rate == pytest.approx(expected[step] * mult)
    # two batches a step: the step's loss is their mean, as training reports it
    assert all(math.isfinite(loss) and 0 < loss < 5 for loss in test.losses)


def test_the_suggestion_is_the_steepest_fall_before_the_lowest_point():
    test = LRRangeTest(1e-4, 1.0, steps=10)
    test.lrs = [1e-4 * 10 ** (4 * i / 9) for i in range(10)]
    test.smoothed = [2.3, 2.29, 2.2, 1.6, 0.9, 0.7, 0.6, 0.65, 1.5, 3.0]
    assert test.suggestion() == test.lrs[3]  # 2.2 -> 0.9 around it: the steepest
    test.smoothed = [2.3, 2.4, 2.5, 3.0, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0]
    assert test.suggestion() is None


def test_lr_find_writes_the_plot_and_suggests_a_flag(fork_server, fake_mnist, tmp_path):
    result = fork_server.run(
        [
            "lr-find", *DEFAULT, f"--data.data_dir={fake_mnist}", *SMALL, "--data.batch_size=16",
            "--model.features.lr_mult=0.1", "--min_lr=1e-5", "--max_lr=100", "--steps=60",
        ],
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    folder = tmp_path / "logs" / "lr_find" / "version_0"
    report = json.loads((folder / "lr_find.json").read_text())
    assert f"suggested: {report['flag']}" in result.stdout
    assert report["flag"] == f"--model.optimizer.lr={report['suggestion']:.3g}"
    assert 1e-5 < report["suggestion"] < report["diverged_at"] <= 100
    assert report["groups"] == {
        "features": pytest.approx(0.1),
        "features_no_decay": pytest.approx(0.1),
        "classifier": pytest.approx(1.0),
        "classifier_no_decay": pytest.approx(1.0),
    }
    assert len(report["lrs"]) == len(report["losses"]) == len(report["smoothed"]) < 60
    assert (folder / "lr_find.png").read_bytes().startswith(b"\x89PNG")
    # nothing else: no checkpoint, no config file, no run of the experiment
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert [p for p in written if not p.startswith(".forked")] == [
        "logs/lr_find/version_0/lr_find.json",
        "logs/lr_find/version_0/lr_find.png",
    ]


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["--max_lr=1e-5", "--steps=10"],
            "the loss did not diverge in 10 steps up to a learning rate of 1e-05",
        ),
        (["--min_lr=1", "--max_lr=0.1"], "0 < min_lr < max_lr"),
        (["--steps=3"], "--steps must be at least 10"),
        (["--data.batch_size=0"], "--data.batch_size"),
    ],
    ids=["no-divergence", "empty-range", "few-steps", "bad-fit-flag"],
)
def test_bad_input_is_one_line_exit_2_nothing_written(flags, message, fork_server, fake_mnist, tmp_path):
    result = fork_server.run(
        ["lr-find", *DEFAULT, f"--data.data_dir={fake_mnist}", *SMALL, *flags], cwd=tmp_path
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and message in lines[-1], result.stderr[-3000:]
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize("finder", ["LearningRateFinder", "BatchSizeFinder"])
def test_lightnings_finders_run_from_the_command_line(finder, fork_server, fake_mnist, tmp_path):
    steps = "num_training_steps" if finder == "LearningRateFinder" else "max_trials"
    result = fork_server.run(
        [
            "fit", *DEFAULT, f"--data.data_dir={fake_mnist}", *SMALL, "--data.batch_size=16",
            f"--trainer.callbacks+={finder}", f"--trainer.callbacks.{steps}=3", "--trainer.max_epochs=1",
        ],
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test/acc" in result.stdout
