"""Several runs at once: seeds (make train SEEDS=...), the optimizer shoot-out, the results table."""

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

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
    (study,) = (cwd / "logs" / "sweeps").iterdir()
    assert study.name.startswith("seeds-") and f"study {study.name}: " in result.stdout
    runs = sorted(study.glob("trial_*"))
    assert [r.name for r in runs] == ["trial_0", "trial_1"]
    metrics = [json.loads((r / "metrics.json").read_text()) for r in runs]
    assert [m["seed"] for m in metrics] == [3, 7]
    assert all(f"--seed_everything={m['seed']}" in m["command"] for m in metrics)
    test = [m["test/acc"] for m in metrics]  # each seed's run tested its checkpoint
    mean, std = 100 * statistics.fmean(test), 100 * statistics.stdev(test)
    summary = result.stdout.split("## Mean ± std over seeds")[1]
    assert "| 2 | " in summary and f"| {mean:.2f}% ± {std:.2f} |" in summary
    assert summary.strip() in (study / "trials.md").read_text()
    assert (study / "curves.png").read_bytes().startswith(b"\x89PNG")
    assert result.stdout.count("] trial ") == 2  # a progress line per run


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seeds", "0", "0", "--", "fit"], "the seeds repeat"),
        (["--seeds", "0", "--", "test"], "not `test`"),
        (["--seeds", "0", "--", "fit", "--seed_everything=3"], "not --seed_everything"),
        (["--seeds", "0", "--", "fit", "--data.batch_size=0"], "--data.batch_size must be at least 1"),
    ],
)
def test_seeds_usage_errors(args, message, tmp_path):
    result = module("seeds", *args, cwd=tmp_path, check=False)
    assert result.returncode == 2 and not (tmp_path / "logs").exists()
    assert result.stderr.strip().splitlines() == [f"error: {result.stderr.split('error: ', 1)[1].strip()}"]
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_failing_seed_exits_1_and_the_same_study_runs_it_again(fake_mnist, tmp_path):
    flags = [*QUICK, *SMALL, "--trainer.max_epochs=1", "--data.download=false"]
    missing = module(
        "seeds", "--seeds", "0", "1", "--", "fit", *flags, f"--data.data_dir={tmp_path / 'nowhere'}",
        cwd=tmp_path, check=False,
    )  # fmt: skip
    assert missing.returncode == 1
    assert "has 0 of 2 finished trials (2 failed" in missing.stderr
    (study,) = (tmp_path / "logs" / "sweeps").iterdir()
    assert "MNIST" in (study / "trial_0" / "output.log").read_text()  # why it failed
    again = module(
        "seeds", "--seeds", "0", "1", "--study", study.name, "--", "fit", *flags,
        f"--data.data_dir={fake_mnist}", cwd=tmp_path,
    )  # fmt: skip
    runs = [json.loads(p.read_text()) for p in sorted(study.glob("trial_*/metrics.json"))]
    assert sorted(m["seed"] for m in runs) == [0, 1] and len(runs) == 2
    assert "| 2 | " in again.stdout.split("## Mean ± std over seeds")[1]


def test_results_table_lists_runs_and_seed_statistics(seeded):
    cwd, _ = seeded
    module("results", "logs", "--output", "results.md", cwd=cwd)
    text = (cwd / "results.md").read_text()
    metrics = [json.loads(p.read_text()) for p in sorted((cwd / "logs").rglob("metrics.json"))]
    (study,) = (cwd / "logs" / "sweeps").iterdir()
    rows = [line for line in text.splitlines() if line.startswith(f"| sweeps/{study.name}/trial_")]
    assert len(rows) == 2
    for row, m in zip(rows, metrics, strict=True):
        assert f"| {m['seed']} | {m['epochs']} |" in row and f"{100 * m['test/acc']:.2f}%" in row
        assert "--data.data_dir" not in row and "--seed_everything" in row
    test = [m["test/acc"] for m in metrics]
    summary = [line for line in text.splitlines() if line.startswith(f"| {study.name} | 3, 7 |")]
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
        "--", *SMALL, cwd=tmp_path,
    )  # fmt: skip
    (study,) = (tmp_path / "logs" / "sweeps").iterdir()
    assert study.name.startswith("compare-")
    runs = {}
    for run in study.glob("trial_*"):
        metrics = json.loads((run / "metrics.json").read_text())
        assert list(run.glob("events.out.tfevents.*")) and metrics["epochs"] == 2
        assert metrics["seed"] == 0 and metrics["test/acc"] is not None
        runs[yaml.safe_load((run / "config.yaml").read_text())["model"]["optimizer"]["class_path"]] = metrics
    assert sorted(runs) == ["torch.optim.Adam", "torch.optim.SGD"]
    assert (study / "curves.png").read_bytes().startswith(b"\x89PNG")
    table = [line for line in (study / "trials.md").read_text().splitlines() if line.startswith("| ")]
    assert len(table) == 4  # header, rule, two optimizers
    assert "| model.optimizer | val/acc_best | test/acc |" in table[0]
    for name, class_path in (("sgd", "torch.optim.SGD"), ("adam", "torch.optim.Adam")):
        (row,) = [line for line in table if f"| COMPLETE | {name} |" in line]
        assert f"| {runs[class_path]['test/acc']:.4g} |" in row
    assert "tensorboard --logdir" in result.stdout and table[0] in result.stdout


def test_compare_rejects_an_unknown_optimizer(tmp_path):
    result = module("compare", "--optimizers", "lbfgs", cwd=tmp_path, check=False)
    assert result.returncode != 0 and "invalid choice: 'lbfgs'" in result.stderr
