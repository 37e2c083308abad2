"""The same seed gives the same run; another seed gives another."""

import json
from functools import partial

import pytest
import torch

from conftest import RANDOM_RUN, SMALL, quiet_trainer, run_cli
from lit_mnist.data import SPEC, MNISTDataModule
from lit_mnist.model import MNISTClassifier
from lit_mnist.nets import ConvNet

RUN = [
    *RANDOM_RUN,
    "--data.batch_size=32",
    "--trainer.max_epochs=2",
    *SMALL,
]  # fmt: skip


@pytest.fixture(scope="module")
def runs(fake_mnist, tmp_path_factory):
    outcome = {}
    for name, seed in (("first", 1), ("again", 1), ("other", 2)):
        cwd = tmp_path_factory.mktemp(name)
        run_cli(*RUN, f"--data.data_dir={fake_mnist}", f"--seed_everything={seed}", cwd=cwd)
        run = cwd / "logs" / "default" / "version_0"
        weights = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
        outcome[name] = (weights, json.loads((run / "metrics.json").read_text()))
    return outcome


METRICS = ("val/acc_best", "test/acc", "test/loss")


def test_same_seed_same_weights_and_metrics(runs):
    (weights, metrics), (weights_again, metrics_again) = runs["first"], runs["again"]
    for key, value in weights.items():
        assert torch.equal(value, weights_again[key]), key
    assert {k: metrics[k] for k in METRICS} == {k: metrics_again[k] for k in METRICS}


def test_another_seed_other_weights_and_metrics(runs):
    (weights, metrics), (weights_other, metrics_other) = runs["first"], runs["other"]
    assert not torch.equal(weights["net.features.0.weight"], weights_other["net.features.0.weight"])
    assert metrics["test/loss"] != metrics_other["test/loss"]


def test_deterministic_trainer_sets_the_global_flag(fake_mnist):
    data = MNISTDataModule(str(fake_mnist), val_size=50, batch_size=64)
    model = MNISTClassifier(SPEC, net=partial(ConvNet, channels=(4, 8), hidden=16), channels_last=False)
    quiet_trainer(deterministic=True, max_steps=1, limit_val_batches=0).fit(model, data)
    assert torch.are_deterministic_algorithms_enabled()


def test_the_flag_does_not_leak_into_the_next_test():
    assert not torch.are_deterministic_algorithms_enabled()
