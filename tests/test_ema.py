"""The EMA callback: what it averages, what is validated, saved and tested."""

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from conftest import quiet_trainer
from lit_mnist.callbacks import EMA
from lit_mnist.data import MNISTDataModule
from lit_mnist.errors import UserError
from lit_mnist.model import MNISTClassifier
from lit_mnist.nets import ConvNet


class Recorder(L.Callback):
    """The raw weights after every optimizer step, before the EMA callback sees them."""

    def __init__(self) -> None:
        self.weights = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.weights.append({k: v.detach().clone() for k, v in pl_module.net.state_dict().items()})


def fit(tmp_path, fake_mnist, epochs=2):
    torch.manual_seed(0)
    data = MNISTDataModule(fake_mnist, val_size=50, batch_size=64, eval_batch_size=50)
    model = MNISTClassifier(net=ConvNet(channels=(4, 8), hidden=16, batch_norm=True), channels_last=False)
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


def expected_average(weights: list[dict], decay: float) -> dict:
    average = dict(weights[0])  # the first update copies
    for step in weights[1:]:
        average = {
            k: decay * average[k] + (1 - decay) * v if v.is_floating_point() else v for k, v in step.items()
        }
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
    model = MNISTClassifier(net=ConvNet(channels=(4, 8), hidden=16, batch_norm=True), channels_last=False)
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


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5])
def test_impossible_decay_is_rejected(decay):
    with pytest.raises(UserError, match="EMA decay"):
        EMA(decay=decay)
