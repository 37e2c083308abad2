"""The callbacks every run has are in the config: listed with their arguments, set, removed or
swapped from the command line or a config file, and a run's config.yaml builds the same run."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ProgressBar as AnyProgressBar
from lightning.pytorch.callbacks import TQDMProgressBar

from conftest import ROOT, SMALL
from lit_mnist.callbacks import LastCheckpoint, PredictionWriter, ProgressBar, RunSummary, StopOnDivergence
from lit_mnist.cli import CALLBACK_GROUPS, MNISTCLI, RAISING, SWAPPABLE

TEMPLATE = (StopOnDivergence, LastCheckpoint, RunSummary, PredictionWriter, ProgressBar)


def built(fake_mnist: Path, *flags: str) -> list:
    """The callbacks of the trainer `lit-mnist fit FLAGS` builds, without running it."""
    args = [
        "--config",
        str(ROOT / "configs/default.yaml"),
        f"--data.data_dir={fake_mnist}",
        "--data.val_size=50",
    ]
    cli = MNISTCLI(args=[*args, *flags], run=False, parser_kwargs=RAISING)
    return cli.trainer.callbacks


def of(callbacks: list, kind: type) -> list:
    return [c for c in callbacks if isinstance(c, kind)]


def test_every_callback_of_a_run_is_a_group_of_the_config(fake_mnist, tmp_path, capsys):
    callbacks = built(fake_mnist)
    for kind in TEMPLATE:
        assert len(of(callbacks, kind)) == 1, kind
    assert len(of(callbacks, AnyProgressBar)) == 1  # the template's, in place of Lightning's
    assert of(callbacks, LastCheckpoint)[0].every_n_steps == 200
    assert of(callbacks, StopOnDivergence)[0].factor == 100.0
    # nothing else in the trainer's list that the config does not name: Lightning's ModelSummary
    # (--trainer.enable_model_summary) and the CLI's writer of config.yaml
    named = {*(cls for _, cls in SWAPPABLE.values()), *CALLBACK_GROUPS.values()}
    unnamed = [type(c).__name__ for c in callbacks if not any(isinstance(c, cls) for cls in named)]
    assert sorted(unnamed) == ["ModelSummary", "SaveFitConfig"]

    with pytest.raises(SystemExit):
        MNISTCLI(args=["fit", "--config", str(ROOT / "configs/default.yaml"), "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    for name, (_, cls) in SWAPPABLE.items():
        assert printed[name]["class_path"] == f"lit_mnist.callbacks.{cls.__name__}"
    assert printed["last_checkpoint"]["init_args"]["every_n_steps"] == 200


def test_a_callback_is_set_removed_or_swapped_by_its_group(fake_mnist):
    callbacks = built(
        fake_mnist, "--last_checkpoint.every_n_steps=7", "--divergence=null", "--summary=null",
        "--progress_bar=lightning.pytorch.callbacks.TQDMProgressBar", "--progress_bar.refresh_rate=5",
    )  # fmt: skip
    assert of(callbacks, LastCheckpoint)[0].every_n_steps == 7
    assert of(callbacks, StopOnDivergence) == of(callbacks, RunSummary) == []
    [bar] = of(callbacks, AnyProgressBar)
    assert type(bar) is TQDMProgressBar and bar.refresh_rate == 5

    # in a config file, as config.yaml writes it
    callbacks = built(fake_mnist, "--config", str(ROOT / "configs/experiments/gpu_fast.yaml"))
    assert of(callbacks, LastCheckpoint)[0].every_n_steps == 0


def test_a_progress_bar_of_the_users_replaces_the_templates(fake_mnist):
    listed = built(fake_mnist, "--trainer.callbacks+=TQDMProgressBar", "--trainer.callbacks.refresh_rate=3")
    [bar] = of(listed, AnyProgressBar)
    assert type(bar) is TQDMProgressBar and bar.refresh_rate == 3
    assert of(built(fake_mnist, "--trainer.enable_progress_bar=false"), AnyProgressBar) == []


@pytest.mark.parametrize(
    ("flag", "said"),
    [
        ("--progress_bar=lit_mnist.callbacks.EMA", "does not correspond to a subclass of ProgressBar"),
        ("--last_checkpoint.every_n_steps=-1", "--last_checkpoint.every_n_steps must be 0 or more"),
        ("--divergence=no.such.Callback", "no.such.Callback"),
    ],
)
def test_a_bad_group_value_is_one_line(fork_server, fake_mnist, tmp_path, flag, said):
    args = ["fit", "--config", str(ROOT / "configs/default.yaml"), f"--data.data_dir={fake_mnist}", *SMALL]
    result = fork_server.run([*args, flag], cwd=tmp_path)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: ") and said in line
    assert not (tmp_path / "logs").exists()


def test_config_yaml_builds_the_same_run(fork_server, fake_mnist, tmp_path):
    """A run with its groups changed and a callback added; its config.yaml run again elsewhere
    gives the same callbacks, the same weights and the same metrics."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    flags = [
        f"--data.data_dir={fake_mnist}", *SMALL, "--trainer.max_epochs=2", "--trainer.precision=32-true",
        "--model.net.init_args.channels=[4, 8]", "--model.net.init_args.hidden=16", "--data.batch_size=25",
        "--last_checkpoint.every_n_steps=3", "--divergence.factor=0", "--predictions=null",
        "--trainer.callbacks+=EarlyStopping", "--trainer.callbacks.monitor=val/loss",
        "--trainer.callbacks.patience=5",
    ]  # fmt: skip
    result = fork_server.run(["fit", "--config", str(ROOT / "configs/default.yaml"), *flags], cwd=first)
    assert result.returncode == 0, result.stderr[-3000:]
    run = first / "logs" / "default" / "version_0"
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["predictions"] is None
    assert config["divergence"]["init_args"]["factor"] == 0.0
    assert config["last_checkpoint"]["init_args"]["every_n_steps"] == 3
    assert [c["class_path"] for c in config["trainer"]["callbacks"]] == [
        "lightning.pytorch.callbacks.EarlyStopping"
    ]

    again = fork_server.run(["fit", "--config", str(run / "config.yaml")], cwd=second)
    assert again.returncode == 0, again.stderr[-3000:]
    rerun = second / "logs" / "default" / "version_0"
    assert yaml.safe_load((rerun / "config.yaml").read_text()) == config
    metrics = [json.loads((r / "metrics.json").read_text()) for r in (run, rerun)]
    for key in ("steps", "epochs", "val/acc_best", "test/acc", "test/loss"):
        assert metrics[0][key] == metrics[1][key], key
    weights = [
        torch.load(r / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"] for r in (run, rerun)
    ]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_the_flags_of_earlier_versions_still_set_the_groups(fake_mnist, tmp_path, capsys):
    output = str(tmp_path / "p.csv")
    old_flags = ["--save_every_n_steps=7", "--stop_on_nan=false", f"--predictions_file={output}"]
    callbacks = built(fake_mnist, *old_flags)
    assert of(callbacks, LastCheckpoint)[0].every_n_steps == 7 and of(callbacks, StopOnDivergence) == []
    assert of(callbacks, PredictionWriter)[0].output == output
    said = capsys.readouterr().err
    assert "--save_every_n_steps is deprecated and will be removed: use --last_checkpoint." in said
    assert "--stop_on_nan is deprecated and will be removed: use --divergence=null" in said

    # an older run's config.yaml has every one of them at the top level
    old = tmp_path / "old.yaml"
    old.write_text(
        "save_every_n_steps: 0\nstop_on_nan: true\ndivergence_factor: 5.0\npredictions_file: null\n"
    )
    callbacks = built(fake_mnist, "--config", str(old))
    assert of(callbacks, LastCheckpoint)[0].every_n_steps == 0
    assert of(callbacks, StopOnDivergence)[0].factor == 5.0
