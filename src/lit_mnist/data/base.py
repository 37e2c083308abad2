"""What every datamodule here shares: images held once in memory as one uint8 tensor, batches
gathered with one indexing op, normalised (and augmented) on the device.

A datamodule of your own subclasses `ImageDataModule` and implements `load_splits`; the rest (the
validation split, the pixel statistics, the loaders, the on-device path, predict) comes from here.
"""

import contextlib
from contextvars import ContextVar
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torch.utils.data import DataLoader

from lit_mnist.data.augment import AugmentSettings
from lit_mnist.data.loading import EpochSampler, GatherBatch, LoaderSettings, ResumableLoader, index_batch
from lit_mnist.data.spec import DataSpec
from lit_mnist.errors import ParameterError

# images (N, C, H, W) uint8 and labels (N,) int64 of one split
Split = tuple[Tensor, Tensor]


class DataError(ValueError):
    """Data files that cannot be used, named with what is wrong with them."""


_PRESET_SPEC: ContextVar[DataSpec | None] = ContextVar("preset_spec", default=None)


@contextlib.contextmanager
def preset_spec(spec: DataSpec | None):
    """Datamodules made inside take `spec` as given instead of reading their data to compute it:
    a checkpoint's net was built and normalised for its own spec, and predicting your own images
    with it needs no dataset on disk. None leaves an outer preset as it is."""
    token = _PRESET_SPEC.set(spec or _PRESET_SPEC.get())
    try:
        yield
    finally:
        _PRESET_SPEC.reset(token)


def split_off(n: int, size: int, seed: int) -> tuple[Tensor, Tensor]:
    """A seeded random split of range(n): (the `size` held out, the rest), each sorted."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[:size].sort().values, order[size:].sort().values


def pixel_statistics(images: Tensor, chunk: int = 8192) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 images (N, C, H, W), scaled to [0, 1]."""
    channels = images.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    for start in range(0, len(images), chunk):
        part = images[start : start + chunk].double().div_(255)
        total += part.sum((0, 2, 3))
        squares += part.square().sum((0, 2, 3))
    count = images.numel() // channels
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt()
    return tuple(round(float(v), 4) for v in mean), tuple(round(max(float(v), 1e-3), 4) for v in std)


class ImageDataModule(L.LightningDataModule):
    """Images in memory as one uint8 tensor (N, C, H, W), split into train, validation and test by
    index lists. Subclasses implement `load_splits`; `spec` (shape, classes, and the mean and std
    of the training split) is computed from what it returns, on first use.

    Args:
        val_size: images of the training data held out for validation, when the data has no
            validation split of its own: a count, or a fraction below 1 (0.1: a tenth).
        split_seed: seed of that split (fixed apart from the run's seed).
        batch_size: training batch size.
        eval_batch_size: batch size for validation, test and prediction.
        shuffle_seed: seed of the training order; None follows the run's seed.
        on_device: hold the uint8 images on the training device (a GPU) and gather each batch
            there; the loader then only yields indices.
        loader: how the DataLoaders run (worker processes, pinned memory, ...).
        augment: random rotation, shift, scale and stroke thickness of the training images, a draw
            per image on the device; all 0 (the default): none.
        predict_path: an image file or a folder of them (PNG, JPEG, ...; any size, colour or
            polarity) for `predict`; None predicts the test set.
    """

    def __init__(
        self,
        val_size: int | float = 5000,
        split_seed: int = 0,
        batch_size: int = 64,
        eval_batch_size: int = 1000,
        shuffle_seed: int | None = None,
        on_device: bool = False,
        loader: LoaderSettings = LoaderSettings(),
        augment: AugmentSettings = AugmentSettings(),
        predict_path: str | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if value < 1:
                raise ParameterError(self, name, f"must be at least 1, got {value}")
        # checked here, not in the settings' __post_init__: the CLI builds those while parsing, where
        # an error would not name its flag
        settings = {"loader": loader, "augment": augment}
        problems = [(f"{k}.{field}", why) for k, v in settings.items() for field, why in v.problems()]
        if problems:
            raise ParameterError(self, *problems[0])
        self.save_hyperparameters(logger=False)
        # kept as given: through the CLI, hparams hold these settings as plain dicts
        self.loader, self.augment = loader, augment
        # Every split in one pair of tensors, train first: one gather serves every stage.
        self.images = torch.empty(0, dtype=torch.uint8)
        self.labels = torch.empty(0, dtype=torch.long)
        self.train_idx = self.val_idx = self.test_idx = torch.empty(0, dtype=torch.long)
        self._spec = _PRESET_SPEC.get()
        self._on_device: dict[torch.device, tuple[Tensor, Tensor]] = {}

    # -- what a subclass provides

    def load_splits(self) -> tuple[dict[str, Split], tuple[str, ...]]:
        """The splits ("train", and "test"; "val" when the data has its own) and a name per class."""
        raise NotImplementedError

    def predict_images(self, path: str) -> tuple[list[Path], Tensor, dict[Path, list[str]], dict[Path, str]]:
        """Your own images as this data's images: (files read, uint8 (N, C, H, W), conversions per
        file, reasons per file that could not be read)."""
        raise NotImplementedError

    # -- the rest

    @property
    def spec(self) -> DataSpec:
        if self._spec is None:
            self._load()
        return self._spec

    def _load(self) -> None:
        self.prepare_data()
        splits, class_names = self.load_splits()
        train_images, train_labels = splits["train"]
        if "val" in splits:
            val_images, val_labels = splits["val"]
            images, labels = torch.cat([train_images, val_images]), torch.cat([train_labels, val_labels])
            n = len(train_labels)
            self.train_idx, self.val_idx = torch.arange(n), torch.arange(n, len(labels))
        else:
            images, labels = train_images, train_labels
            n, given = len(labels), self.hparams.val_size
            val_size = round(given * n) if 0 < given < 1 else given
            if not 0 < val_size < n or val_size != int(val_size):
                raise ParameterError(
                    self,
                    "val_size",
                    f"must be a count between 1 and {n - 1}, or a fraction such as 0.1, got {given}",
                )
            self.val_idx, self.train_idx = split_off(n, int(val_size), self.hparams.split_seed)
        test_images, test_labels = splits["test"]
        self.test_idx = torch.arange(len(labels), len(labels) + len(test_labels))
        self.images, self.labels = torch.cat([images, test_images]), torch.cat([labels, test_labels])
        if self._spec is None:
            mean, std = pixel_statistics(self.images[self.train_idx])
            _, channels, height, width = self.images.shape
            self._spec = DataSpec(channels, height, width, len(class_names), mean, std, class_names)
        elif self._spec.shape != tuple(self.images.shape[1:]):
            shape = tuple(self.images.shape[1:])
            raise DataError(f"the data holds {shape} images; the checkpoint's net reads {self._spec.shape}")

    def describe(self) -> str:
        """One line: the splits' sizes, the image shape and the statistics used to normalise."""
        spec = self.spec
        return (
            f"{type(self).__name__}: {len(self.train_idx)} train, {len(self.val_idx)} validation, "
            f"{len(self.test_idx)} test images of {spec.channels}x{spec.height}x{spec.width}, "
            f"{spec.num_classes} classes; mean {spec.mean}, std {spec.std} (training split)"
        )

    def setup(self, stage: str) -> None:
        if self._predicting_own_images():
            return
        if not len(self.labels):
            self._load()
        if stage == "fit":
            spec = self.spec
            if problems := self.augment.problems_for(spec.height, spec.width):
                field, why = problems[0]
                raise ParameterError(self, f"augment.{field}", why)
            rank_zero_info(self.describe())

    def _loader(self, indices: Tensor, train: bool) -> DataLoader:
        hp = self.hparams
        trainer = self.trainer
        rank, world_size = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        # None follows the run's seed (seed_everything): same seed, same order, also after a resume
        seed = torch.initial_seed() if hp.shuffle_seed is None else hp.shuffle_seed
        sampler = EpochSampler(len(indices), shuffle=train, seed=seed, rank=rank, world_size=world_size)
        options = {}
        if train:
            options["taken"] = self._batches_taken
        return (ResumableLoader if train else DataLoader)(
            indices.tolist(),
            batch_size=hp.batch_size if train else hp.eval_batch_size,
            sampler=sampler,
            collate_fn=index_batch if hp.on_device else GatherBatch(self.images, self.labels),
            # each new iterator draws its workers' base seed from this generator, not from the
            # global one that dropout and augmentation draw from: a run resumed at an epoch's end
            # (where the uninterrupted run makes the next epoch's iterator) continues their streams
            generator=torch.Generator().manual_seed(seed),
            **self.loader.dataloader_kwargs(train),
            **options,
        )

    def _batches_taken(self) -> int:
        return self.trainer.fit_loop.epoch_loop.batch_progress.current.ready if self.trainer else 0

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_idx, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_idx, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_idx, train=False)

    def predict_dataloader(self) -> DataLoader:
        if not self.hparams.predict_path:
            return self.test_dataloader()
        from lit_mnist.data.images import ImageError

        try:
            self.predict_files, images, self.predict_notes, self.predict_rejected = self.predict_images(
                self.hparams.predict_path
            )
        except ImageError as err:
            raise ParameterError(self, "predict_path", str(err)) from None
        if not self.predict_files:
            reasons = "; ".join(self.predict_rejected.values())
            raise ParameterError(self, "predict_path", f"no image could be read: {reasons}")
        labels = torch.full((len(images),), -1)  # unknown
        return DataLoader(
            list(range(len(images))),
            batch_size=self.hparams.eval_batch_size,
            collate_fn=GatherBatch(images, labels),
        )

    def _predicting_own_images(self) -> bool:
        trainer = self.trainer
        return bool(self.hparams.predict_path) and trainer is not None and trainer.state.fn == "predict"

    def on_after_batch_transfer(self, batch: Tensor | tuple[Tensor, Tensor], dataloader_idx: int):
        augment = self.augment
        # an index batch (on_device) is gathered here; own images for predict come as images
        images, labels = self._gather_on_device(batch) if isinstance(batch, Tensor) else batch
        if self.trainer is not None and self.trainer.training and augment.enabled:
            # before normalising, so the pixels moved in from outside are 0 (background)
            images = augment.apply(images.float())
        return self.spec.normalize(images), labels

    def _gather_on_device(self, index: Tensor) -> tuple[Tensor, Tensor]:
        if index.device not in self._on_device:  # copied once per device
            self._on_device[index.device] = (self.images.to(index.device), self.labels.to(index.device))
        images, labels = self._on_device[index.device]
        return images[index], labels[index]
