import math
from functools import partial

import lightning as L
import pytest
import torch
from torch.optim import lr_scheduler

from conftest import quiet_trainer
from lit_mnist.data import SPEC, MNISTDataModule
from lit_mnist.model import MNISTClassifier
from lit_mnist.nets import MLP
from lit_mnist.optim import GroupSettings, LinearWarmup, ScheduleSettings, WarmupCosineLR

BASE = 0.1
BATCHES = 4  # training batches per epoch
EPOCHS = 3
EVERY_STEP = ScheduleSettings(interval="step")


class RecordLR(L.Callback):
    """The learning rate of every group at the start of every training batch."""

    def __init__(self):
        self.lrs: list[dict[str, float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lrs.append({g["name"]: g["lr"] for g in trainer.optimizers[0].param_groups})


def fit(fake_mnist, scheduler, accumulate=1, **model_kwargs) -> list[dict[str, float]]:
    model = MNISTClassifier(
        SPEC,
        net=partial(MLP, hidden=(16,)),
        optimizer=partial(torch.optim.SGD, lr=BASE),
        scheduler=scheduler,
        **model_kwargs,
    )
    recorder = RecordLR()
    trainer = quiet_trainer(
        max_epochs=EPOCHS,
        limit_train_batches=BATCHES,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        accumulate_grad_batches=accumulate,
        callbacks=[recorder],
    )
    trainer.fit(model, MNISTDataModule(data_dir=str(fake_mnist), val_size=50, batch_size=25))
    return recorder.lrs


def classifier(lrs):
    return [round(step["classifier"], 10) for step in lrs]


def per_epoch(*values):
    return [round(v, 10) for v in values for _ in range(BATCHES)]


def test_steplr_per_epoch(fake_mnist):
    lrs = fit(fake_mnist, partial(lr_scheduler.StepLR, step_size=1, gamma=0.5))
    assert classifier(lrs) == per_epoch(BASE, BASE / 2, BASE / 4)


def test_frequency_steps_every_n_intervals(fake_mnist):
    lrs = fit(
        fake_mnist,
        partial(lr_scheduler.StepLR, step_size=1, gamma=0.5),
        schedule=ScheduleSettings(frequency=2),
    )
    assert classifier(lrs) == per_epoch(BASE, BASE, BASE / 2)


def test_multisteplr(fake_mnist):
    lrs = fit(fake_mnist, partial(lr_scheduler.MultiStepLR, milestones=[2], gamma=0.1))
    assert classifier(lrs) == per_epoch(BASE, BASE, BASE * 0.1)


def test_cosine_annealing_per_epoch(fake_mnist):
    lrs = fit(fake_mnist, partial(lr_scheduler.CosineAnnealingLR, T_max=2))
    assert classifier(lrs) == per_epoch(BASE, BASE / 2, 0.0)


def test_exponentiallr_per_step(fake_mnist):
    lrs = fit(fake_mnist, partial(lr_scheduler.ExponentialLR, gamma=0.9), schedule=EVERY_STEP)
    assert classifier(lrs) == [round(BASE * 0.9**k, 10) for k in range(BATCHES * EPOCHS)]


def test_step_schedulers_count_optimizer_steps_under_accumulation(fake_mnist):
    lrs = fit(fake_mnist, partial(lr_scheduler.ExponentialLR, gamma=0.9), schedule=EVERY_STEP, accumulate=2)
    assert classifier(lrs) == [round(BASE * 0.9 ** (k // 2), 10) for k in range(BATCHES * EPOCHS)]


def test_lambdalr_linear_warmup(fake_mnist):
    lrs = fit(fake_mnist, partial(lr_scheduler.LambdaLR, lr_lambda=LinearWarmup(5)), schedule=EVERY_STEP)
    assert classifier(lrs)[:7] == [round(BASE * f, 10) for f in (0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 1.0)]


@pytest.mark.parametrize(("monitor", "mode"), [("val/loss", "min"), ("val/acc", "max")])
def test_reduce_on_plateau_watches_the_monitor(fake_mnist, monitor, mode):
    # an absolute threshold of 10 means no epoch counts as an improvement after the first
    plateau = partial(
        lr_scheduler.ReduceLROnPlateau, mode=mode, factor=0.5, patience=0, threshold=10, threshold_mode="abs"
    )
    lrs = fit(fake_mnist, plateau, schedule=ScheduleSettings(monitor=monitor))
    assert classifier(lrs) == per_epoch(BASE, BASE, BASE / 2)


def test_onecycle_derives_total_steps_and_keeps_group_ratios(fake_mnist):
    onecycle = partial(lr_scheduler.OneCycleLR, max_lr=1.0, pct_start=0.25)
    lrs = fit(fake_mnist, onecycle, schedule=EVERY_STEP, features=GroupSettings(lr_mult=0.1))
    assert len(lrs) == BATCHES * EPOCHS  # one more scheduler step than total_steps would raise
    for step in lrs:
        assert step["features"] == pytest.approx(0.1 * step["classifier"])
    assert max(classifier(lrs)) == pytest.approx(1.0)  # the peak is reached, at pct_start
    assert classifier(lrs)[-1] < 1e-3


def test_warmup_cosine_ends_at_the_last_step(fake_mnist):
    lrs = fit(fake_mnist, partial(WarmupCosineLR, warmup_steps=2), schedule=EVERY_STEP)
    values = classifier(lrs)
    assert values[0] == pytest.approx(BASE / 2) and values[1] == pytest.approx(BASE)
    assert values[1:] == sorted(values[1:], reverse=True)
    assert values[-1] == pytest.approx(BASE * (1 + math.cos(0.9 * math.pi)) / 2)
