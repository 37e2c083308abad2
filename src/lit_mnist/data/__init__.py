"""Data: the datamodules (the MNIST family, folders of your own images), the loading machinery
behind them and on-device augmentation. A datamodule describes its images with a `DataSpec` that
the model, the nets and the tools read."""

from lit_mnist.data.augment import AugmentSettings, random_affine
from lit_mnist.data.base import DataError, ImageDataModule, pixel_statistics, preset_spec, split_off
from lit_mnist.data.folder import ImageFolderDataModule
from lit_mnist.data.loading import EpochSampler, GatherBatch, LoaderSettings, ResumableLoader, index_batch
from lit_mnist.data.mnist import (
    CLASSES,
    FILES,
    MEAN,
    SPEC,
    STD,
    MNISTDataModule,
    load_split,
    missing_files,
    raw_folder,
    read_idx,
)
from lit_mnist.data.spec import DataSpec

__all__ = [
    "CLASSES",
    "FILES",
    "MEAN",
    "SPEC",
    "STD",
    "AugmentSettings",
    "DataError",
    "DataSpec",
    "EpochSampler",
    "GatherBatch",
    "ImageDataModule",
    "ImageFolderDataModule",
    "LoaderSettings",
    "MNISTDataModule",
    "ResumableLoader",
    "index_batch",
    "load_split",
    "missing_files",
    "pixel_statistics",
    "preset_spec",
    "random_affine",
    "raw_folder",
    "read_idx",
    "split_off",
]
