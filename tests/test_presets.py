"""configs/debug/ and configs/callbacks/: each preset run as a user runs it, on the synthetic digits,
and seen to do its one thing."""

import json
from pathlib import Path

import yaml

from conftest import ROOT, SMALL
from lit_mnist.tools.events import read_scalars

DEBUG_DIR = ROOT / "configs" / "debug"
DEBUG = sorted(DEBUG_DIR.glob("*.yaml"))
EARLY_STOPPING = ROOT / "configs" / "callbacks" / "early_stopping.yaml"


def fit(fork_server, cwd: Path, fake_mnist: Path, *flags: str):
    result = fork_server.run(
        [
            "fit",
            "--config",
            str(ROOT / "configs/default.yaml"),
            f"--data.data_dir={fake_mnist}",
            *SMALL,
            *flags,
        ],
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def run_folder(cwd: Path) -> Path:
    (run,) = (cwd / "logs").glob("*/version_0")
    return run


def test_every_debug_preset_is_tested_here():
    assert {p.stem for p in DEBUG} == {"fast_dev_run", "overfit", "profiler", "anomaly", "limits"}


def test_fast_dev_run_writes_nothing(fork_server, fake_mnist, tmp_path):
    result = fit(fork_server, tmp_path, fake_mnist, "--config", str(ROOT / "configs/debug/fast_dev_run.yaml"))
    assert "test/acc" in result.stdout
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".forked")] == []


def test_overfit_trains_on_the_same_few_batches(fork_server, fake_mnist, tmp_path):
    fit(
        fork_server, tmp_path, fake_mnist, "--config", str(ROOT / "configs/debug/overfit.yaml"),
        "--trainer.max_epochs=6", "--data.batch_size=8",
    )  # fmt: skip
    run = run_folder(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    assert run.parent.name == "debug"
    assert (metrics["epochs"], metrics["steps"]) == (6, 24)  # 4 batches an epoch
    losses = [value for _, value in read_scalars(run)["train/loss"]]
    assert len(losses) == 6 and losses[-1] < 0.5 * losses[0]  # the same 32 images, learnt


def test_profiler_writes_its_table_into_the_run_folder(fork_server, fake_mnist, tmp_path):
    fit(fork_server, tmp_path, fake_mnist, "--config", str(ROOT / "configs/debug/profiler.yaml"))
    profile = (run_folder(tmp_path) / "fit-profile.txt").read_text()
    assert "run_training_batch" in profile and "Total" in profile


def test_anomaly_detection_names_the_operation_behind_a_nan(fork_server, fake_mnist, tmp_path):
    """A net whose backward makes a NaN: the run stops, and the error names the operation."""
    result = fork_server.run(
        [
            "fit", "--config", str(ROOT / "configs/default.yaml"), f"--data.data_dir={fake_mnist}", *SMALL,
            "--config", str(DEBUG_DIR / "anomaly.yaml"), "--config", str(DEBUG_DIR / "limits.yaml"),
            "--model.net=user_nets.NaNBackward", "--divergence=null",
        ],
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode != 0
    assert "SqrtBackward0" in result.stderr and "returned nan values" in result.stderr


def test_limits_cut_every_stage(fork_server, fake_mnist, tmp_path):
    fit(
        fork_server,
        tmp_path,
        fake_mnist,
        "--config",
        str(ROOT / "configs/debug/limits.yaml"),
        "--data.batch_size=8",
    )
    run = run_folder(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["epochs"], metrics["steps"]) == (2, 40)  # 20 of the 32 batches of 8, twice
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["trainer"]["limit_val_batches"] == 5 and config["trainer"]["limit_test_batches"] == 5


def test_early_stopping_stops_a_run_that_does_not_improve(fork_server, fake_mnist, tmp_path):
    """At a learning rate of 0 val/loss never improves: 1 epoch plus 3 of patience."""
    flags = ["--config", str(EARLY_STOPPING), "--model.optimizer.lr=0", "--trainer.max_epochs=20"]
    fit(fork_server, tmp_path, fake_mnist, *flags)
    run = run_folder(tmp_path)
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 4
    callbacks = yaml.safe_load((run / "config.yaml").read_text())["trainer"]["callbacks"]
    assert [c["class_path"] for c in callbacks] == ["lightning.pytorch.callbacks.EarlyStopping"]


def test_early_stopping_adds_to_the_callbacks_of_earlier_configs(fork_server, tmp_path):
    best = ROOT / "configs/experiments/best.yaml"
    args = ["fit", "--config", str(ROOT / "configs/default.yaml"), "--config", str(best)]
    result = fork_server.run([*args, "--config", str(EARLY_STOPPING), "--print_config"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    callbacks = yaml.safe_load(result.stdout)["trainer"]["callbacks"]
    assert [c["class_path"] for c in callbacks] == [
        "lit_mnist.callbacks.EMA",
        "lightning.pytorch.callbacks.EarlyStopping",
    ]
