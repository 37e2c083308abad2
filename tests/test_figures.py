"""TensorBoard figures, and `make plots` with the diagnosis of a real run."""

import json
import subprocess
import sys
from functools import partial

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import ROOT, SMALL, quiet_trainer, run_cli
from lit_mnist.callbacks import ValidationFigures
from lit_mnist.data import SPEC, MNISTDataModule
from lit_mnist.model import MNISTClassifier
from lit_mnist.nets import ConvNet

QUICK = [
    "--config",
    str(ROOT / "configs/default.yaml"),
    "--config",
    str(ROOT / "configs/experiments/quick.yaml"),
]


def test_confusion_matrix_counts_every_validation_image(fake_mnist):
    data = MNISTDataModule(str(fake_mnist), val_size=50, batch_size=64, eval_batch_size=20)
    model = MNISTClassifier(SPEC, net=partial(ConvNet, channels=(4, 8), hidden=16), channels_last=False)
    figures = ValidationFigures(worst=4)
    trainer = quiet_trainer(max_epochs=2, callbacks=[figures])
    trainer.fit(model, data)
    confusion = figures.confusion
    assert confusion.sum() == 50
    assert float(confusion.diag().sum() / 50) == pytest.approx(float(trainer.callback_metrics["val/acc"]))
    if confusion.diag().sum() < 50:
        losses, images, labels, predictions = figures._worst
        assert len(losses) == min(4, 50 - int(confusion.diag().sum()))
        assert (labels != predictions).all() and images.shape[1:] == (1, 28, 28)
        assert (losses[:-1] >= losses[1:]).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"every_n_epochs": -1}, "every_n_epochs must be 0 or more, got -1"),
        ({"worst": 0}, "worst must be at least 1, got 0"),
    ],
)
def test_impossible_arguments_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        ValidationFigures(**kwargs)


@pytest.fixture(scope="module")
def run(fake_mnist, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("figures")
    result = run_cli(
        "fit", *QUICK, f"--data.data_dir={fake_mnist}", *SMALL, "--trainer.max_epochs=3",
        "--trainer.limit_train_batches=1", cwd=cwd,
    )  # fmt: skip
    return cwd, cwd / "logs" / "quick" / "version_0", result


def test_fit_logs_figures_and_the_diagnosis(run):
    _, run_dir, result = run
    events = EventAccumulator(str(run_dir))
    events.Reload()
    assert "val/confusion_matrix" in events.Tags()["images"]
    assert len(events.Images("val/confusion_matrix")) == 3
    assert events.Images("val/confusion_matrix")[0].encoded_image_string.startswith(b"\x89PNG")
    diagnosis = json.loads((run_dir / "metrics.json").read_text())["diagnosis"]
    assert f"Diagnosis: {diagnosis}" in result.stdout
    assert "diagnosis/text_summary" in events.Tags()["tensors"]


def test_figures_can_be_turned_off(fake_mnist, tmp_path):
    run_cli(
        "fit", *QUICK, f"--data.data_dir={fake_mnist}", *SMALL, "--figures.every_n_epochs=0", cwd=tmp_path
    )
    events = EventAccumulator(str(tmp_path / "logs" / "quick" / "version_0"))
    events.Reload()
    assert events.Tags()["images"] == []


def test_plots_writes_pngs_and_prints_the_diagnosis(run):
    cwd, run_dir, _ = run
    plots = subprocess.run(
        [sys.executable, "-m", "lit_mnist.tools.plots", str(run_dir)], capture_output=True, text=True, cwd=cwd
    )
    assert plots.returncode == 0, plots.stderr
    for name in ("loss", "accuracy", "lr"):
        assert (run_dir / "plots" / f"{name}.png").read_bytes().startswith(b"\x89PNG")
    diagnosis = json.loads((run_dir / "metrics.json").read_text())["diagnosis"]
    assert f"Diagnosis: {diagnosis}" in plots.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "lit_mnist.tools.plots", str(cwd / "nowhere")], capture_output=True, text=True
    )
    assert missing.returncode != 0 and missing.stderr.startswith("error: ")
