"""The command line as a user runs it, in subprocesses, on the synthetic IDX files."""

import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from conftest import ROOT, SMALL, run_cli
from lit_mnist import precision
from lit_mnist.cli import fastest_precision
from lit_mnist.data import SPEC
from lit_mnist.nets import ConvNet

DEFAULT = str(ROOT / "configs" / "default.yaml")
QUICK = ["--config", DEFAULT, "--config", str(ROOT / "configs" / "experiments" / "quick.yaml")]
# every fit config (the sweeps' search spaces are not fit configs: tests/test_sweep.py loads them)
# folder.yaml reads a folder of images, not the IDX files: tests/test_folder.py runs it; the debug
# and callback presets run as they are in tests/test_presets.py
CONFIGS = sorted(
    p
    for p in (ROOT / "configs").rglob("*.yaml")
    if not {"sweeps", "debug", "callbacks"} & set(p.parts) and p.stem != "folder"
)


@pytest.fixture(scope="module")
def quick_run(fake_mnist, tmp_path_factory):
    """Two epochs of the quick config: (working folder, run folder, completed process)."""
    cwd = tmp_path_factory.mktemp("quick")
    result = run_cli(
        "fit", *QUICK, f"--data.data_dir={fake_mnist}", *SMALL, "--trainer.max_epochs=2", cwd=cwd
    )
    return cwd, cwd / "logs" / "quick" / "version_0", result


def best_checkpoint(run_dir: Path) -> Path:
    (best,) = [p for p in (run_dir / "checkpoints").iterdir() if p.name != "last.ckpt"]
    return best


def test_fit_writes_the_run_folder(quick_run):
    cwd, run_dir, result = quick_run
    assert sorted(p.name for p in (cwd / "logs").rglob("version_*")) == ["version_0"]
    assert (run_dir / "config.yaml").is_file()
    assert list(run_dir.glob("events.out.tfevents.*"))
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # the best epoch's number, step and validation accuracy are spelled out in the name
    best = re.fullmatch(r"epoch(\d\d)-step(\d{6})-val_acc(\d\.\d{4})\.ckpt", best_checkpoint(run_dir).name)
    assert best and (int(best[1]) + 1) * 4 == int(best[2]), best_checkpoint(run_dir).name
    assert float(best[3]) == pytest.approx(metrics["val/acc_best"], abs=1e-4)
    assert (metrics["epochs"], metrics["steps"]) == (2, 8)
    for key in ("test/acc", "test/loss", "val/acc_best"):
        assert 0.0 <= metrics[key] <= 10.0, key
    assert metrics["wall_seconds"] > 0 and metrics["hardware"]["accelerator"] == "cpu"
    assert metrics["hardware"]["cpu_count"] >= 1
    assert f"Run folder: {Path('logs/quick/version_0')}" in result.stdout


def test_checkpoint_holds_model_optimizer_epoch_and_arguments(quick_run):
    _, run_dir, _ = quick_run
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    assert any(k.startswith("net.features.0.") for k in ckpt["state_dict"])
    assert ckpt["optimizer_states"][0]["param_groups"][0]["name"] == "features"
    assert (ckpt["epoch"], ckpt["global_step"]) == (1, 8)
    assert ckpt["hyper_parameters"]["optimizer"]["class_path"] == "torch.optim.Adam"
    assert ckpt["hyper_parameters"]["net"]["class_path"] in ("lit_mnist.ConvNet", "lit_mnist.nets.ConvNet")
    spec = ckpt["hyper_parameters"]["data"]  # the net's input shape and normalisation travel along
    assert (spec.shape, spec.class_names) == (SPEC.shape, tuple(map(str, range(10)))) and spec.std[0] > 0
    assert ckpt["datamodule_hyper_parameters"]["batch_size"] == 64


def test_tensorboard_holds_curves_learning_rates_and_hparams(quick_run):
    _, run_dir, _ = quick_run
    scalars, hparams = set(), {}
    for events in run_dir.glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        scalars |= set(accumulator.Tags()["scalars"])
        try:
            written = accumulator.PluginTagToContent("hparams")
        except KeyError:  # this file holds scalars only
            written = {}
        hparams |= {tag: HParamsPluginData.FromString(content) for tag, content in written.items()}
    expected = {
        "train/loss",
        "train/acc",
        "val/loss",
        "val/acc",
        "val/acc_best",
        "test/loss",
        "test/acc",
        "lr-Adam/features",
        "lr-Adam/classifier",
        "lr-Adam/features_no_decay",
    }
    assert expected <= scalars
    start = hparams["_hparams_/session_start_info"].session_start_info.hparams
    assert start["data/batch_size"].number_value == 64
    assert start["model/optimizer/class_path"].string_value == "torch.optim.Adam"
    metric_tags = {m.name.tag for m in hparams["_hparams_/experiment"].experiment.metric_infos}
    assert {"test/acc", "test/loss", "val/acc_best"} <= metric_tags


@pytest.mark.parametrize("subcommand", ["validate", "test", "predict"])
def test_subcommands_from_a_checkpoint(quick_run, fake_mnist, subcommand):
    cwd, run_dir, _ = quick_run
    config_before = (run_dir / "config.yaml").read_text()
    result = run_cli(
        subcommand,
        "--config",
        str(run_dir / "config.yaml"),
        f"--data.data_dir={fake_mnist}",
        "--ckpt_path",
        str(best_checkpoint(run_dir)),
        cwd=cwd,
    )
    expected = {"validate": "val/acc", "test": "test/acc", "predict": "Predicted 100 images"}[subcommand]
    assert expected in result.stdout
    assert (run_dir / "config.yaml").read_text() == config_before
    assert sorted(p.name for p in (cwd / "logs").rglob("version_*")) == ["version_0"]


def test_print_config_loads_back(fake_mnist, tmp_path):
    printed = run_cli(
        "fit",
        *QUICK,
        "--model.optimizer=torch.optim.SGD",
        "--model.optimizer.lr=0.02",
        "--print_config",
        cwd=tmp_path,
    ).stdout
    (tmp_path / "printed.yaml").write_text(printed)
    again = run_cli("fit", "--config", "printed.yaml", "--print_config", cwd=tmp_path).stdout
    assert yaml.safe_load(again) == yaml.safe_load(printed)
    assert yaml.safe_load(printed)["model"]["optimizer"]["init_args"]["lr"] == 0.02
    run_cli(
        "fit",
        "--config",
        "printed.yaml",
        f"--data.data_dir={fake_mnist}",
        *SMALL,
        "--trainer.fast_dev_run=true",
        cwd=tmp_path,
    )


def test_code_defaults_are_the_default_config(tmp_path):
    bare = yaml.safe_load(run_cli("fit", "--print_config", cwd=tmp_path).stdout)
    seeded = yaml.safe_load(run_cli("fit", "--config", DEFAULT, "--print_config", cwd=tmp_path).stdout)
    net = seeded["model"].pop("net")
    bare["model"].pop("net")
    assert bare == seeded
    assert net["class_path"] in ("lit_mnist.ConvNet", "lit_mnist.nets.ConvNet")
    defaults = {k: p.default for k, p in inspect.signature(ConvNet).parameters.items() if k != "data"}
    assert {k: tuple(v) if isinstance(v, list) else v for k, v in net["init_args"].items()} == defaults


@pytest.mark.parametrize("config", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_config_runs_a_fast_dev_run(config, fake_mnist, tmp_path):
    overlay = [] if config == Path(DEFAULT) else ["--config", str(config)]
    result = run_cli(
        "fit",
        "--config",
        DEFAULT,
        *overlay,
        f"--data.data_dir={fake_mnist}",
        *SMALL,
        "--trainer.fast_dev_run=true",
        cwd=tmp_path,
    )
    assert "test/acc" in result.stdout
    assert list(tmp_path.iterdir()) == []  # a smoke run leaves no files behind


def test_auto_precision_is_measured_and_recorded(quick_run):
    """The precision and layout auto_precision timed fastest are the ones the run used, recorded in
    config.yaml (so the config reproduces the run) and in the cache the next run reads."""
    _, run_dir, _ = quick_run
    hardware = json.loads((run_dir / "metrics.json").read_text())["hardware"]
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["trainer"]["precision"] == hardware["precision"]
    assert isinstance(config["model"]["channels_last"], bool)
    used = hardware["precision"] + ("+cl" if config["model"]["channels_last"] else "")
    entries = json.loads(precision.cache_path().read_text()).values()  # other tests' nets too
    fastest = [min(e["timings"], key=e["timings"].get) for e in entries if len(e["timings"]) == 4]
    assert used in fastest


def test_explicit_precision_and_threads_win(fake_mnist, tmp_path):
    flags = [
        "--trainer.precision=32-true",
        "--model.channels_last=false",
        "--threads=1",
        "--trainer.max_epochs=1",
    ]
    result = run_cli("fit", *QUICK, f"--data.data_dir={fake_mnist}", *SMALL, *flags, cwd=tmp_path)
    assert "auto_precision" not in result.stderr  # nothing left to measure
    hardware = json.loads((tmp_path / "logs" / "quick" / "version_0" / "metrics.json").read_text())[
        "hardware"
    ]
    assert (hardware["precision"], hardware["torch_threads"]) == ("32-true", 1)


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16-mixed"), (False, "32-true")])
def test_cpu_precision_follows_native_bf16(monkeypatch, native, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: native, raising=False)
    assert fastest_precision("auto") == expected
    assert fastest_precision("cpu") == expected


def test_runs_without_a_logger(fake_mnist, tmp_path):
    args = [
        *QUICK,
        f"--data.data_dir={fake_mnist}",
        *SMALL,
        "--trainer.logger=false",
        "--trainer.max_epochs=1",
    ]
    result = run_cli("fit", *args, cwd=tmp_path)
    assert "test/acc" in result.stdout


def test_resume_continues_in_the_same_run_folder(fake_mnist, tmp_path):
    args = [*QUICK, f"--data.data_dir={fake_mnist}", *SMALL]
    run_cli("fit", *args, "--trainer.max_epochs=1", cwd=tmp_path)
    result = run_cli("fit", *args, "--trainer.max_epochs=2", "--ckpt_path", "last", cwd=tmp_path)
    assert "Restoring states from the checkpoint" in result.stdout + result.stderr
    assert sorted(p.name for p in (tmp_path / "logs").rglob("version_*")) == ["version_0"]
    metrics = json.loads((tmp_path / "logs" / "quick" / "version_0" / "metrics.json").read_text())
    assert (metrics["epochs"], metrics["steps"]) == (2, 8)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--data.download=false"], "error: --data.data_dir "),
        (["--data.batch_size=0"], "error: --data.batch_size must be at least 1, got 0"),
        (["--ckpt_path", "nowhere.ckpt"], "error: --ckpt_path nowhere.ckpt: no such checkpoint file"),
        (["--ckpt_path", "last"], "error: --ckpt_path last: no run under logs/default"),
    ],
)
def test_user_errors_are_one_line(tmp_path, flags, message):
    result = run_cli(
        "fit", "--config", DEFAULT, f"--data.data_dir={tmp_path}", *flags, cwd=tmp_path, check=False
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(message)


def test_console_script_and_make_pass_flags_through():
    script = Path(sys.executable).parent / "lit-mnist"
    assert "fit" in subprocess.run([script, "--help"], capture_output=True, text=True, check=True).stdout
    dry = subprocess.run(
        ["make", "-n", "train", "DATA_DIR=/somewhere", "ARGS=--trainer.max_epochs=1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "fit --config configs/default.yaml --data.data_dir=/somewhere --trainer.max_epochs=1" in dry
