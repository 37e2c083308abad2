"""The benchmark runs and reports every case (on synthetic data: its numbers mean nothing here)."""

import subprocess
import sys

import pytest

from conftest import ROOT, make_dataset


@pytest.mark.slow
def test_benchmark_reports_all_cases(tmp_path):
    make_dataset(tmp_path, n_train=6000, n_test=500)  # room for the default 5,000-image validation split
    out = tmp_path / "results.md"
    result = subprocess.run(
        [
            sys.executable,
            "src/lit_mnist/tools/bench.py",
            f"--data-dir={tmp_path}",
            "--min-epochs=1",
            "--max-epochs=1",
            f"--out={out}",
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
    assert "Command: `python src/lit_mnist/tools/bench.py" in report
    assert report.count("x |") == 9  # one row per speed option, compile included


def test_unknown_case_is_rejected():
    result = subprocess.run(
        [sys.executable, "src/lit_mnist/tools/bench.py", "--cases=ax"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and "error: unknown case(s) x" in result.stderr
