"""make export: ONNX and TorchScript files that compute what the trained PyTorch model computes."""

import json
import subprocess
import sys

import pytest
import torch

from lit_mnist.data import load_split
from lit_mnist.tools import export
from lit_mnist.tools.runs import best_checkpoint, load_model, predict_logits


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


def test_a_mismatching_export_exits_1_and_keeps_the_files(
    quick_run, fake_mnist, tmp_path, monkeypatch, capsys
):
    real_runner = export.onnx_runner

    def drifting_runner(path):
        run = real_runner(path)
        return lambda images: run(images) + 1e-3

    monkeypatch.setattr(export, "onnx_runner", drifting_runner)
    checkpoint = best_checkpoint(quick_run)
    with pytest.raises(SystemExit) as stopped:
        export.main([str(checkpoint), f"--data.data_dir={fake_mnist}", "--output", str(tmp_path)])
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
