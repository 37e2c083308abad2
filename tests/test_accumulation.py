from functools import partial

import torch

from conftest import quiet_trainer
from lit_mnist.data import SPEC, MNISTDataModule
from lit_mnist.model import MNISTClassifier
from lit_mnist.nets import ConvNet


def train(fake_mnist, batch_size: int, accumulate: int, optimizer_steps: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = MNISTClassifier(
        SPEC, net=partial(ConvNet, channels=(4, 8), hidden=16), optimizer=partial(torch.optim.SGD, lr=0.5)
    )
    trainer = quiet_trainer(
        max_steps=optimizer_steps,
        accumulate_grad_batches=accumulate,
        limit_val_batches=0,
    )
    # the same shuffle seed gives the same sample order whatever the batch size
    data = MNISTDataModule(data_dir=str(fake_mnist), val_size=50, batch_size=batch_size, shuffle_seed=7)
    trainer.fit(model, data)
    return {k: v.clone() for k, v in model.net.state_dict().items()}


def test_four_batches_of_16_accumulated_equal_one_batch_of_64(fake_mnist):
    accumulated = train(fake_mnist, batch_size=16, accumulate=4, optimizer_steps=3)
    whole = train(fake_mnist, batch_size=64, accumulate=1, optimizer_steps=3)
    untrained = train(fake_mnist, batch_size=64, accumulate=1, optimizer_steps=0)
    for name, weight in whole.items():
        assert not torch.equal(weight, untrained[name]), f"{name} did not train"
        torch.testing.assert_close(accumulated[name], weight, rtol=1e-5, atol=1e-6, msg=name)
