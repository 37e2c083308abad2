"""Every mistake a user can make on the command line ends in one line and a non-zero exit.
docs/reliability.md ("Bad input") lists the same cases."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from conftest import ROOT, SMALL, make_dataset, run_cli, write_idx
from lit_mnist.data import FILES, raw_folder

QUICK = [
    "--config",
    str(ROOT / "configs/default.yaml"),
    "--config",
    str(ROOT / "configs/experiments/quick.yaml"),
]


def assert_one_line_error(result, *expected: str) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr[-3000:]
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def fit(cwd: Path, data: Path, *flags: str):
    return run_cli("fit", *QUICK, f"--data.data_dir={data}", *SMALL, *flags, cwd=cwd, check=False)


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--data.batch_size=0"], ["--data.batch_size must be at least 1, got 0"]),
        (["--data.val_size=300"], ["--data.val_size must be a count between 1 and 299", "0.1, got 300"]),
        (["--data.val_size=0"], ["--data.val_size must be a count between 1 and 299"]),
        (["--model.optimizer.lr=-0.1"], ["--model.optimizer cannot be built", "learning rate: -0.1"]),
        (["--model.optimizer.weight_decay=-1"], ["--model.optimizer cannot be built", "weight_decay"]),
        (["--model.features.lr_mult=-1"], ["--model.features.lr_mult must be 0 or more, got -1"]),
        (["--model.schedule.frequency=0"], ["--model.schedule.frequency must be at least 1, got 0"]),
        (["--data.augment.scale=1"], ["--data.augment.scale must be in [0, 1), got 1.0"]),
        (["--figures.worst=0"], ["--figures.worst must be at least 1, got 0"]),
        (["--trainer.accumulate_grad_batches=0"], ["--trainer.accumulate_grad_batches must be at least 1"]),
        (["--model.optimizer=torch.optim.Nope"], ["model.optimizer", "Nope"]),
        (["--model.scheduler=torch.optim.lr_scheduler.Nope"], ["model.scheduler", "Nope"]),
        (["--model.optimizer=torch.optim.SGD", "--model.optimizer.momentum=-1"], ["momentum"]),
        (["--config", "no-such-config.yaml"], ["no-such-config.yaml"]),
        (["--threads=0"], ["--threads must be at least 1"]),
        (["--last_checkpoint.every_n_steps=-1"], ["--last_checkpoint.every_n_steps must be 0 or more"]),
        (["--model.net.init_args.channels=[]"], ["--model.net.channels must name 1 or more stages"]),
        (["--model.net.dropout=1.5"], ["--model.net.dropout must be in [0, 1), got 1.5"]),
        # a config written for MNIST's data module stacked on an image folder's: the key is named
        (
            [
                "--config",
                str(ROOT / "configs/experiments/folder.yaml"),
                "--config",
                str(ROOT / "configs/experiments/best.yaml"),
            ],
            ['"data"', "ImageFolderDataModule", "'normalise_stroke' is not accepted"],
        ),
        (["--data.nope=1"], ["'nope' is not accepted"]),
    ],
)
def test_impossible_values_are_rejected_before_training(flags, expected, fake_mnist, tmp_path):
    result = fit(tmp_path, fake_mnist, *flags)
    assert_one_line_error(result, *expected)
    assert not (tmp_path / "logs").exists() or not list((tmp_path / "logs").rglob("*.ckpt"))


def test_config_that_is_not_yaml(fake_mnist, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n  : {")
    assert_one_line_error(
        fit(tmp_path, fake_mnist, "--config", str(bad)), "bad.yaml is not valid YAML at line 2"
    )


def test_dataset_missing_without_network(tmp_path):
    result = fit(tmp_path, tmp_path / "nowhere", "--data.download=false")
    line = assert_one_line_error(result, str(raw_folder(tmp_path / "nowhere")), "--data.data_dir")
    assert all(name in line for pair in FILES.values() for name in pair)


@pytest.mark.parametrize(
    "corrupt, expected",
    [
        (lambda f: f.write_bytes(f.read_bytes()[:-100]), ["train-images-idx3-ubyte", "truncated or corrupt"]),
        (lambda f: f.write_bytes(b"\x00\x00\x09\x03" + f.read_bytes()[4:]), ["bad magic number"]),
    ],
    ids=["truncated", "wrong-magic"],
)
def test_corrupt_idx_file_is_named(corrupt, expected, tmp_path):
    data = make_dataset(tmp_path / "data")
    corrupt(raw_folder(data) / FILES["train"][0])
    assert_one_line_error(fit(tmp_path, data), *expected)


def test_labels_outside_0_to_9_and_count_mismatch(tmp_path):
    data = make_dataset(tmp_path / "data")
    labels = raw_folder(data) / FILES["test"][1]
    write_idx(labels, torch.full((100,), 12, dtype=torch.uint8))
    assert_one_line_error(fit(tmp_path, data), "t10k-labels-idx1-ubyte", "labels outside 0-9")
    write_idx(labels, torch.zeros(99, dtype=torch.uint8))
    assert_one_line_error(fit(tmp_path, data), "t10k-labels-idx1-ubyte has 99 labels for 100 images")


@pytest.fixture(scope="module")
def checkpoint(fake_mnist, tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("ckpt")
    run_cli("fit", *QUICK, f"--data.data_dir={fake_mnist}", *SMALL, "--test_after_fit=false", cwd=cwd)
    return cwd / "logs" / "quick" / "version_0" / "checkpoints" / "last.ckpt"


def test_checkpoint_missing(fake_mnist, tmp_path):
    result = run_cli(
        "test", *QUICK, f"--data.data_dir={fake_mnist}", "--ckpt_path=gone.ckpt", cwd=tmp_path, check=False
    )
    assert_one_line_error(result, "--ckpt_path gone.ckpt: no such checkpoint file")


@pytest.mark.parametrize("damage", ["truncated", "not-a-checkpoint", "markdown"])
def test_checkpoint_unreadable(damage, checkpoint, fake_mnist, tmp_path):
    bad = tmp_path / "bad.ckpt"
    data = checkpoint.read_bytes()
    # "#" gets past torch's weights-only reader to the full unpickler, which fails differently
    contents = {"not-a-checkpoint": b"hello, world\n" * 10, "markdown": b"# notes\n\nnot weights\n"}
    bad.write_bytes(data[: len(data) // 2] if damage == "truncated" else contents[damage])
    result = run_cli(
        "test", *QUICK, f"--data.data_dir={fake_mnist}", f"--ckpt_path={bad}", cwd=tmp_path, check=False
    )
    assert_one_line_error(result, f"--ckpt_path {bad} cannot be read", "truncated or not a checkpoint")


def test_checkpoint_of_another_model(checkpoint, fake_mnist, tmp_path):
    other = tmp_path / "other.ckpt"
    saved = torch.load(checkpoint, weights_only=False)
    saved.pop("hyper_parameters")  # no arguments to rebuild its own model from
    saved["state_dict"] = {"encoder.weight": torch.zeros(3, 3)}
    torch.save(saved, other)
    result = run_cli(
        "test", *QUICK, f"--data.data_dir={fake_mnist}", "--data.val_size=50", f"--ckpt_path={other}",
        cwd=tmp_path, check=False,
    )  # fmt: skip
    assert_one_line_error(result, "holds a different model", "missing net.", "unexpected encoder.weight")


def test_divergence_stops_at_once_and_keeps_the_last_good_checkpoint(fake_mnist, tmp_path):
    result = fit(
        tmp_path, fake_mnist, "--model.optimizer=torch.optim.SGD", "--model.optimizer.lr=1e6",
        "--data.batch_size=16", "--trainer.max_epochs=3", "--last_checkpoint.every_n_steps=1",
    )  # fmt: skip
    line = assert_one_line_error(result, "training diverged: loss", "learning rates features=1e+06")
    step = int(line.split(" at step ")[1].split(" ")[0].rstrip(","))
    last = torch.load(
        tmp_path / "logs" / "quick" / "version_0" / "checkpoints" / "last.ckpt", weights_only=False
    )
    assert last["global_step"] < step
    weights = [v for k, v in last["state_dict"].items() if k.startswith("net.")]
    assert weights and all(torch.isfinite(v).all() for v in weights)
    assert not (tmp_path / "logs" / "quick" / "version_0" / "metrics.json").exists()


def test_a_finite_explosion_stops_the_run_too(fake_mnist, tmp_path):
    """Adam at lr 1e6 stays finite (its steps are bounded by the learning rate) while the loss
    explodes: that stops the run with the same line, before a checkpoint of the broken weights."""
    result = fit(
        tmp_path, fake_mnist, "--model.optimizer.lr=1e6", "--data.batch_size=16", "--trainer.max_epochs=3",
        "--last_checkpoint.every_n_steps=1", "--trainer.precision=32-true",
    )  # fmt: skip
    line = assert_one_line_error(result, "training diverged: loss", "over 100x its starting value")
    step = int(line.split(" at step ")[1].split(" ")[0].rstrip(","))
    run = tmp_path / "logs" / "quick" / "version_0"
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] < step


def test_without_the_explosion_check_the_diagnosis_says_diverging(fake_mnist, tmp_path):
    result = fit(
        tmp_path, fake_mnist, "--model.optimizer.lr=1e6", "--data.batch_size=16", "--trainer.max_epochs=1",
        "--divergence.factor=0", "--trainer.precision=32-true",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "logs" / "quick" / "version_0" / "metrics.json").read_text())
    assert metrics["diagnosis"].startswith("Diverging: the loss exploded"), metrics["diagnosis"]


def test_a_good_run_is_untouched_by_the_checks(fake_mnist, tmp_path):
    assert fit(tmp_path, fake_mnist).returncode == 0
    shutil.rmtree(tmp_path / "logs")
