"""The EMA callback: what it averages, what is validated, saved and tested."""

from functools import partial
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from conftest import quiet_trainer
from lit_mnist.callbacks import EMA
from lit_mnist.data import SPEC, MNISTDataModule
from lit_mnist.model import MNISTClassifier
from lit_mnist.nets import ConvNet


class Recorder(L.Callback):
    """The raw weights after every optimizer step, before the EMA callback sees them."""

    def __init__(self) -> None:
        self.weights = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.weights.append({k: v.detach().clone() for k, v in pl_module.net.state_dict().items()})


def small_model() -> MNISTClassifier:
    net = partial(ConvNet, channels=(4, 8), hidden=16, batch_norm=True)
    return MNISTClassifier(SPEC, net=net, channels_last=False)


def fit(tmp_path, fake_mnist, epochs=2):
    torch.manual_seed(0)
    data = MNISTDataModule(fake_mnist, val_size=50, batch_size=64, eval_batch_size=50)
    model = small_model()
    recorder, checkpoint = (
        Recorder(),
        ModelCheckpoint(tmp_path, monitor="val/acc", mode="max", save_last=True),
    )
    ema = EMA(decay=0.5)
    # the recorder runs before the EMA callback: callbacks run in list order
    trainer = quiet_trainer(
        max_epochs=epochs, callbacks=[recorder, ema, checkpoint], enable_checkpointing=True
    )
    trainer.fit(model, data)
    return trainer, model, data, recorder, checkpoint


def decay_of_update(decay: float, warmup: bool, earlier: int) -> float:
    """The decay of an update after `earlier` ones: warmed up, (1 + n) / (10 + n) up to `decay`."""
    return min(decay, (1 + earlier) / (10 + earlier)) if warmup else decay


def expected_average(weights: list[dict], decay: float, warmup: bool = True) -> dict:
    average = dict(weights[0])  # the first update copies
    for earlier, step in enumerate(weights[1:], start=1):
        d = decay_of_update(decay, warmup, earlier)
        average = {k: d * average[k] + (1 - d) * v if v.is_floating_point() else v for k, v in step.items()}
    return average


def test_the_trained_model_holds_the_moving_average(tmp_path, fake_mnist):
    trainer, model, _, recorder, _ = fit(tmp_path, fake_mnist)
    assert len(recorder.weights) == trainer.global_step == 8
    expected = expected_average(recorder.weights, 0.5)
    state = model.net.state_dict()
    for key, value in expected.items():
        if value.is_floating_point():
            torch.testing.assert_close(state[key], value, msg=key)
    raw = recorder.weights[-1]
    assert any(not torch.equal(state[k], raw[k]) for k in raw if raw[k].is_floating_point())


def test_checkpoints_hold_the_average_and_the_raw_weights(tmp_path, fake_mnist):
    _, _, _, recorder, checkpoint = fit(tmp_path, fake_mnist)
    last = torch.load(checkpoint.last_model_path, weights_only=False)
    raw = {f"net.{k}": v for k, v in recorder.weights[-1].items()}
    for key, value in raw.items():
        torch.testing.assert_close(last["current_model_state"][key], value, msg=key)
    assert any(not torch.equal(last["state_dict"][k], raw[k]) for k in raw if raw[k].is_floating_point())


def test_testing_a_checkpoint_uses_its_average(tmp_path, fake_mnist):
    """With the average of the fit still in memory, test(ckpt) must load the averaged weights."""
    trainer, model, data, _, checkpoint = fit(tmp_path, fake_mnist)
    ckpt = torch.load(checkpoint.best_model_path, weights_only=False)
    with torch.no_grad():  # make the weights in memory differ from both states of the checkpoint
        for parameter in model.parameters():
            parameter.add_(1.0)
    trainer.test(model, data, ckpt_path=checkpoint.best_model_path, verbose=False, weights_only=False)
    for key, value in ckpt["state_dict"].items():
        torch.testing.assert_close(model.state_dict()[key], value, msg=key)


def test_a_resumed_fit_continues_both_states(tmp_path, fake_mnist):
    _, _, _, _, checkpoint = fit(tmp_path, fake_mnist, epochs=1)
    saved = torch.load(checkpoint.last_model_path, weights_only=False)
    data = MNISTDataModule(fake_mnist, val_size=50, batch_size=64, eval_batch_size=50)
    model = small_model()
    ema = EMA(decay=0.5)

    class Check(L.Callback):
        def on_train_start(self, trainer, pl_module):
            for key, value in saved["current_model_state"].items():  # training goes on from the raw weights
                torch.testing.assert_close(pl_module.state_dict()[key], value, msg=key)
            average = ema._average_model.module.state_dict()
            for key, value in saved["state_dict"].items():
                torch.testing.assert_close(average[key], value, msg=key)
            self.checked = True

    check = Check()
    trainer = quiet_trainer(max_epochs=2, callbacks=[ema, check])
    trainer.fit(model, data, ckpt_path=checkpoint.last_model_path, weights_only=False)
    assert check.checked and trainer.global_step == 8


class Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


@pytest.mark.parametrize("start, warmup", [(None, True), (2, True), (None, False)])
def test_the_average_is_the_hand_computed_ema_of_weights_and_buffers(start, warmup):
    """average = d * average + (1 - d) * weights per step, for the parameters and every buffer
    (batch-norm statistics, and the truncated step count); the first update copies, steps
    before `update_starting_at_step` leave the average alone, and with warm-up d rises as
    (1 + n) / (10 + n) over the n earlier updates until it reaches `decay`."""
    torch.manual_seed(0)
    decay, module = 0.3, Tiny()
    ema = EMA(decay=decay, warmup=warmup, update_starting_at_step=start)
    ema.setup(SimpleNamespace(), module, "fit")
    expected, updated, earlier = {k: v.double() for k, v in module.state_dict().items()}, False, 0
    for step in range(6):
        with torch.no_grad():
            for tensor in module.state_dict().values():
                tensor.add_(
                    torch.randn_like(tensor) if tensor.is_floating_point() else torch.tensor(step + 1)
                )
        ema.on_train_batch_end(SimpleNamespace(global_step=step + 1), module, None, None, step)
        if start is None or step >= start:
            weights = {k: v.double() for k, v in module.state_dict().items()}
            if updated:
                d = decay_of_update(decay, warmup, earlier)
                expected = {k: d * expected[k] + (1 - d) * w for k, w in weights.items()}
                expected["net.1.num_batches_tracked"] = expected["net.1.num_batches_tracked"].trunc()
            else:
                expected = weights
            updated, earlier = True, earlier + 1
    average = ema._average_model.module.state_dict()
    assert average.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(average[key].double(), value, rtol=0, atol=1e-6, msg=key)


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5, 1.5])
def test_impossible_decay_is_rejected(decay):
    with pytest.raises(ValueError, match=f"^decay must be between 0 and 1, got {decay}$"):
        EMA(decay=decay)
