"""A run killed with SIGKILL (mid-epoch, or while writing a checkpoint) and resumed with
`--ckpt_path last` ends exactly like the same run left alone."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import RANDOM_RUN, SMALL
from lit_mnist.tools.events import read_scalars

# 250 training images in batches of 16: 16 steps per epoch, 3 epochs. Dropout and augmentation
# draw random numbers every step, so the resumed run must also continue the random streams.
RUN = [
    *RANDOM_RUN,
    "--data.batch_size=16",
    "--trainer.max_epochs=3",
    "--trainer.log_every_n_steps=1",
    "--save_every_n_steps=5",
    "--trainer.precision=32-true",
    *SMALL,
]  # fmt: skip
TESTS = str(Path(__file__).parent)


def fit(cwd: Path, data: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "lit_mnist", *RUN, f"--data.data_dir={data}", *extra],
        cwd=cwd, env=env, capture_output=True, text=True,
    )  # fmt: skip


def outcome(cwd: Path) -> tuple[dict, dict, dict]:
    run = cwd / "logs" / "default" / "version_0"
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    metrics = json.loads((run / "metrics.json").read_text())
    return last["state_dict"], metrics, read_scalars(run)


@pytest.fixture(scope="module")
def uninterrupted(fake_mnist, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("uninterrupted")
    result = fit(cwd, fake_mnist)
    assert result.returncode == 0, result.stderr[-3000:]
    return outcome(cwd)


def assert_same_run(resumed, uninterrupted):
    weights, metrics, scalars = resumed
    expected_weights, expected_metrics, expected_scalars = uninterrupted
    assert weights.keys() == expected_weights.keys()
    for key, value in expected_weights.items():
        assert torch.equal(weights[key], value), key
    for key in ("epochs", "steps", "val/acc_best", "test/acc", "test/loss"):
        assert metrics[key] == expected_metrics[key], key
    # the curves: same tags, every step once, same values
    assert scalars.keys() == expected_scalars.keys()
    for tag, points in expected_scalars.items():
        assert [s for s, _ in scalars[tag]] == [s for s, _ in points], tag
        assert [v for _, v in scalars[tag]] == pytest.approx([v for _, v in points], rel=1e-6), tag


@pytest.mark.parametrize(
    "killer, saved_step",
    [
        ("KillAtStep", 12),  # mid-epoch 0 (16 steps), 2 steps after the checkpoint of step 10
        ("KillAtStep", 23),  # mid-epoch 1, after the checkpoint of step 20
        ("KillWhileSaving", 25),  # while writing step 25's checkpoint: step 20's must survive
    ],
)
def test_killed_run_resumes_exactly(killer, saved_step, fake_mnist, tmp_path, uninterrupted):
    kill_step = {"KillAtStep": saved_step, "KillWhileSaving": saved_step}[killer]
    killed = fit(
        tmp_path, fake_mnist, f"--trainer.callbacks+=killer.{killer}", f"--trainer.callbacks.step={kill_step}"
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    run = tmp_path / "logs" / "default" / "version_0"
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    expected_step = (saved_step // 5) * 5 if killer == "KillAtStep" else saved_step - 5
    assert last["global_step"] == expected_step
    assert not (run / "metrics.json").exists()

    resumed = fit(tmp_path, fake_mnist, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "logs" / "default").iterdir()) == ["version_0"]
    assert_same_run(outcome(tmp_path), uninterrupted)
