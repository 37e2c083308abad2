"""Several runs at once: seeds (make train SEEDS=...), the optimizer shoot-out, the results table."""

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, SMALL

QUICK = [
    "--config",
    str(ROOT / "configs/default.yaml"),
    "--config",
    str(ROOT / "configs/experiments/quick.yaml"),
]


def module(name: str, *args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [sys.executable, "-m", f"lit_mnist.tools.{name}", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{name} {args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def seeded(fake_mnist, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("seeds")
    flags = [*QUICK, f"--data.data_dir={fake_mnist}", *SMALL, "--trainer.max_epochs=1"]
    result = module("seeds", "--seeds", "3", "7", "--", "fit", *flags, cwd=cwd)
    return cwd, result


def test_seeds_run_once_each_and_report_mean_and_std(seeded):
    cwd, result = seeded
    runs = sorted((cwd / "logs" / "quick").iterdir())
    assert [r.name for r in runs] == ["version_0", "version_1"]
    metrics = [json.loads((r / "metrics.json").read_text()) for r in runs]
    assert [m["seed"] for m in metrics] == [3, 7]
    assert all(m["command"].endswith(f"--seed_everything={m['seed']}") for m in metrics)
    test = [m["test/acc"] for m in metrics]
    mean, std = 100 * statistics.fmean(test), 100 * statistics.stdev(test)
    assert f"test/acc: {mean:.2f}% ± {std:.2f} (mean ± std over 2 seeds)" in result.stdout
    assert result.stdout.count("=== seed ") == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seeds", "0", "0", "--", "fit"], "the seeds repeat"),
        (["--seeds", "0", "--", "test"], "not `test`"),
        (["--seeds", "0", "--", "fit", "--seed_everything=3"], "not --seed_everything"),
    ],
)
def test_seeds_usage_errors(args, message, tmp_path):
    result = module("seeds", *args, cwd=tmp_path, check=False)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr


def test_seeds_stop_at_a_failing_run(fake_mnist, tmp_path):
    result = module(
        "seeds", "--seeds", "0", "1", "--", "fit", *QUICK, "--data.batch_size=0", cwd=tmp_path, check=False
    )
    assert result.returncode != 0
    assert "the run with seed 0 failed" in result.stderr
    assert "=== seed 1" not in result.stdout


def test_results_table_lists_runs_and_seed_statistics(seeded):
    cwd, _ = seeded
    module("results", "logs", "--output", "results.md", cwd=cwd)
    text = (cwd / "results.md").read_text()
    metrics = [json.loads(p.read_text()) for p in sorted((cwd / "logs").rglob("metrics.json"))]
    rows = [line for line in text.splitlines() if line.startswith("| quick/version_")]
    assert len(rows) == 2
    for row, m in zip(rows, metrics, strict=True):
        assert f"| {m['seed']} | {m['epochs']} |" in row and f"{100 * m['test/acc']:.2f}%" in row
        assert "--data.data_dir" not in row and "--seed_everything" in row
    test = [m["test/acc"] for m in metrics]
    summary = [line for line in text.splitlines() if line.startswith("| quick | 3, 7 |")]
    assert len(summary) == 1
    assert f"{100 * statistics.fmean(test):.2f}% ± {100 * statistics.stdev(test):.2f}" in summary[0]


def test_results_replace_the_readme_block(seeded):
    cwd, _ = seeded
    readme = cwd / "README.md"
    readme.write_text("# Title\n<!-- results:start -->\nold\n<!-- results:end -->\nafter\n")
    module("results", "logs", "--readme", "README.md", cwd=cwd)
    text = readme.read_text()
    assert text.startswith("# Title\n<!-- results:start -->\n2 runs under")
    assert "old" not in text and text.endswith("<!-- results:end -->\nafter\n")
    readme.write_text("no markers\n")
    result = module("results", "logs", "--readme", "README.md", cwd=cwd, check=False)
    assert result.returncode != 0 and "results:start" in result.stderr
    assert readme.read_text() == "no markers\n"


def test_results_without_runs_is_one_line(tmp_path):
    result = module("results", str(tmp_path / "nowhere"), cwd=tmp_path, check=False)
    assert result.returncode != 0 and result.stderr.startswith("error: ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_compare_trains_each_optimizer_and_writes_table_and_plot(fake_mnist, tmp_path):
    result = module(
        "compare", "--epochs", "2", "--optimizers", "sgd", "adam", f"--data.data_dir={fake_mnist}",
        "--logs", "logs", "--", *SMALL, cwd=tmp_path,
    )  # fmt: skip
    (parent,) = (tmp_path / "logs" / "compare").iterdir()
    assert sorted(p.name for p in parent.iterdir()) == ["adam", "compare.md", "compare.png", "sgd"]
    for name in ("sgd", "adam"):
        assert list((parent / name).glob("events.out.tfevents.*"))
        assert json.loads((parent / name / "metrics.json").read_text())["epochs"] == 2
    assert (parent / "compare.png").read_bytes().startswith(b"\x89PNG")
    table = [line for line in (parent / "compare.md").read_text().splitlines() if line.startswith("| ")]
    assert len(table) == 4  # header, rule, two optimizers
    assert any(line.startswith("| SGD(lr=0.01) |") for line in table)
    assert any(line.startswith("| Adam(lr=0.001) |") for line in table)
    assert "tensorboard --logdir" in result.stdout


def test_compare_rejects_an_unknown_optimizer(tmp_path):
    result = module("compare", "--optimizers", "lbfgs", cwd=tmp_path, check=False)
    assert result.returncode != 0 and "invalid choice: 'lbfgs'" in result.stderr
