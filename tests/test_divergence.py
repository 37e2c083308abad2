"""StopOnDivergence reads the losses in batches where reading each one would stall an accelerator,
yet still names the first bad step and stops before a checkpoint of the broken weights."""

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from conftest import quiet_trainer
from lit_mnist.callbacks import Diverged, LastCheckpoint, StopOnDivergence


class Breaks(L.LightningModule):
    """A linear model whose loss is multiplied by `bad` (nan, or a large number) from step `at` on."""

    def __init__(self, at: int, bad: float) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.at, self.bad = at, bad

    def training_step(self, batch, batch_idx):
        loss = self.layer(batch[0]).pow(2).mean() + 1.0
        if self.global_step < self.at:
            return loss
        return loss + loss.detach() * (self.bad - 1)  # the value turns bad, the gradients do not

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1e-3)

    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.randn(64, 4)), batch_size=2)


def fit(module, callbacks, **kwargs) -> L.Trainer:
    trainer = quiet_trainer(max_epochs=1, callbacks=callbacks, **kwargs)
    with pytest.raises(Diverged) as raised:
        trainer.fit(module)
    trainer.message = str(raised.value)
    return trainer


@pytest.mark.parametrize(
    "bad, expected", [(float("nan"), "loss nan at step 4"), (1e4, "at step 4, over 100x")]
)
def test_checked_every_n_steps_names_the_first_bad_step(bad, expected):
    trainer = fit(Breaks(at=3, bad=bad), [StopOnDivergence(check_every=10)])
    assert expected in trainer.message
    assert trainer.global_step == 11  # the first step read alone (the start), then 10 at once


def test_a_checkpoint_forces_the_check_before_it_is_written(tmp_path):
    last = LastCheckpoint(every_n_steps=5)
    trainer = fit(
        Breaks(at=3, bad=1e4), [StopOnDivergence(check_every=50), last],
        enable_checkpointing=True, default_root_dir=tmp_path,
    )  # fmt: skip
    assert "at step 4, over 100x" in trainer.message and trainer.global_step == 5
    assert not (tmp_path / "checkpoints" / "last.ckpt").exists()  # step 5's weights were never written


def test_factor_zero_checks_finiteness_only():
    trainer = quiet_trainer(max_epochs=1, callbacks=[StopOnDivergence(factor=0)])
    trainer.fit(Breaks(at=3, bad=1e4))
    assert trainer.global_step == 32
