"""Two processes on the CPU (DDP over gloo), run as a subprocess like a user runs it."""

import json
import os
import shlex
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, SMALL, run_cli
from lit_mnist.data import MNISTDataModule
from lit_mnist.model import MNISTClassifier
from lit_mnist.tools.events import read_scalars

RUN = [
    "fit",
    "--config", str(ROOT / "configs/default.yaml"),
    "--model.net.init_args.channels=[8, 16]",
    "--model.net.init_args.hidden=32",
    "--model.optimizer.lr=0.005",
    "--trainer.max_epochs=4",
    "--trainer.accelerator=cpu",
    "--threads=1",
    "--trainer.precision=32-true",
    *SMALL,
]  # fmt: skip


@pytest.fixture(scope="module")
def runs(fake_mnist, tmp_path_factory):
    single, ddp = tmp_path_factory.mktemp("single"), tmp_path_factory.mktemp("ddp")
    # the same effective batch of 32: 32 in one process, 16 in each of two
    run_cli(*RUN, f"--data.data_dir={fake_mnist}", "--data.batch_size=32", "--trainer.devices=1", cwd=single)
    result = run_cli(
        *RUN,
        f"--data.data_dir={fake_mnist}",
        "--data.batch_size=16",
        "--trainer.strategy=ddp",
        "--trainer.devices=2",
        cwd=ddp,
    )
    return single / "logs" / "default", ddp / "logs" / "default", result


def test_ddp_writes_one_run_folder_and_one_set_of_checkpoints(runs):
    _, ddp, result = runs
    assert [p.name for p in ddp.iterdir()] == ["version_0"]
    checkpoints = sorted(p.name for p in (ddp / "version_0" / "checkpoints").iterdir())
    assert len(checkpoints) == 2 and checkpoints[-1] == "last.ckpt", checkpoints
    metrics = json.loads((ddp / "version_0" / "metrics.json").read_text())
    assert metrics["hardware"]["devices"] == 2
    assert result.stdout.count("Run folder: ") == 1


def test_ddp_splits_each_epoch_between_the_processes(runs):
    single, ddp, _ = runs
    steps = {name: json.loads((run / "version_0" / "metrics.json").read_text())["steps"] for name, run in
             (("single", single), ("ddp", ddp))}  # fmt: skip
    # 250 training images: 8 batches of 32 in one process; 125 images each in two, 8 batches of 16
    assert steps == {"single": 32, "ddp": 32}


def test_ddp_metrics_are_synchronised_over_the_whole_split(runs, fake_mnist):
    """The logged validation accuracy is that of the whole validation split (both shards,
    nothing padded or repeated): recomputed here in one process from the saved weights."""
    _, ddp, _ = runs
    run = ddp / "version_0"
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    model = MNISTClassifier.load_from_checkpoint(run / "checkpoints" / "last.ckpt", map_location="cpu")
    model.eval()
    data = MNISTDataModule(str(fake_mnist), val_size=50)
    data.setup("fit")
    with torch.no_grad():
        logits = model(data.spec.normalize(data.images[data.val_idx]))
    accuracy = (logits.argmax(1) == data.labels[data.val_idx]).float().mean().item()
    logged = read_scalars(run)["val/acc"]
    assert len(logged) == last["epoch"] + 1 == 4
    assert logged[-1][1] == pytest.approx(accuracy, abs=1e-6)


def test_ddp_accuracy_matches_one_process(runs):
    single, ddp, _ = runs
    accuracy = [json.loads((r / "version_0" / "metrics.json").read_text())["test/acc"] for r in (single, ddp)]
    assert accuracy[0] > 0.8 and abs(accuracy[0] - accuracy[1]) <= 0.1, accuracy


def test_a_signal_to_one_process_stops_both_at_the_same_step(fake_mnist, tmp_path):
    """SIGTERM to the first process only: both stop after the same step, last.ckpt is written
    there once, one line says so, and the printed command resumes the DDP run to its end."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]),
    }
    ddp = [
        *RUN,
        f"--data.data_dir={fake_mnist}",
        "--data.batch_size=16",
        "--trainer.strategy=ddp",
        "--trainer.devices=2",
    ]
    signal_rank_0 = [
        "--trainer.callbacks+=killer.SignalAtStep",
        "--trainer.callbacks.step=12",
        "--trainer.callbacks.rank=0",
    ]
    stopped = subprocess.run(
        [sys.executable, "-m", "lit_mnist", *ddp, *signal_rank_0],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    lines = [line for line in stopped.stderr.splitlines() if line.startswith("stopped by")]
    assert len(lines) == 1 and "stopped by SIGTERM at epoch 1, step 12: wrote" in lines[0], stopped.stderr[
        -3000:
    ]
    run = tmp_path / "logs" / "default" / "version_0"
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 12

    args = [a for a in shlex.split(lines[0].split("resume with: ", 1)[1])[1:] if "callbacks" not in a]
    resumed = subprocess.run(
        [sys.executable, "-m", "lit_mnist", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((run / "metrics.json").read_text())["steps"] == 32
