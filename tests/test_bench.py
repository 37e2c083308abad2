"""The benchmark runs and reports every case (on synthetic data: its numbers mean nothing here)."""

import re
import subprocess
import sys

import lightning
import pytest
import torch

from conftest import ROOT, make_dataset


@pytest.mark.slow
def test_benchmark_reports_all_cases(tmp_path):
    make_dataset(tmp_path, n_train=6000, n_test=500)  # room for the default 5,000-image validation split
    out = tmp_path / "results.md"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lit_mnist.tools.bench",
            f"--data.data_dir={tmp_path}",
            "--min_epochs=1",
            "--overhead_steps=5",
            "--overhead_rounds=1",
            "--max_epochs=1",
            f"--output={out}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = out.read_text()
    for case in "abcd":
        assert f"\n| {case} | " in report
    for ratio in ("a/c, seconds per training sample", "c/b, seconds per epoch", "a/d, time to 99.0%"):
        assert ratio in report
    assert f"Command: `lit-mnist bench --data.data_dir={tmp_path} --min_epochs=1" in report
    assert report.count("x |") == 11 + 3  # one row per speed option (compile included), per loop in g
    assert "[7/7] case g: done in " in result.stdout
    for loop in ("plain loop", "bare LightningModule", "template (default.yaml)"):
        assert f"| {loop} | " in report
    assert "- e, configs/experiments/best.yaml (" in report and " s per 55,000-image epoch" in report
    # versions and what each case ran as
    assert f"torch {torch.__version__}, lightning {lightning.__version__}" in report
    assert "| a | tutorial loop" in report and "(32-true, batch 64)" in report
    assert re.search(
        r"\| c \| template through Lightning, configs/default.yaml \((32-true|bf16-mixed)", report
    )


def test_unknown_case_is_rejected():
    result = subprocess.run(
        [sys.executable, "-m", "lit_mnist.tools.bench", "--cases=ax"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and result.stderr == "error: unknown case(s) x; choose from abcdefg\n"


@pytest.mark.slow
def test_gpu_benchmark_reports_both_parts(tmp_path):
    """Run on the CPU here (--device=cpu): the same loops and report as on a GPU."""
    make_dataset(tmp_path, n_train=6000, n_test=500)
    out = tmp_path / "gpu.md"
    result = subprocess.run(
        [
            sys.executable, "-m", "lit_mnist", "bench-gpu", f"--data.data_dir={tmp_path}", "--device=cpu",
            "--batches", "256", "--epochs=1", "--rounds=1", "--seeds", "0", "1", f"--output={out}",
            "--configs", str(ROOT / "configs/experiments/gpu_fast.yaml"),
        ],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = out.read_text()
    assert f"torch {torch.__version__}, lightning {lightning.__version__}" in report
    row = re.search(
        r"\n\| 256 \| (32-true|bf16-mixed)[^|]* \| ([\d,]+) \| ([\d,]+) \| ([\d,]+) \| ([\d.]+)x \|", report
    )
    assert row, report
    assert all(int(n.replace(",", "")) > 0 for n in row.groups()[1:4])
    runs = re.findall(
        r"\n\| configs/experiments/gpu_fast.yaml \| (\d) \| [^|]*batch 1024 \| ([^|]*) \|", report
    )
    assert [seed for seed, _ in runs] == ["0", "1"], report
    assert "- configs/experiments/gpu_fast.yaml: " in report


def test_gpu_benchmark_needs_a_gpu_or_says_so():
    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    result = subprocess.run(
        [sys.executable, "-m", "lit_mnist", "bench-gpu"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: no CUDA GPU here") and result.stderr.count("\n") == 1
