"""make export: ONNX and TorchScript files that compute what the trained PyTorch model computes."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT, SMALL
from lit_mnist.data import load_split
from lit_mnist.tools import export
from lit_mnist.tools.runs import best_checkpoint, load_model, predict_logits
from test_folder import make_folder


def run_export(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lit_mnist.tools.export", *args], capture_output=True, text=True, check=False
    )


@pytest.fixture(scope="module")
def exported(quick_run, real_mnist, tmp_path_factory):
    output = tmp_path_factory.mktemp("export")
    checkpoint = best_checkpoint(quick_run)
    result = run_export(str(checkpoint), f"--data.data_dir={real_mnist}", "--output", str(output))
    assert result.returncode == 0, result.stderr[-3000:]
    return checkpoint, output, result


def test_export_writes_both_files_checked_on_the_whole_test_set(exported):
    checkpoint, output, result = exported
    report = json.loads((output / f"{checkpoint.stem}.json").read_text())
    assert report["test_images"] == 10_000
    for name, suffix in (("onnx", ".onnx"), ("torchscript", ".torchscript.pt")):
        path = output / f"{checkpoint.stem}{suffix}"
        assert report[name]["file"] == str(path) and report[name]["bytes"] == path.stat().st_size > 100_000
        assert report[name]["ok"] and report[name]["max_abs_diff"] <= 1e-4
        assert report[name]["predictions_differ"] == 0
        assert report[name]["accuracy"] == report["pytorch"]["accuracy"] > 0.85
        assert f"{path.stat().st_size / 1e6:.2f}MB" in result.stdout
    assert not list(output.glob("*.data"))  # the ONNX weights are inside the one file


def test_exported_files_take_pixels_in_0_1_and_match_the_training_model(exported, real_mnist):
    """Checked here against the model as training evaluates it (uint8 pixels normalised by the data
    module's function), not against the exporter's own wrapper."""
    import onnxruntime

    checkpoint, output, _ = exported
    images, _ = load_split(real_mnist, "test")
    digits = images[:37]
    expected = predict_logits(load_model(checkpoint), digits)
    pixels = digits.unsqueeze(1).float() / 255
    session = onnxruntime.InferenceSession(str(output / f"{checkpoint.stem}.onnx"))
    (input_,) = session.get_inputs()
    assert input_.name == "images" and input_.shape[1:] == [1, 28, 28]
    from_onnx = torch.from_numpy(session.run(None, {"images": pixels.numpy()})[0])
    from_torchscript = export.torchscript_runner(output / f"{checkpoint.stem}.torchscript.pt")(pixels)
    for logits in (from_onnx, from_torchscript, from_onnx[:1]):
        torch.testing.assert_close(logits, expected[: len(logits)], atol=1e-4, rtol=0)


def test_a_difference_above_the_tolerance_fails_the_check():
    reference = torch.randn(6, 10)
    labels = reference.argmax(1)
    report = export.compare(
        reference,
        {
            "close": reference + 5e-5,
            "far": reference + 2e-4,
            "nan": reference.clone().fill_(float("nan")),
            "short": reference[:3],
        },
        labels,
        tolerance=1e-4,
    )
    assert report["pytorch"]["accuracy"] == 1.0
    assert report["close"]["ok"] and report["close"]["max_abs_diff"] == pytest.approx(5e-5, rel=1e-2)
    assert not report["far"]["ok"] and report["far"]["max_abs_diff"] == pytest.approx(2e-4, rel=1e-2)
    assert not report["nan"]["ok"] and not report["short"]["ok"]


def test_a_mismatching_export_exits_1_and_keeps_the_files(fashion_run, tmp_path, monkeypatch, capsys):
    real_runner = export.onnx_runner

    def drifting_runner(path):
        run = real_runner(path)
        return lambda images: run(images) + 1e-3

    monkeypatch.setattr(export, "onnx_runner", drifting_runner)
    _, checkpoint = fashion_run
    with pytest.raises(SystemExit) as stopped:
        export.main([str(checkpoint), "--output", str(tmp_path)])
    assert "onnx output differs from PyTorch's by more than 0.0001" in str(stopped.value.code)
    assert "FAILED" in capsys.readouterr().out
    assert (tmp_path / f"{checkpoint.stem}.onnx").is_file()
    report = json.loads((tmp_path / f"{checkpoint.stem}.json").read_text())
    assert not report["onnx"]["ok"] and report["torchscript"]["ok"] and report["test_images"] == 100


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.ckpt"], "error: checkpoint missing.ckpt not found"),
        (["README.md"], "cannot be read"),
        (["README.md", "--tolerance=-1"], "--tolerance must be 0 or more"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path):
    if args[0] == "README.md":
        args = [str(tmp_path / "README.md"), *args[1:]]
        (tmp_path / "README.md").write_text("# a text file\n")
    result = run_export(*args)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


# A few steps of a tiny net: the checks below are about which data the export reads, not accuracy.
TINY_FIT = [
    "fit",
    "--config", str(ROOT / "configs" / "default.yaml"),
    "--model.net.init_args.channels=[4, 8]",
    "--model.net.init_args.hidden=16",
    "--trainer.max_epochs=1",
    "--auto_precision=false",
    "--test_after_fit=false",
    *SMALL,
]  # fmt: skip
FOLDER_SHAPE = (3, 20, 24)  # colour, and neither square nor 28x28


def trained(fork_server, cwd: Path, *flags: str) -> Path:
    """The best checkpoint of a TINY_FIT run with these flags, in cwd/logs/."""
    result = fork_server.run([*TINY_FIT, *flags], cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = (cwd / "logs").glob("*/version_0")
    return best_checkpoint(run)


def exported_report(fork_server, checkpoint: Path, *flags: str) -> dict:
    result = fork_server.run(["export", str(checkpoint), *flags], cwd=checkpoint.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((checkpoint.parent.parent / "export" / f"{checkpoint.stem}.json").read_text())


def accuracy(checkpoint: Path, images: torch.Tensor, labels: torch.Tensor) -> float:
    """The checkpoint's accuracy on uint8 images, computed apart from the exporter."""
    predictions = predict_logits(load_model(checkpoint), images).argmax(1)
    return float((predictions == labels).float().mean())


def assert_checked_on(report: dict, checkpoint: Path, images: torch.Tensor, labels: torch.Tensor) -> None:
    """The parity check passed, on exactly these test images."""
    assert report["test_images"] == len(labels)
    assert report["pytorch"]["accuracy"] == accuracy(checkpoint, images, labels)
    for name in ("onnx", "torchscript"):
        assert report[name]["ok"] and report[name]["max_abs_diff"] <= 1e-4, report[name]
        assert report[name]["accuracy"] == pytest.approx(report["pytorch"]["accuracy"], abs=1 / len(labels))


@pytest.fixture(scope="module")
def folder_run(fork_server, tmp_path_factory) -> tuple[Path, Path]:
    """(data root, best checkpoint) of a tiny net trained on RGB 20x24 images in class folders with
    a test/ folder of 7 images."""
    tmp = tmp_path_factory.mktemp("folder_run")
    counts = {"train": {"a": 12, "b": 12}, "test": {"a": 3, "b": 4}}
    data = make_folder(tmp / "data", counts, shape=FOLDER_SHAPE[1:], rgb=True)
    (tmp / "work").mkdir()
    checkpoint = trained(
        fork_server, tmp / "work",
        "--config", str(ROOT / "configs" / "experiments" / "folder.yaml"),
        f"--data.root={data}", "--data.val_size=4",
    )  # fmt: skip
    return data, checkpoint


def folder_test_split(root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The test/ images as uint8 (N, C, H, W), read with PIL, and their labels (sorted class folders)."""
    files = sorted((root / "test").glob("*/*.png"))
    classes = sorted({path.parent.name for path in files})
    images = np.stack([np.asarray(Image.open(path)) for path in files]).transpose(0, 3, 1, 2)
    return torch.from_numpy(images.copy()), torch.tensor([classes.index(path.parent.name) for path in files])


def test_a_checkpoint_of_an_rgb_image_folder_is_checked_on_its_test_folder(folder_run, fork_server):
    data, checkpoint = folder_run
    report = exported_report(fork_server, checkpoint)
    images, labels = folder_test_split(data)
    assert tuple(images.shape[1:]) == FOLDER_SHAPE and len(labels) == 7
    assert_checked_on(report, checkpoint, images, labels)
    assert report["input"] == "images: float32 (N, 3, 20, 24), pixels in [0, 1]"
    assert report["data"]["class_path"].endswith("ImageFolderDataModule")
    assert report["data"]["init_args"]["root"] == str(data)
    import onnxruntime

    onnx_file = checkpoint.parent.parent / "export" / f"{checkpoint.stem}.onnx"
    (input_,) = onnxruntime.InferenceSession(str(onnx_file)).get_inputs()
    assert input_.shape[1:] == list(FOLDER_SHAPE)


def test_a_moved_image_folder_is_one_line_until_pointed_at(folder_run, fork_server, tmp_path):
    """config.yaml names a folder that is gone: one line that says so, nothing written; --data.root
    finds it where it is now."""
    data, checkpoint = folder_run
    run = tmp_path / "run"
    shutil.copytree(checkpoint.parent.parent, run, ignore=shutil.ignore_patterns("export"))
    config = run / "config.yaml"
    gone = tmp_path / "gone"
    config.write_text(config.read_text().replace(str(data), str(gone)))
    moved = run / "checkpoints" / checkpoint.name
    result = fork_server.run(["export", str(moved)], cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: --data.root {gone}: no such folder (as {config} says; --data.root=... overrides it)"
    ]
    assert not (run / "export").exists()
    report = exported_report(fork_server, moved, "--data.root", str(data))
    assert report["test_images"] == 7 and report["onnx"]["ok"] and report["torchscript"]["ok"]


@pytest.fixture(scope="module")
def fashion_run(fork_server, fake_mnist, tmp_path_factory) -> tuple[Path, Path]:
    """(data root, best checkpoint) of a tiny net trained on the synthetic FashionMNIST, in a root
    that holds no MNIST: an export reading MNIST would fail."""
    tmp = tmp_path_factory.mktemp("fashion_run")
    shutil.copytree(fake_mnist / "FashionMNIST", tmp / "data" / "FashionMNIST")
    (tmp / "work").mkdir()
    checkpoint = trained(
        fork_server, tmp / "work", f"--data.data_dir={tmp / 'data'}", "--data.dataset=FashionMNIST"
    )
    return tmp / "data", checkpoint


def test_a_fashion_mnist_checkpoint_is_checked_on_fashion_mnist(fashion_run, fork_server):
    data, checkpoint = fashion_run
    report = exported_report(fork_server, checkpoint)
    images, labels = load_split(data, "test", "FashionMNIST")
    assert_checked_on(report, checkpoint, images, labels)
    assert report["data"]["init_args"]["dataset"] == "FashionMNIST"
    assert report["input"] == "images: float32 (N, 1, 28, 28), pixels in [0, 1]"


def test_a_checkpoint_without_its_run_needs_data_flags(fashion_run, fork_server, tmp_path):
    data, checkpoint = fashion_run
    loose = Path(shutil.copy(checkpoint, tmp_path / "loose.ckpt"))
    result = fork_server.run(["export", str(loose)], cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert f"error: {loose} is not in a run's checkpoints/ folder" in result.stderr
    assert "--data.data_dir=DIR [--data.dataset=FashionMNIST]" in result.stderr
    assert not list(tmp_path.glob("export*"))
    flags = [f"--data.data_dir={data}", "--data.dataset=FashionMNIST", "--data.val_size=50"]
    result = fork_server.run(["export", str(loose), *flags], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "export" / "loose.json").read_text())
    assert report["data"]["source"] == "the --data flags" and report["test_images"] == 100
