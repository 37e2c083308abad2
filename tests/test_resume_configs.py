"""Every shipped recipe that trains on the MNIST family resumes exactly: stopped by SIGTERM, resumed,
killed with SIGKILL, resumed again, it ends with the weights, optimizer and scheduler state, metrics
and curves of the same run left alone. A new config in configs/experiments/ is covered by being
there; the flags below only shorten it."""

from pathlib import Path

import pytest
import torch
import yaml

from conftest import ROOT
from test_resume import assert_same_run, run_outcome


def reads_mnist_family(config: Path) -> bool:
    data = (yaml.safe_load(config.read_text()) or {}).get("data") or {}
    return "MNIST" in data.get("class_path", "MNIST")


EXPERIMENTS = sorted(p for p in (ROOT / "configs/experiments").glob("*.yaml") if reads_mnist_family(p))
CONFIGS = [ROOT / "configs/default.yaml", *EXPERIMENTS]


def shortened(config: Path, data: Path) -> list[str]:
    """The config's own fit on the synthetic digits, cut to at most 36 optimizer steps of batch 16
    (16 batches an epoch), in fp32, with last.ckpt every 5 steps and every step's loss logged."""
    overlay = [] if config.name == "default.yaml" else ["--config", str(config)]
    flags = [
        "fit", "--config", str(ROOT / "configs/default.yaml"), *overlay,
        f"--data.data_dir={data}", "--data.val_size=50", "--data.eval_batch_size=50",
        "--data.batch_size=16", "--trainer.max_steps=36", "--trainer.precision=32-true",
        "--last_checkpoint.every_n_steps=5", "--trainer.log_every_n_steps=1",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
    ]  # fmt: skip
    trainer = (yaml.safe_load(config.read_text()) or {}).get("trainer") or {}
    if trainer.get("max_epochs") == -1:  # iteration-based: validate within the shortened run
        flags.append("--trainer.val_check_interval=10")
    return flags


def run_folder(cwd: Path) -> Path:
    (run,) = (cwd / "logs").glob("*/version_0")
    return run


def training_state(cwd: Path) -> dict:
    """What last.ckpt holds beyond the weights: optimizer, scheduler and EMA states."""
    last = torch.load(run_folder(cwd) / "checkpoints" / "last.ckpt", weights_only=False)
    ema = {k: v for k, v in last["callbacks"].items() if k.startswith("EMA")}
    return {"optimizer": last["optimizer_states"], "schedulers": last.get("lr_schedulers"), "ema": ema}


def assert_equal_nested(actual, expected, where: str = "") -> None:
    if isinstance(expected, torch.Tensor):
        assert torch.equal(actual, expected), where
    elif isinstance(expected, dict):
        assert actual.keys() == expected.keys(), where
        for key in expected:
            assert_equal_nested(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list | tuple):
        assert len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_equal_nested(a, e, f"{where}[{i}]")
    elif callable(expected):  # a LambdaLR's lr_lambda objects: compared by their state
        assert type(actual) is type(expected), where
    else:
        assert actual == expected, where


@pytest.mark.parametrize("config", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_recipe_resumes_exactly(config, fork_server, fake_mnist, tmp_path):
    flags = shortened(config, fake_mnist)
    alone, stopped = tmp_path / "alone", tmp_path / "stopped"
    alone.mkdir()
    stopped.mkdir()
    result = fork_server.run(flags, cwd=alone)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = run_outcome(run_folder(alone))
    steps = expected[1]["steps"]
    term_step, kill_step = steps // 3 + 1, 2 * steps // 3 + 1
    assert 0 < term_step < kill_step < steps

    term = fork_server.run(
        [*flags, "--trainer.callbacks+=killer.SignalAtStep", f"--trainer.callbacks.step={term_step}"],
        cwd=stopped,
    )
    assert term.returncode == 143, term.stderr[-3000:]
    kill = ["--trainer.callbacks+=killer.KillAtStep", f"--trainer.callbacks.step={kill_step}"]
    killed = fork_server.run([*flags, "--ckpt_path=last", *kill], cwd=stopped)
    assert killed.returncode == -9, killed.stderr[-3000:]
    saved = torch.load(run_folder(stopped) / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]
    assert term_step < saved <= kill_step  # resumed from a checkpoint the resumed run wrote
    resumed = fork_server.run([*flags, "--ckpt_path=last"], cwd=stopped)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    assert_same_run(run_outcome(run_folder(stopped)), expected)
    assert_equal_nested(training_state(stopped), training_state(alone))
