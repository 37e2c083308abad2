from functools import partial

import pytest
import torch
from torch import nn

from lit_mnist.data import SPEC
from lit_mnist.model import MNISTClassifier
from lit_mnist.nets import MLP, ConvNet
from lit_mnist.optim import GroupSettings, LinearWarmup, WarmupCosine, head_of, param_groups

OPTIMIZERS = {
    "SGD": partial(torch.optim.SGD, lr=0.1),
    "SGD+momentum": partial(torch.optim.SGD, lr=0.1, momentum=0.9),
    "SGD+Nesterov": partial(torch.optim.SGD, lr=0.1, momentum=0.9, nesterov=True),
    "Adam": partial(torch.optim.Adam, lr=1e-3, weight_decay=1e-4),
    "AdamW": partial(torch.optim.AdamW, lr=2e-3, weight_decay=0.05),
    "RMSprop": partial(torch.optim.RMSprop, lr=5e-4),
    "Adagrad": partial(torch.optim.Adagrad, lr=0.01),
    "Adadelta": partial(torch.optim.Adadelta, lr=1.0),
}


def group_ids(groups):
    return [id(p) for g in groups for p in g["params"]]


@pytest.mark.parametrize(
    "net",
    [ConvNet(SPEC), ConvNet(SPEC, batch_norm=True, dropout=0.2), MLP(SPEC)],
    ids=["cnn", "cnn-bn", "mlp"],
)
def test_every_trainable_parameter_in_exactly_one_group(net):
    groups = param_groups(net, GroupSettings(), GroupSettings())
    ids = group_ids(groups)
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in net.parameters()}
    assert len({g["name"] for g in groups}) == len(groups)


def test_frozen_parameters_are_left_out():
    net = ConvNet(SPEC)
    net.features.requires_grad_(False)
    ids = set(group_ids(param_groups(net, GroupSettings(), GroupSettings())))
    assert ids == {id(p) for p in net.classifier.parameters()}


def test_biases_and_norms_never_decay():
    net = ConvNet(SPEC, batch_norm=True)
    groups = param_groups(net, GroupSettings(weight_decay=0.1), GroupSettings(weight_decay=0.2))
    by_name = {g["name"]: g for g in groups}
    norm_and_bias = {
        id(p) for m in net.modules() if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d) for p in m.parameters()
    }
    norm_and_bias |= {id(p) for name, p in net.named_parameters() if name.endswith("bias")}
    no_decay = group_ids([by_name["features_no_decay"], by_name["classifier_no_decay"]])
    assert set(no_decay) == norm_and_bias
    assert by_name["features_no_decay"]["weight_decay"] == 0.0
    assert by_name["classifier_no_decay"]["weight_decay"] == 0.0
    assert by_name["features"]["weight_decay"] == 0.1 and by_name["classifier"]["weight_decay"] == 0.2


def test_head_without_classifier_attribute_is_the_last_layer():
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
    assert head_of(net) is net[3]


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_group_learning_rates_are_base_times_multiplier(name):
    factory = OPTIMIZERS[name]
    model = MNISTClassifier(
        SPEC,
        optimizer=factory,
        features=GroupSettings(lr_mult=0.1),
        classifier=GroupSettings(lr_mult=2.0, weight_decay=0.01),
    )
    optimizer = model.configure_optimizers()
    assert isinstance(optimizer, factory.func)
    base = factory.keywords["lr"]
    base_decay = factory.keywords.get("weight_decay", 0.0)
    expected = {
        "features": (0.1 * base, base_decay),
        "features_no_decay": (0.1 * base, 0.0),
        "classifier": (2.0 * base, 0.01),
        "classifier_no_decay": (2.0 * base, 0.0),
    }
    got = {g["name"]: (g["lr"], g["weight_decay"]) for g in optimizer.param_groups}
    assert got.keys() == expected.keys()
    for key, (lr, decay) in expected.items():
        assert got[key][0] == pytest.approx(lr) and got[key][1] == pytest.approx(decay), key


def test_optimizer_arguments_reach_the_optimizer():
    model = MNISTClassifier(SPEC, optimizer=OPTIMIZERS["SGD+Nesterov"])
    group = model.configure_optimizers().param_groups[0]
    assert group["momentum"] == 0.9 and group["nesterov"] is True


def test_linear_warmup_and_cosine_factors():
    warmup = LinearWarmup(4)
    assert [warmup(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    cosine = WarmupCosine(2, total_steps=12, final_factor=0.1)
    assert cosine(0) == 0.5 and cosine(2) == pytest.approx(1.0)
    assert cosine(7) == pytest.approx(0.55) and cosine(12) == pytest.approx(0.1)
    assert cosine(20) == pytest.approx(0.1)
    short_run = WarmupCosine(300, total_steps=1)
    assert short_run(0) == pytest.approx(1 / 300)
