import re
from functools import partial

import lightning as L
import pytest
import torch
from torch import nn

from conftest import quiet_trainer
from lit_mnist.data import SPEC, MNISTDataModule
from lit_mnist.errors import ParameterError
from lit_mnist.model import MNISTClassifier
from lit_mnist.nets import MLP, ConvNet
from lit_mnist.optim import GroupSettings, LRScaling, ScheduleSettings


def test_seed_cnn_architecture():
    net = ConvNet(SPEC)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (1, 32, (3, 3), (1, 1)),
        (32, 64, (3, 3), (1, 1)),
    ]
    assert [(fc.in_features, fc.out_features) for fc in linears] == [(3136, 128), (128, 10)]
    assert sum(p.numel() for p in net.parameters()) == 421_642
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_batch_norm_and_dropout_are_options():
    net = ConvNet(SPEC, batch_norm=True, dropout=0.3)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 2
    assert all(m.p == 0.3 for m in net.modules() if isinstance(m, nn.Dropout))
    assert not any(
        isinstance(m, nn.BatchNorm2d | nn.Dropout) and getattr(m, "p", 1) > 0 for m in ConvNet(SPEC).modules()
    )


def test_label_smoothing_changes_the_loss():
    torch.manual_seed(0)
    batch = (torch.randn(8, 1, 28, 28), torch.arange(8))
    plain, smooth = MNISTClassifier(SPEC), MNISTClassifier(SPEC, label_smoothing=0.1)
    smooth.load_state_dict(plain.state_dict())
    logits = plain(batch[0])
    expected = nn.functional.cross_entropy(logits, batch[1], label_smoothing=0.1)
    plain.log = smooth.log = lambda *args, **kwargs: None  # no trainer attached
    assert torch.isclose(smooth.shared_step(batch, smooth.train_metrics)[0], expected)
    assert not torch.isclose(plain.shared_step(batch, plain.train_metrics)[0], expected)


def test_epoch_metrics_weigh_every_sample_the_same():
    """The epoch's loss and accuracy are per-sample means, with a short last batch, in training
    (running sums handed over at the epoch's end or when the state is saved) as in validation."""
    torch.manual_seed(0)
    model = MNISTClassifier(SPEC)
    batches = [(torch.randn(n, 1, 28, 28), torch.randint(0, 10, (n,))) for n in (16, 16, 3)]
    images, labels = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    with torch.no_grad():
        logits = model(images)
        loss = nn.functional.cross_entropy(logits, labels)
        accuracy = (logits.argmax(dim=1) == labels).float().mean()
        for stage in ("train", "val"):
            metrics = getattr(model, f"{stage}_metrics")
            model.shared_step(batches[0], metrics)
            saved = model.state_dict()  # mid-epoch: the running sums go with the state
            if stage == "train":
                assert saved["train_metrics.loss.weight"] == 16
            for batch in batches[1:]:
                model.shared_step(batch, metrics)
            model._hand_over()
            values = metrics.compute()
            assert torch.isclose(values[f"{stage}/loss"], loss), stage
            assert torch.isclose(values[f"{stage}/acc"], accuracy), stage


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"features": GroupSettings(lr_mult=-1)}, "features.lr_mult must be 0 or more, got -1"),
        ({"classifier": GroupSettings(lr_mult=-0.5)}, "classifier.lr_mult must be 0 or more, got -0.5"),
        ({"schedule": ScheduleSettings(frequency=0)}, "schedule.frequency must be at least 1, got 0"),
        (
            {"lr_scaling": LRScaling(reference_batch=0)},
            "lr_scaling.reference_batch must be at least 1, got 0",
        ),
    ],
)
def test_impossible_settings_are_rejected(settings, expected):
    with pytest.raises(ParameterError, match=f"^{re.escape(expected)}$"):
        MNISTClassifier(SPEC, **settings)


def test_val_acc_best_ignores_sanity_check_and_tracks_the_max(fake_mnist):
    model = MNISTClassifier(
        SPEC, net=partial(MLP, hidden=(32,)), optimizer=partial(torch.optim.Adam, lr=3e-3)
    )
    seen = []

    class Watch(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):  # after this epoch's validation
            seen.append(
                (float(trainer.callback_metrics["val/acc"]), float(trainer.callback_metrics["val/acc_best"]))
            )

    trainer = quiet_trainer(
        max_epochs=4,
        num_sanity_val_steps=2,
        callbacks=[Watch()],
    )
    trainer.fit(model, MNISTDataModule(data_dir=str(fake_mnist), val_size=50, batch_size=32))
    accuracies = [acc for acc, _ in seen]
    assert [best for _, best in seen] == pytest.approx([max(accuracies[: i + 1]) for i in range(4)])
    assert "val_acc_best.max_value" in model.state_dict()  # kept across a resume


def test_the_model_learns_the_synthetic_digits(fake_mnist):
    torch.manual_seed(0)
    model = MNISTClassifier(
        SPEC, net=partial(ConvNet, channels=(8, 16), hidden=32), optimizer=partial(torch.optim.Adam, lr=3e-3)
    )
    trainer = quiet_trainer(
        max_epochs=6,
    )
    data = MNISTDataModule(data_dir=str(fake_mnist), val_size=50, batch_size=25)
    trainer.fit(model, data)
    (result,) = trainer.test(model, data, verbose=False)
    assert result["test/acc"] >= 0.9


def test_predict_step_returns_labels_and_confidences():
    model = MNISTClassifier(SPEC).eval()
    out = model.predict_step((torch.randn(5, 1, 28, 28), torch.zeros(5, dtype=torch.long)), 0)
    assert out["prediction"].shape == (5,) and out["prediction"].dtype == torch.int64
    assert torch.allclose(out["probabilities"].sum(1), torch.ones(5))
    assert torch.equal(out["confidence"], out["probabilities"].max(1).values)


def test_channels_last_gives_the_same_outputs():
    torch.manual_seed(0)
    plain, fast = MNISTClassifier(SPEC, channels_last=False), MNISTClassifier(SPEC, channels_last=True)
    fast.load_state_dict(plain.state_dict())
    conv2 = {
        name: [m for m in model.net.modules() if isinstance(m, nn.Conv2d)][1]
        for name, model in (("plain", plain), ("fast", fast))
    }  # the first conv has one input channel: both layouts at once
    assert conv2["fast"].weight.is_contiguous(memory_format=torch.channels_last)
    assert not conv2["plain"].weight.is_contiguous(memory_format=torch.channels_last)
    images = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(fast(images), plain(images), rtol=1e-4, atol=1e-5)


def test_compile_keeps_the_checkpoint_keys():
    assert (
        MNISTClassifier(SPEC, compile=True).state_dict().keys() == MNISTClassifier(SPEC).state_dict().keys()
    )


@pytest.mark.parametrize(
    ("scaling", "batch_size", "accumulate", "factor"),
    [("none", 256, 1, 1.0), ("linear", 256, 1, 4.0), ("sqrt", 256, 1, 2.0), ("linear", 64, 2, 2.0)],
)
def test_learning_rate_scales_with_the_effective_batch(fake_mnist, scaling, batch_size, accumulate, factor):
    onecycle = partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.5)
    model = MNISTClassifier(
        SPEC,
        net=partial(MLP, hidden=(8,)),
        optimizer=partial(torch.optim.SGD, lr=0.1),
        scheduler=onecycle,
        schedule=ScheduleSettings(interval="step"),
        lr_scaling=LRScaling(mode=scaling),
        features=GroupSettings(lr_mult=0.5),
    )
    trainer = quiet_trainer(max_steps=1, limit_val_batches=0, accumulate_grad_batches=accumulate)
    trainer.fit(model, MNISTDataModule(data_dir=str(fake_mnist), val_size=44, batch_size=batch_size))
    peaks = {g["name"]: g["max_lr"] for g in trainer.optimizers[0].param_groups}
    assert peaks["classifier"] == pytest.approx(0.5 * factor)
    assert peaks["features"] == pytest.approx(0.25 * factor)


def test_vgg_style_stages():
    net = ConvNet(SPEC, channels=(32, 64), convs_per_stage=2, hidden=256, batch_norm=True)
    convs = [(m.in_channels, m.out_channels) for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [(1, 32), (32, 32), (32, 64), (64, 64)]
    assert sum(isinstance(m, nn.MaxPool2d) for m in net.modules()) == 2
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize(
    "kwargs", [{"channels": ()}, {"channels": (0, 8)}, {"convs_per_stage": 0}, {"dropout": 1.0}]
)
def test_impossible_convnet_is_rejected(kwargs):
    with pytest.raises(ParameterError, match=r"^(channels|convs_per_stage|dropout) "):
        ConvNet(SPEC, **kwargs)
