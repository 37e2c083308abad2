"""Lightning's own Trainer flags, as Lightning users type them, work with the template's loaders,
callbacks and command line: each is a real short run. Where Lightning refuses a combination, the
user gets one line and exit status 2."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, SMALL
from lit_mnist.tools.events import read_scalars

# 250 training images in batches of 32: 8 batches an epoch; 50 validation images in one batch
RUN = [
    "fit", "--config", str(ROOT / "configs/default.yaml"),
    "--model.net.init_args.channels=[4, 8]", "--model.net.init_args.hidden=16",
    "--data.batch_size=32", "--trainer.max_epochs=2", "--trainer.precision=32-true", *SMALL,
]  # fmt: skip


def fit(server, data: Path, cwd: Path, *flags: str, status: int = 0) -> subprocess.CompletedProcess:
    result = server.run([*RUN, f"--data.data_dir={data}", *flags], cwd=cwd)
    assert result.returncode == status, result.stderr[-3000:]
    return result


def run_folder(cwd: Path) -> Path:
    return cwd / "logs" / "default" / "version_0"


def metrics(cwd: Path) -> dict:
    return json.loads((run_folder(cwd) / "metrics.json").read_text())


def validation_steps(cwd: Path) -> list[int]:
    return [step for step, _ in read_scalars(run_folder(cwd))["val/loss"]]


def one_line_error(result: subprocess.CompletedProcess) -> str:
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return errors[0]


@pytest.mark.parametrize(
    "flags, steps",
    [
        (["--trainer.overfit_batches=3"], 6),  # lightning-hydra-template's debug/overfit.yaml
        (["--trainer.limit_train_batches=0.5"], 8),
        (
            [
                "--trainer.limit_train_batches=3",
                "--trainer.limit_val_batches=1",
                "--trainer.limit_test_batches=1",
            ],
            6,
        ),
        (["--trainer.detect_anomaly=true"], 16),
        (["--trainer.num_sanity_val_steps=0"], 16),
    ],
    ids=["overfit_batches", "limit_fraction", "limit_count", "detect_anomaly", "no_sanity_check"],
)
def test_flags_that_shape_the_fit(flags, steps, fork_server, fake_mnist, tmp_path):
    fit(fork_server, fake_mnist, tmp_path, *flags)
    done = metrics(tmp_path)
    assert done["steps"] == steps and done["epochs"] == 2
    assert "test/acc" in done  # the best checkpoint was tested after the fit
    assert (
        torch.load(run_folder(tmp_path) / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]
        == steps
    )


def test_overfit_batches_trains_on_the_same_batches_each_epoch(fork_server, fake_mnist, tmp_path):
    """Lightning swaps the training sampler for a sequential one: the loader's state says so."""
    fit(fork_server, fake_mnist, tmp_path, "--trainer.overfit_batches=2", "--trainer.max_epochs=3")
    last = torch.load(run_folder(tmp_path) / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 0, "batches": 2}]
    assert metrics(tmp_path)["steps"] == 6


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--trainer.val_check_interval=0.5"], [3, 7, 11, 15]),  # twice an epoch
        (["--trainer.val_check_interval=3"], [2, 5, 10, 13]),  # every 3 batches of an epoch
        (["--trainer.max_epochs=4", "--trainer.check_val_every_n_epoch=2"], [15, 31]),
    ],
    ids=["fraction", "batches", "every_2_epochs"],
)
def test_when_validation_runs(flags, expected, fork_server, fake_mnist, tmp_path):
    fit(fork_server, fake_mnist, tmp_path, *flags)
    assert validation_steps(tmp_path) == expected
    assert "test/acc" in metrics(tmp_path)


def test_early_stopping_added_from_the_command_line(fork_server, fake_mnist, tmp_path):
    """EarlyStopping told that a higher accuracy is worse stops at the first validation that does
    not lower it, long before max_epochs."""
    fit(
        fork_server, fake_mnist, tmp_path, "--trainer.max_epochs=20",
        "--trainer.callbacks+=EarlyStopping", "--trainer.callbacks.monitor=val/acc",
        "--trainer.callbacks.mode=min", "--trainer.callbacks.patience=0",
    )  # fmt: skip
    done = metrics(tmp_path)
    assert 2 <= done["epochs"] < 20 and "test/acc" in done
    config = (run_folder(tmp_path) / "config.yaml").read_text()
    assert "lightning.pytorch.callbacks.EarlyStopping" in config  # the run's config says it ran


def test_profiler_reports(fork_server, fake_mnist, tmp_path):
    result = fit(fork_server, fake_mnist, tmp_path, "--trainer.profiler=simple")
    assert "FIT Profiler Report" in result.stdout + result.stderr
    assert "run_training_epoch" in result.stdout + result.stderr
    assert metrics(tmp_path)["steps"] == 16


def test_max_time_stops_the_fit_and_the_best_is_tested(fork_server, fake_mnist, tmp_path):
    fit(fork_server, fake_mnist, tmp_path, "--trainer.max_epochs=10000", "--trainer.max_time=00:00:00:03")
    done = metrics(tmp_path)
    assert 0 < done["epochs"] < 10000 and "test/acc" in done


def test_ddp_spawn_on_two_cpu_processes(fork_server, fake_mnist, tmp_path):
    fit(
        fork_server, fake_mnist, tmp_path,
        "--trainer.strategy=ddp_spawn", "--trainer.devices=2", "--trainer.accelerator=cpu",
    )  # fmt: skip
    done = metrics(tmp_path)
    assert done["hardware"]["devices"] == 2
    assert done["steps"] == 8  # each process takes half of the 8 batches an epoch
    assert "test/acc" in done


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--trainer.limit_val_batches=0.1"], "limit_val_batches"),  # 0.1 of one batch
        (["--trainer.val_check_interval=50"], "val_check_interval"),  # longer than an epoch
        (["--trainer.limit_train_batches=1.5"], "limit_train_batches"),  # neither fraction nor count
    ],
    ids=["limit_val_fraction", "val_check_interval", "limit_train_above_1"],
)
def test_lightning_refusals_are_one_line(flags, words, fork_server, fake_mnist, tmp_path):
    result = fit(fork_server, fake_mnist, tmp_path, *flags, status=2)
    error = one_line_error(result)
    assert error.startswith("error: Lightning refused these settings: ")
    assert words in error
    assert not (tmp_path / "logs").exists() or not list((tmp_path / "logs").rglob("*.ckpt"))


def test_ckpt_path_registry_is_lightnings(fake_mnist, tmp_path, fork_server):
    """`--ckpt_path registry:<model>` goes to Lightning's model registry: here a stand-in `litmodels`
    package serves a checkpoint of 16 steps, and the fit continues from it."""
    first = tmp_path / "first"
    first.mkdir()
    fit(fork_server, fake_mnist, first)
    checkpoint = run_folder(first) / "checkpoints" / "last.ckpt"
    package = tmp_path / "site" / "litmodels"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        "import os, shutil\n"
        "def download_model(name, download_dir):\n"
        "    os.makedirs(download_dir, exist_ok=True)\n"
        f"    return [shutil.copy({str(checkpoint)!r}, download_dir)]\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(package.parent), os.environ.get("PYTHONPATH", "")]),
    }
    args = [*RUN, f"--data.data_dir={fake_mnist}", "--trainer.max_epochs=3", "--ckpt_path=registry:digits"]
    resumed = subprocess.run(
        [sys.executable, "-m", "lit_mnist", *args], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (tmp_path / "digits" / "last.ckpt").is_file()  # where Lightning had it downloaded
    assert metrics(tmp_path)["steps"] == 24  # 16 from the registry's checkpoint, then one more epoch


def test_ckpt_path_registry_without_litmodels_is_one_line(fork_server, fake_mnist, tmp_path):
    result = fit(fork_server, fake_mnist, tmp_path, "--ckpt_path=registry:digits:version:v2", status=2)
    assert "pip install litmodels" in one_line_error(result)
