"""Data: the MNIST datamodule, the loading machinery behind it and on-device augmentation. The
datamodule describes its images with a `DataSpec` that the model, the nets and the tools read."""

from lit_mnist.data.augment import AugmentSettings, random_affine
from lit_mnist.data.loading import EpochSampler, GatherBatch, LoaderSettings, ResumableLoader, index_batch
from lit_mnist.data.mnist import (
    FILES,
    MEAN,
    SPEC,
    STD,
    DataError,
    MNISTDataModule,
    load_split,
    missing_files,
    raw_folder,
    read_idx,
)
from lit_mnist.data.spec import DataSpec

__all__ = [
    "FILES",
    "MEAN",
    "SPEC",
    "STD",
    "AugmentSettings",
    "DataError",
    "DataSpec",
    "EpochSampler",
    "GatherBatch",
    "LoaderSettings",
    "MNISTDataModule",
    "ResumableLoader",
    "index_batch",
    "load_split",
    "missing_files",
    "random_affine",
    "raw_folder",
    "read_idx",
]
