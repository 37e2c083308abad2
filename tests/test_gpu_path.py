"""What keeps a GPU step from waiting on Python: the template's progress bar, which shows the step
loss without making it a per-batch progress-bar metric (Lightning copies those back from the
device after every batch), and Adam fused into one kernel on a GPU."""

import contextlib
import io

import pytest
import torch
from lightning.pytorch.callbacks import ProgressBar as LightningProgressBar

from conftest import ROOT, SMALL
from lit_mnist.callbacks.progress import ProgressBar
from lit_mnist.cli import MNISTCLI
from lit_mnist.model import STEP_LOSS, fused_on_gpu


def fit(fake_mnist, tmp_path, *flags: str) -> MNISTCLI:
    small = [flag for flag in SMALL if "progress_bar" not in flag]
    cli = MNISTCLI(
        args=[
            "--config", str(ROOT / "configs/default.yaml"),
            f"--data.data_dir={fake_mnist}", *small,
            "--model.net.init_args.channels=[4, 8]", "--model.net.init_args.hidden=16",
            "--trainer.max_epochs=1", "--trainer.log_every_n_steps=1", "--trainer.limit_val_batches=0",
            f"--trainer.logger.init_args.save_dir={tmp_path}", "--trainer.precision=32-true",
            "--model.channels_last=false", "--test_after_fit=false", *flags,
        ],
        run=False,
    )  # fmt: skip
    bar = io.StringIO()  # Lightning's tqdm bars write to stdout
    with contextlib.redirect_stdout(bar), contextlib.redirect_stderr(bar):
        cli.trainer.fit(cli.model, cli.datamodule)
    cli.bar_output = bar.getvalue()
    return cli


def test_the_bar_shows_the_step_loss_that_is_no_progress_bar_metric(fake_mnist, tmp_path):
    cli = fit(fake_mnist, tmp_path)
    trainer = cli.trainer
    bars = [c for c in trainer.callbacks if isinstance(c, LightningProgressBar)]
    assert len(bars) == 1 and type(bars[0]) is ProgressBar
    assert STEP_LOSS in trainer.callback_metrics
    assert STEP_LOSS not in trainer.progress_bar_metrics
    shown = bars[0].get_metrics(trainer, cli.model)[STEP_LOSS]
    assert float(shown) == pytest.approx(float(trainer.callback_metrics[STEP_LOSS]), rel=1e-2)
    assert f"{STEP_LOSS}=" in cli.bar_output


def test_rich_is_replaced_unless_asked_for(fake_mnist, tmp_path):
    pytest.importorskip("rich")  # Lightning's default bar is a RichProgressBar only where rich is installed
    from lightning.pytorch.callbacks import RichProgressBar

    default = fit(fake_mnist, tmp_path / "default")
    assert [type(c) for c in default.trainer.callbacks if isinstance(c, LightningProgressBar)] == [
        ProgressBar
    ]
    asked = fit(
        fake_mnist, tmp_path / "asked", "--trainer.callbacks=lightning.pytorch.callbacks.RichProgressBar"
    )
    assert [type(c) for c in asked.trainer.callbacks if isinstance(c, LightningProgressBar)] == [
        RichProgressBar
    ]


@pytest.mark.parametrize(
    ("flags", "fused"),
    [
        ([], True),
        (["--model.optimizer=torch.optim.AdamW"], True),
        (["--model.optimizer.init_args.fused=false"], False),
        (["--model.optimizer.init_args.foreach=true"], False),
        (["--model.optimizer=torch.optim.SGD", "--model.optimizer.init_args.lr=0.1"], False),
        (["--model.optimizer=torch.optim.RMSprop"], False),
    ],
)
def test_adam_is_fused_on_a_gpu_unless_told_otherwise(fake_mnist, flags, fused):
    cli = MNISTCLI(
        args=["--config", str(ROOT / "configs/default.yaml"), f"--data.data_dir={fake_mnist}",
              "--trainer.logger=false", *SMALL, *flags],
        run=False,
    )  # fmt: skip
    factory = cli.model.optimizer_factory
    assert fused_on_gpu(factory, torch.device("cuda")) == ({"fused": True} if fused else {})
    assert fused_on_gpu(factory, torch.device("cpu")) == {}
