"""Data: the MNIST datamodule, the loading machinery behind it and on-device augmentation."""

from lit_mnist.data.augment import MEAN, STD, normalize, random_affine
from lit_mnist.data.loading import EpochSampler, GatherBatch, ResumableLoader, index_batch
from lit_mnist.data.mnist import (
    FILES,
    DataError,
    MNISTDataModule,
    load_split,
    missing_files,
    raw_folder,
    read_idx,
)

__all__ = [
    "FILES",
    "MEAN",
    "STD",
    "DataError",
    "EpochSampler",
    "GatherBatch",
    "MNISTDataModule",
    "ResumableLoader",
    "index_batch",
    "load_split",
    "missing_files",
    "normalize",
    "random_affine",
    "raw_folder",
    "read_idx",
]
