"""The tools as `lit-mnist <tool>` subcommands: one registry, one flag style, progress, bad input."""

import importlib
import json
import os
import subprocess

import pytest

from conftest import ROOT
from lit_mnist.tools import TOOLS, overview, run_tool
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
    assert f"\n    lit-mnist {name} " in importlib.import_module(f"lit_mnist.tools.{name}").__doc__


def test_the_overview_names_every_subcommand():
    text = overview()
    assert text.startswith("lit-mnist: ")
    lines = text.splitlines()
    for name in ("fit", "validate", "test", "predict", *TOOLS):
        assert sum(line.startswith(f"  {name} ") for line in lines) == 1, name
    assert "lit-mnist <subcommand> --help" in text and "lit-mnist --version" in text


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


def fake_fit(tmp_path, calls):
    """Stands in for seeds.run_seed: records the flags each run would get, writes its metrics."""

    def run_seed(fit_args, seed):
        calls.append((seed, fit_args))
        run_dir = tmp_path / f"version_{seed}"
        run_dir.mkdir()
        (run_dir / "metrics.json").write_text(json.dumps({"test/acc": 0.9 + seed / 100, "val/acc_best": 0.9}))
        return run_dir

    return run_seed


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
def test_seeds_pass_every_other_flag_to_each_fit(argv, tmp_path, monkeypatch, capsys):
    from lit_mnist.tools import seeds

    calls = []
    monkeypatch.setattr(seeds, "run_seed", fake_fit(tmp_path, calls))
    run_tool("seeds", argv)
    flags = ["--config", "c.yaml", "--data.data_dir=d", "--trainer.max_steps=5"]
    assert calls == [(0, flags), (1, flags)]
    out = capsys.readouterr().out
    assert "[1/2] seed 0: done in 0:00; about 0:00 left" in out and "[2/2] seed 1: done in " in out
    assert "test/acc: 90.50% ± 0.71 (mean ± std over 2 seeds)" in out


def test_compare_passes_every_other_flag_to_each_fit(tmp_path, monkeypatch):
    from lit_mnist.tools import compare

    commands = []

    def fake_run(command, **_):
        commands.append(command)
        return subprocess.CompletedProcess(command, 3, "", "")  # a failed run stops the tool

    monkeypatch.setattr(compare.subprocess, "run", fake_run)
    with pytest.raises(SystemExit, match="the adam run failed"):
        run_tool(
            "compare",
            [
                "--epochs",
                "2",
                "--data.data_dir=X",
                "--optimizers",
                "adam",
                "--logs",
                str(tmp_path),
                "--trainer.max_steps=5",
            ],
        )
    (command,) = commands
    assert command[1:4] == ["-m", "lit_mnist", "fit"]
    assert "--data.data_dir=X" in command and "--trainer.max_epochs=2" in command
    assert command[-1] == "--trainer.max_steps=5"  # last: a passed-on flag wins over the tool's


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
        (["bench", "--cases", "ax"], "error: unknown case(s) x; choose from abcdf"),
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
