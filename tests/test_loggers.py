"""The run folder, metrics.json, config.yaml, the figures, `--ckpt_path last` and resuming into the
same folder, with each logger of configs/loggers/: real short runs on the synthetic digits."""

import csv
import json
import os
from pathlib import Path

import pytest
import torch

from conftest import ROOT, SMALL, run_cli
from lit_mnist.errors import UserError
from lit_mnist.loggers import CSVLogger
from lit_mnist.tools.events import read_scalars, wandb_records
from lit_mnist.tools.runs import newest_last_checkpoint


def fit(cwd: Path, data: Path, logger: str, epochs: int, *extra: str) -> str:
    return run_cli(
        "fit", "--config", str(ROOT / "configs/default.yaml"),
        "--config", str(ROOT / f"configs/loggers/{logger}.yaml"),
        f"--data.data_dir={data}", "--data.batch_size=50", f"--trainer.max_epochs={epochs}",
        "--model.net.init_args.channels=[4, 8]", "--model.net.init_args.hidden=16",
        "--trainer.precision=32-true", *SMALL, *extra, cwd=cwd,
    ).stdout  # fmt: skip


def runs(mlruns: Path) -> list[Path]:
    return [c.parent.parent.resolve() for c in mlruns.glob("*/*/checkpoints/last.ckpt")]


def folder_printed(stdout: str) -> Path:
    return Path(next(line for line in stdout.splitlines() if line.startswith("Run folder: ")).split(": ")[1])


def assert_run_record(run: Path, epochs: int) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == epochs
    assert 0 <= metrics["test/acc"] <= 1
    assert metrics["diagnosis"]
    assert (run / "config.yaml").is_file()
    # the curves the diagnosis read: every epoch, those before a resume too
    curves = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["callbacks"]["RunSummary"]
    assert sorted(curves["train"]) == list(range(epochs))
    assert len(curves["val"]) == epochs
    return metrics


def test_csv_logger_runs_and_resumes_in_its_folder(fake_mnist, tmp_path):
    first = fit(tmp_path, fake_mnist, "csv", 2)
    run = tmp_path / "logs" / "default" / "version_0"
    assert folder_printed(first) == Path("logs/default/version_0")
    assert_run_record(run, 2)
    assert len(list((run / "figures").glob("val_confusion_matrix_step*.png"))) == 2

    fit(tmp_path, fake_mnist, "csv", 3, "--ckpt_path", "last")
    assert sorted(p.name for p in run.parent.iterdir()) == ["version_0"]
    assert_run_record(run, 3)
    with (run / "metrics.csv").open(newline="") as file:
        val_steps = [int(row["step"]) for row in csv.DictReader(file) if row["val/loss"]]
    assert len(val_steps) == 3 and val_steps == sorted(set(val_steps))  # the first two epochs kept
    plotted = run_cli("plots", str(run), cwd=tmp_path).stdout  # the curves, read from metrics.csv
    assert "Diagnosis: " in plotted and (run / "plots" / "loss.png").is_file()


def test_mlflow_logger_runs_and_resumes_in_its_run(fake_mnist, tmp_path):
    if os.environ.get("LIT_MNIST_REQUIRE_DATA") != "1":
        pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    first = fit(tmp_path, fake_mnist, "mlflow", 2)
    [run] = runs(tmp_path / "mlruns")
    assert (tmp_path / folder_printed(first)).resolve() == run
    record = assert_run_record(run, 2)
    assert len(list((run / "artifacts" / "val" / "confusion_matrix").glob("*.png"))) == 2
    assert (run / "artifacts" / "diagnosis.txt").read_text().strip() == record["diagnosis"].strip() != ""
    assert (run / "params" / "trainer" / "max_epochs").read_text() == "2"

    fit(tmp_path, fake_mnist, "mlflow", 3, "--ckpt_path", "last")
    assert runs(tmp_path / "mlruns") == [run]
    assert_run_record(run, 3)
    val_loss = (run / "metrics" / "val" / "loss").read_text().splitlines()
    steps = [int(line.split()[2]) for line in val_loss]  # "timestamp value step"
    assert len(steps) == 3 and steps == sorted(set(steps))
    assert [step for step, _ in read_scalars(run)["val/loss"]] == steps


def test_wandb_logger_runs_offline_and_resumes_its_run(fake_mnist, tmp_path, monkeypatch):
    if os.environ.get("LIT_MNIST_REQUIRE_DATA") != "1":
        pytest.importorskip("wandb", reason="the wandb extra is not installed")
    monkeypatch.setenv("WANDB_SILENT", "true")
    first = fit(tmp_path, fake_mnist, "wandb", 2)
    run = tmp_path / folder_printed(first)
    assert run.parent == tmp_path / "logs" / "default" and run.name != ""
    record = assert_run_record(run, 2)
    [part] = wandb_records(run)  # logs/wandb/offline-run-<time>-<id>/run-<id>.wandb
    assert part.parent.name.startswith("offline-run-") and part.parent.parent == tmp_path / "logs" / "wandb"
    media = part.parent / "files" / "media"
    assert len(list((media / "images" / "val").glob("confusion_matrix_*.png"))) == 2
    [table] = (media / "table").glob("diagnosis_*.table.json")
    assert json.loads(table.read_text())["data"] == [[record["diagnosis"]]]
    val_steps = [step for step, _ in read_scalars(run)["val/loss"]]  # from the W&B record itself
    assert len(val_steps) == 2

    fit(tmp_path, fake_mnist, "wandb", 3, "--ckpt_path", "last")
    assert [p.name for p in run.parent.iterdir()] == [run.name]  # the same run folder, the same id
    assert_run_record(run, 3)
    assert len(wandb_records(run)) == 2
    val = read_scalars(run)["val/loss"]
    assert [step for step, _ in val][:2] == val_steps and len(val) == 3
    plotted = run_cli("plots", str(run), cwd=tmp_path).stdout  # the curves, read from the W&B record
    assert "Diagnosis: " in plotted and (run / "plots" / "loss.png").is_file()


def test_two_loggers_write_one_run_folder_and_resume_into_it(fake_mnist, tmp_path):
    (tmp_path / "logs" / "default" / "version_0").mkdir(parents=True)  # an earlier run: both count on
    first = fit(tmp_path, fake_mnist, "many", 2)
    run = tmp_path / "logs" / "default" / "version_1"
    assert folder_printed(first) == Path("logs/default/version_1")
    assert sorted(p.name for p in run.parent.iterdir()) == ["version_0", "version_1"]
    assert_run_record(run, 2)
    assert any(run.glob("events.out.tfevents.*")) and (run / "metrics.csv").is_file()
    assert not (run / "figures").exists()  # TensorBoard takes the figures: no PNG copies

    fit(tmp_path, fake_mnist, "many", 3, "--ckpt_path", "last")
    assert sorted(p.name for p in run.parent.iterdir()) == ["version_0", "version_1"]
    assert_run_record(run, 3)
    with (run / "metrics.csv").open(newline="") as file:
        csv_steps = [int(row["step"]) for row in csv.DictReader(file) if row["val/loss"]]
    tensorboard_steps = [step for step, _ in read_scalars(run)["val/loss"]]
    assert len(csv_steps) == 3 and csv_steps == tensorboard_steps


def test_csv_logger_keeps_the_rows_before_the_purge_step(tmp_path):
    run = tmp_path / "exp" / "version_0"
    run.mkdir(parents=True)
    rows = "step,train/loss\n" + "".join(f"{step},{step / 10}\n" for step in range(10))
    (run / "metrics.csv").write_text(rows)
    logger = CSVLogger(str(tmp_path), name="exp", version="version_0", purge_step=6)
    logger.log_metrics({"train/loss": 0.25}, step=6)
    logger.save()
    with (run / "metrics.csv").open(newline="") as file:
        written = [(int(r["step"]), float(r["train/loss"])) for r in csv.DictReader(file)]
    assert written == [(step, step / 10) for step in range(6)] + [(6, 0.25)]


def test_ckpt_path_last_needs_a_logger_with_run_folders(tmp_path):
    with pytest.raises(UserError, match="give the checkpoint's path"):
        newest_last_checkpoint(None)
    with pytest.raises(UserError, match="no run under"):
        newest_last_checkpoint(tmp_path)
