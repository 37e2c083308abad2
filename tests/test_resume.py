"""A run killed with SIGKILL (mid-epoch, or while writing a checkpoint) and resumed with
`--ckpt_path last` ends exactly like the same run left alone."""

import json
import os
import shlex
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
    "--last_checkpoint.every_n_steps=5",
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
    return run_outcome(cwd / "logs" / "default" / "version_0")


def run_outcome(run: Path) -> tuple[dict, dict, dict]:
    """The weights of last.ckpt, metrics.json and the TensorBoard curves of a run folder."""
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
    "killer, kill_step, saved_step",
    [
        ("KillAtStep", 12, 10),  # mid-epoch 0 (16 steps), 2 steps after the checkpoint of step 10
        ("KillAtStep", 23, 20),  # mid-epoch 1, after the checkpoint of step 20
        ("KillAtStep", 17, 16),  # just after the write at the end of epoch 0
        ("KillWhileSaving", 25, 20),  # while writing step 25's checkpoint: step 20's must survive
    ],
)
def test_killed_run_resumes_exactly(killer, kill_step, saved_step, fake_mnist, tmp_path, uninterrupted):
    killed = fit(
        tmp_path, fake_mnist, f"--trainer.callbacks+=killer.{killer}", f"--trainer.callbacks.step={kill_step}"
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    run = tmp_path / "logs" / "default" / "version_0"
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == saved_step
    assert not (run / "metrics.json").exists()

    resumed = fit(tmp_path, fake_mnist, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "logs" / "default").iterdir()) == ["version_0"]
    assert_same_run(outcome(tmp_path), uninterrupted)


@pytest.mark.parametrize("bound", ["--trainer.max_steps=48", "--trainer.max_steps=-1"])
def test_a_step_bounded_fit_trains_on_from_the_end_of_an_epoch(bound, fake_mnist, tmp_path, uninterrupted):
    """Training stopped by max_steps at an epoch's last batch (16 steps, one epoch), then given
    more steps, or bounded by its 3 epochs instead: Lightning would run that epoch's end again on
    a step-bounded resume; the run ends like one never stopped, with one train/loss per epoch."""
    first = fit(tmp_path, fake_mnist, "--trainer.max_steps=16")
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = fit(tmp_path, fake_mnist, bound, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    weights, metrics, scalars = outcome(tmp_path)
    assert all(value == value for _, value in scalars["train/loss"])  # no NaN
    assert_same_run((weights, metrics, scalars), uninterrupted)


@pytest.mark.parametrize("signum, step", [("SIGTERM", 12), ("SIGINT", 7)])
def test_signal_writes_last_and_resumes_exactly(signum, step, fake_mnist, tmp_path, uninterrupted):
    """A preempted run (SIGTERM) or Ctrl+C stops after the current step with last.ckpt written
    there, says so in one line with the command that resumes it, and exits with 128 + the signal."""
    stopped = fit(
        tmp_path, fake_mnist, "--trainer.callbacks+=killer.SignalAtStep",
        f"--trainer.callbacks.step={step}", f"--trainer.callbacks.signum={signum}",
    )  # fmt: skip
    assert stopped.returncode == 128 + getattr(signal, signum), stopped.stderr[-3000:]
    run = tmp_path / "logs" / "default" / "version_0"
    last = run / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == step  # not the step-10 write
    assert not (run / "metrics.json").exists()
    lines = [line for line in stopped.stderr.splitlines() if line.startswith("stopped by")]
    assert len(lines) == 1, stopped.stderr[-3000:]
    assert f"stopped by {signum} at epoch 0, step {step}: wrote {last.relative_to(tmp_path)}" in lines[0]
    command = lines[0].split("resume with: ", 1)[1]
    assert command.startswith("lit-mnist ") and command.endswith(f"--ckpt_path={last.relative_to(tmp_path)}")
    assert "weights_only" not in stopped.stderr + stopped.stdout  # no log line per checkpoint

    # the printed command, as given (its flags are the run's own, killer callback included)
    args = shlex.split(command)[1:]
    args = [a for a in args if "killer." not in a and not a.startswith("--trainer.callbacks.")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")])}
    resumed = subprocess.run(
        [sys.executable, "-m", "lit_mnist", *args], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "logs" / "default").iterdir()) == ["version_0"]
    assert_same_run(outcome(tmp_path), uninterrupted)


def test_a_signal_in_the_last_validation_skips_the_test_after_fit(fake_mnist, tmp_path):
    """SIGTERM during the last validation: the fit ends whole, last.ckpt is
    that of the last step, the test after the fit is not run, and the status is 143."""
    stopped = fit(
        tmp_path, fake_mnist, "--trainer.callbacks+=killer.SignalAtStep",
        "--trainer.callbacks.step=48", "--trainer.callbacks.in_validation=true",
    )  # fmt: skip
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    run = tmp_path / "logs" / "default" / "version_0"
    last = run / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == 48
    assert not (run / "metrics.json").exists()
    where = "stopped by SIGTERM after the last step (step 48), before any test"
    assert f"{where}: wrote {last.relative_to(tmp_path)}" in stopped.stderr
    assert "test/acc" not in stopped.stdout


def test_ctrl_c_twice_aborts_at_once(fake_mnist, tmp_path):
    stopped = fit(
        tmp_path, fake_mnist, "--trainer.callbacks+=killer.SignalAtStep",
        "--trainer.callbacks.step=7", "--trainer.callbacks.signum=SIGINT", "--trainer.callbacks.again=true",
    )  # fmt: skip
    assert stopped.returncode not in (0, 130), stopped.stderr[-3000:]
    assert "stopped by" not in stopped.stderr
    last = torch.load(tmp_path / "logs/default/version_0/checkpoints/last.ckpt", weights_only=False)
    assert last["global_step"] == 5  # the regular write before; nothing at step 7


def test_slurm_requeue_signal(fake_mnist, tmp_path):
    """On SLURM (Lightning's SLURMEnvironment, auto-requeue on), the requeue signal writes last.ckpt
    at the step, calls `scontrol requeue <job>`, and the requeued job (same command, no
    --ckpt_path) continues from there to the same end as a run never stopped."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol.calls"
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "scontrol").chmod(0o755)
    slurm = {
        "SLURM_NTASKS": "1", "SLURM_JOB_NAME": "train", "SLURM_JOB_ID": "4242", "SLURM_NODELIST": "node1",
        "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    }  # fmt: skip
    env = {**os.environ, **slurm, "PYTHONPATH": os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "lit_mnist", *RUN, f"--data.data_dir={fake_mnist}"]
    signalled = subprocess.run(
        [*command, "--trainer.callbacks+=killer.SignalAtStep", "--trainer.callbacks.step=12",
         "--trainer.callbacks.signum=SIGUSR1"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert signalled.returncode == 128 + signal.SIGUSR1, signalled.stderr[-3000:]
    assert calls.read_text().split() == ["requeue", "4242"]
    assert "SLURM job 4242 requeued" in signalled.stderr
    run = tmp_path / "logs" / "default" / "version_0"
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 12

    requeued = subprocess.run(
        command, cwd=tmp_path, env={**env, "SLURM_RESTART_COUNT": "1"}, capture_output=True, text=True
    )
    assert requeued.returncode == 0, requeued.stderr[-3000:]
    assert "SLURM restart 1: resuming" in requeued.stderr
    assert sorted(p.name for p in (tmp_path / "logs" / "default").iterdir()) == ["version_0"]
    assert json.loads((run / "metrics.json").read_text())["steps"] == 3 * 16
