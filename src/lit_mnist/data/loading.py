"""From indices to batches: the loader settings, the resumable sampler and loader, and the
one-gather collate_fn."""

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import torch
from torch import Tensor
from torch.utils.data import DataLoader, DistributedSampler


@dataclass(frozen=True)
class LoaderSettings:
    """How the DataLoaders run.

    Args:
        num_workers: DataLoader worker processes; 0 gathers batches in the main process.
        pin_memory: page-locked batches, for faster copies to a GPU.
        persistent_workers: keep workers alive between epochs (needs num_workers > 0).
        prefetch_factor: batches each worker loads ahead (needs num_workers > 0).
        drop_last: drop the last incomplete training batch.
    """

    num_workers: int = 0
    pin_memory: bool = False
    persistent_workers: bool = False
    prefetch_factor: int | None = None
    drop_last: bool = False

    def problems(self) -> list[tuple[str, str]]:
        """(field, what is wrong with it) for each value a DataLoader refuses."""
        if self.num_workers < 0:
            return [("num_workers", f"must be 0 or more, got {self.num_workers}")]
        if self.num_workers == 0 and (self.persistent_workers or self.prefetch_factor is not None):
            return [("num_workers", "must be above 0 for persistent_workers or prefetch_factor")]
        return []

    def dataloader_kwargs(self, train: bool) -> dict:
        """The DataLoader's keyword arguments; evaluation keeps its last batch."""
        return asdict(self) | {"drop_last": self.drop_last and train}


class GatherBatch:
    """collate_fn: the sampled indices become one batch through a single gather, uint8 images
    (B, C, H, W) and int64 labels (B,); conversion to float happens on the device."""

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        self.images, self.labels = images, labels

    def __call__(self, indices: list[int]) -> tuple[Tensor, Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return self.images[index], self.labels[index]


def index_batch(indices: list[int]) -> Tensor:
    """collate_fn of the on-device path: the batch is its indices; the gather happens on the device."""
    return torch.as_tensor(indices, dtype=torch.long)


class EpochSampler(DistributedSampler):
    """Positions into a split for one process: a permutation drawn from (seed, epoch) alone,
    so a resumed run draws the same one, or the split in order. Under several processes each takes
    every world_size-th index: for training all get the same count (up to world_size - 1 images
    sit out an epoch), for evaluation nothing is padded or repeated, so synced metrics are exact.
    Being a DistributedSampler, Lightning keeps it instead of injecting its own.
    """

    def __init__(self, size: int, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        super().__init__(range(size), num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed)
        self.size, self.skip = size, 0
        self.num_samples = size // world_size if shuffle else len(range(rank, size, world_size))

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + 100_003 * self.epoch)
            order = torch.randperm(self.size, generator=generator)[: self.num_samples * self.num_replicas]
        else:
            order = torch.arange(self.size)
        skip, self.skip = self.skip, 0  # a resumed epoch starts after what was trained
        return iter(order[self.rank :: self.num_replicas][skip:].tolist())

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.skip = 0
        super().set_epoch(epoch)


class ResumableLoader(DataLoader):
    """A training DataLoader Lightning can checkpoint mid-epoch. Its state is the sampler's epoch and
    the number of batches the training loop has taken (`taken`: the loop prefetches, so what the
    loader yielded is one batch ahead); a resumed fit continues with the next batch."""

    def __init__(self, *args, taken: Callable[[], int], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.taken = taken

    def state_dict(self) -> dict:
        # Lightning swaps the sampler for a SequentialSampler under overfit_batches: no epochs there
        return {"epoch": getattr(self.sampler, "epoch", 0), "batches": self.taken()}

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(self.sampler, EpochSampler):  # overfit_batches: the same few batches
            return
        epoch, batches = state["epoch"], state["batches"]
        if batches >= len(self):  # saved at the end of an epoch: the next one starts afresh
            epoch, batches = epoch + 1, 0
        self.sampler.set_epoch(epoch)
        self.sampler.skip = batches * self.batch_size


# A datamodule built in Python stores these settings in checkpoints with its other arguments;
# Lightning reads checkpoints with torch.load's weights_only mode, which unpickles only the classes
# registered here.
torch.serialization.add_safe_globals([LoaderSettings])
