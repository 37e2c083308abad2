"""The tools as `lit-mnist <tool>` subcommands: one registry, one flag style, progress, bad input."""

import importlib
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from lit_mnist.tools import TOOLS, overview, run_tool, tool_module
from lit_mnist.tools.progress import Progress, duration


def run(name: str, *argv: str, capsys) -> tuple[int, str, str]:
    """`lit-mnist <name> <argv>` in this process: (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as stopped:
        run_tool(name, list(argv))
    out, err = capsys.readouterr()
    return stopped.value.code, out, err


@pytest.mark.parametrize("name", TOOLS)
def test_each_tool_answers_help_under_its_subcommand_name(name, capsys):
    status, out, _ = run(name, "--help", capsys=capsys)
    assert status == 0
    assert out.startswith(f"usage: lit-mnist {name} [-h]")
    # the usage in the module docstring is the spelling a user types
    assert f"\n    lit-mnist {name} " in importlib.import_module(tool_module(name)).__doc__


def test_the_overview_names_every_subcommand():
    text = overview()
    assert text.startswith("lit-mnist: ")
    lines = text.splitlines()
    for name in ("fit", "validate", "test", "predict", *TOOLS):
        assert sum(line.startswith(f"  {name} ") for line in lines) == 1, name
    assert "lit-mnist <subcommand> --help" in text and "lit-mnist --version" in text


@pytest.mark.parametrize("flag", ["--version", "--help"])
def test_version_and_help_answer_without_importing_torch(flag):
    command = [sys.executable, "-X", "importtime", "-m", "lit_mnist", flag]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    assert result.stdout.startswith("lit-mnist")
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "lit_mnist" in imported and not {"torch", "lightning", "jsonargparse"} & imported


def test_the_package_names_load_when_first_used():
    import lit_mnist
    from lit_mnist.model import MNISTClassifier

    assert lit_mnist.MNISTClassifier is MNISTClassifier and "MNISTClassifier" in lit_mnist.__all__
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        _ = lit_mnist.Nothing


def test_an_unknown_tool_is_a_python_error():
    with pytest.raises(ValueError, match="unknown tool 'train'"):
        run_tool("train", [])


def test_progress_estimates_the_time_left_from_the_mean_so_far(capsys):
    times = iter([100.0, 110.0, 130.0, 145.0, 200.0])
    progress = Progress(4, clock=lambda: next(times))
    for item in "abcd":
        progress.done(item)
    assert capsys.readouterr().out.splitlines() == [
        "[1/4] a: done in 0:10; about 0:30 left",  # 10 s each so far, 3 left
        "[2/4] b: done in 0:20; about 0:30 left",  # 15 s each, 2 left
        "[3/4] c: done in 0:15; about 0:15 left",
        "[4/4] d: done in 0:55; all in 1:40",
    ]


def test_durations_read_as_a_clock():
    assert [duration(s) for s in (0, 59.6, 65, 3599, 3725)] == ["0:00", "1:00", "1:05", "59:59", "1:02:05"]


def fake_grid_sweep(calls):
    """Stands in for the sweep behind seeds and compare: records what it was given, and returns a
    study of two complete runs."""
    import optuna
    from optuna.distributions import IntDistribution
    from optuna.trial import create_trial

    def grid_sweep(space, fit_args, study, prefix, workers):
        calls.append((space, fit_args, study, prefix, workers))
        result = optuna.create_study(direction="maximize")
        for seed, acc in ((0, 0.9), (1, 0.91)):
            result.add_trial(
                create_trial(
                    value=0.9,
                    params={"seed_everything": seed},
                    distributions={"seed_everything": IntDistribution(0, 1)},
                    user_attrs={"test": {"test/acc": acc}},
                )
            )
        return result

    return grid_sweep


@pytest.mark.parametrize(
    "argv",
    [
        ["--seeds", "0", "1", "--config", "c.yaml", "--data.data_dir=d", "--trainer.max_steps=5"],
        [
            "--seeds",
            "0",
            "1",
            "--",
            "fit",
            "--config",
            "c.yaml",
            "--data.data_dir=d",
            "--trainer.max_steps=5",
        ],
        ["fit", "--config", "c.yaml", "--seeds", "0", "1", "--data.data_dir=d", "--trainer.max_steps=5"],
        ["--seeds", "0", "1", "fit", "--config", "c.yaml", "--data.data_dir=d", "--trainer.max_steps=5"],
    ],
)
def test_seeds_pass_every_other_flag_to_each_fit(argv, monkeypatch, capsys):
    from lit_mnist.tools.sweep import run as sweep_run

    calls = []
    monkeypatch.setattr(sweep_run, "grid_sweep", fake_grid_sweep(calls))
    run_tool("seeds", argv)
    ((space, fit_args, study, prefix, workers),) = calls
    assert fit_args == ["--config", "c.yaml", "--data.data_dir=d", "--trainer.max_steps=5"]
    assert [(p.key, p.choices) for p in space.params] == [("seed_everything", (0, 1))]
    assert (space.sampler, space.test, study, prefix, workers) == ("grid", "each", None, "seeds", 1)
    out = capsys.readouterr().out
    assert "| 2 | 90.00% ± 0.00 | 90.50% ± 0.71 |" in out


def test_compare_passes_every_other_flag_to_each_fit(monkeypatch):
    from lit_mnist.tools import compare
    from lit_mnist.tools.sweep import run as sweep_run

    calls = []
    monkeypatch.setattr(sweep_run, "grid_sweep", fake_grid_sweep(calls))
    with pytest.raises(FileNotFoundError):  # the fake study wrote no trials.md
        run_tool(
            "compare",
            ["--epochs", "2", "--data.data_dir=X", "--optimizers", "adam", "sgd", "--trainer.max_steps=5"],
        )
    ((space, fit_args, _, prefix, _),) = calls
    assert fit_args == [f"--config={compare.CONFIG}", "--data.data_dir=X", "--trainer.max_steps=5"]
    (param,) = space.params
    assert param.names == ("adam", "sgd") and prefix == "compare"
    assert param.choices == (
        {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.001}},
        {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.01}},
    )
    # --epochs and --seed become the space's flags: over the config, under a flag passed on
    assert space.flags == ("--trainer.max_epochs=2", "--seed_everything=0")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["plots", "{tmp}/nowhere"], "error: {tmp}/nowhere is not a run folder (no TensorBoard event files"),
        (["results", "{tmp}/nowhere"], "error: {tmp}/nowhere is not a folder"),
        (["results", "{tmp}"], "error: no metrics.json under {tmp}"),
        (["export", "{tmp}/missing.ckpt"], "error: checkpoint {tmp}/missing.ckpt not found"),
        (["notebooks", "{tmp}/missing.ipynb"], "error: no such notebook: {tmp}/missing.ipynb"),
        (["seeds", "--seeds", "1", "2", "1"], "error: the seeds repeat: 1 2 1"),
        (["seeds", "--seeds", "1", "--seed_everything=3"], "error: give the seed with --seeds"),
        (["seeds", "--seeds", "1", "--", "test"], "error: the runs are `lit-mnist fit` runs, not `test`"),
        (["compare", "--epochs", "0"], "error: --epochs must be at least 1, got 0"),
        (["bench", "--cases", "ax"], "error: unknown case(s) x; choose from abcdefg"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_2(argv, message, tmp_path, capsys):
    name, *args = (arg.format(tmp=tmp_path) for arg in argv)
    status, _, err = run(name, *args, capsys=capsys)
    assert status == 2
    assert len(err.splitlines()) == 1 and err.startswith(message.format(tmp=tmp_path)), err


def make_dry_run(*args: str) -> str:
    # `make test DATA_DIR=...` exports DATA_DIR and hands it on through MAKEFLAGS; the targets
    # must show their own defaults here
    dropped = ("DATA_DIR", "ARGS", "CONFIG", "MAKEFLAGS", "MAKEOVERRIDES", "MFLAGS", "MAKELEVEL")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    return subprocess.run(
        ["make", "-n", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.parametrize(
    "args, command",
    [
        (
            ["train", "SEEDS=0 1", "DATA_DIR=d"],
            "lit-mnist seeds --seeds 0 1 --config configs/default.yaml --data.data_dir=d",
        ),
        (["compare", "ARGS=--epochs 2"], "lit-mnist compare --data.data_dir=data --epochs 2"),
        (["bench", "DATA_DIR=d", "ARGS=--cases bc"], "lit-mnist bench --data.data_dir=d --cases bc"),
        (
            ["export", "CKPT=a.ckpt", "DATA_DIR=d", "ARGS=--tolerance 0"],
            "lit-mnist export a.ckpt --data.data_dir=d --tolerance 0",
        ),
        (["plots", "RUN=logs/x/version_0"], "lit-mnist plots logs/x/version_0"),
        (["results", "ARGS=--readme R.md"], "lit-mnist results logs --output logs/results.md --readme R.md"),
        (["notebooks", "RUN=r", "ARGS=--timeout 60"], "lit-mnist notebooks notebooks/*.ipynb --timeout 60"),
        (["test", "ARGS=-k resume"], "-m pytest -k resume"),
    ],
)
def test_make_targets_call_the_subcommands_with_args(args, command):
    assert command in make_dry_run(*args)


def test_make_export_leaves_the_data_to_the_checkpoint_unless_told():
    # the run's config.yaml names its data: an image folder's checkpoint has no data_dir to give
    (line,) = [x for x in make_dry_run("export", "CKPT=a.ckpt").splitlines() if "lit-mnist export" in x]
    assert line.split() == [".venv/bin/lit-mnist", "export", "a.ckpt"]
