"""MNIST held once in memory as uint8 tensors; batches are gathered with one indexing op."""

import math
from pathlib import Path

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from lit_mnist.data.augment import AugmentSettings
from lit_mnist.data.loading import EpochSampler, GatherBatch, LoaderSettings, ResumableLoader, index_batch
from lit_mnist.data.spec import DataSpec
from lit_mnist.errors import ParameterError

# Mean and standard deviation of the 60k training pixels, scaled to [0, 1].
MEAN, STD = 0.1307, 0.3081
SPEC = DataSpec(channels=1, height=28, width=28, num_classes=10, mean=(MEAN,), std=(STD,))
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_UBYTE = 0x08


class DataError(ValueError):
    """Data files that cannot be used, named with what is wrong with them."""


def raw_folder(data_dir: str | Path) -> Path:
    return Path(data_dir).expanduser() / "MNIST" / "raw"


def missing_files(data_dir: str | Path) -> list[str]:
    folder = raw_folder(data_dir)
    return [name for pair in FILES.values() for name in pair if not (folder / name).is_file()]


def read_idx(path: Path) -> Tensor:
    """An IDX file of unsigned bytes as a uint8 tensor shaped by its header."""
    data = path.read_bytes()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != _IDX_UBYTE or data[3] == 0:
        raise DataError(f"{path} is not an IDX file of unsigned bytes (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path} is truncated: its header is incomplete")
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    # Python ints: torch.Size.numel() wraps around in int64, so a corrupt header of huge dims can
    # claim the file's own length (four dims of 65536 need 0 bytes)
    expected = header + math.prod(shape)
    if len(data) != expected:
        raise DataError(
            f"{path} has {len(data)} bytes but its header {shape} needs {expected}: "
            "the file is truncated or corrupt, delete it and download again"
        )
    if expected == header:  # a valid array with a 0-length dim; frombuffer refuses empty buffers
        return torch.empty(shape, dtype=torch.uint8)
    return torch.frombuffer(bytearray(data[header:]), dtype=torch.uint8).reshape(shape)


def load_split(data_dir: str | Path, split: str) -> tuple[Tensor, Tensor]:
    """Images (N, H, W) uint8 and labels (N,) int64 of the official `train` or `test` split."""
    images_file, labels_file = (raw_folder(data_dir) / name for name in FILES[split])
    images, labels = read_idx(images_file), read_idx(labels_file)
    side = (SPEC.height, SPEC.width)
    if images.ndim != 3 or images.shape[1:] != side:
        raise DataError(
            f"{images_file} holds {tuple(images.shape)} instead of N x {side[0]} x {side[1]} images"
        )
    if labels.ndim != 1:
        raise DataError(f"{labels_file} holds an array of shape {tuple(labels.shape)}, not a list of labels")
    if len(labels) != len(images):
        raise DataError(
            f"{labels_file} has {len(labels)} labels for {len(images)} images in {images_file.name}"
        )
    if len(labels) and int(labels.max()) >= SPEC.num_classes:
        raise DataError(
            f"{labels_file} has labels outside 0-{SPEC.num_classes - 1} (max {int(labels.max())})"
        )
    return images, labels.long()


class MNISTDataModule(L.LightningDataModule):
    def __init__(
        self,
        data_dir: str = "data",
        download: bool = True,
        val_size: int = 5000,
        split_seed: int = 0,
        batch_size: int = 64,
        eval_batch_size: int = 1000,
        shuffle_seed: int | None = None,
        on_device: bool = False,
        loader: LoaderSettings = LoaderSettings(),
        augment: AugmentSettings = AugmentSettings(),
        predict_path: str | None = None,
    ) -> None:
        """
        Args:
            data_dir: folder holding MNIST/raw/ with the four IDX files.
            download: fetch the files with torchvision when they are missing.
            val_size: images of the official training set held out for validation.
            split_seed: seed of the train/validation split (fixed apart from the run's seed).
            batch_size: training batch size.
            eval_batch_size: batch size for validation, test and prediction.
            shuffle_seed: seed of the training order; None follows the run's seed.
            on_device: hold the uint8 images on the training device (a GPU: 55 MB) and gather each
                batch there; the loader then only yields indices.
            loader: how the DataLoaders run (worker processes, pinned memory, ...).
            augment: random rotation, shift and scale of the training images, a draw per image on
                the device; all 0 (the default): none.
            predict_path: an image file or a folder of them (PNG, JPEG, ...; any size, colour or
                polarity) for `predict`, made into MNIST-style digits; None predicts the test set.
        """
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
        # The official train images followed by the official test images: indices 60000 and up are
        # the test set. One pair of tensors serves every stage with the same gather.
        self.spec = SPEC
        self.images = torch.empty(0, SPEC.height, SPEC.width, dtype=torch.uint8)
        self.labels = torch.empty(0, dtype=torch.long)
        self.train_idx = self.val_idx = self.test_idx = torch.empty(0, dtype=torch.long)
        self._on_device: dict[torch.device, tuple[Tensor, Tensor]] = {}

    def prepare_data(self) -> None:
        if self._predicting_own_images():
            return
        missing = missing_files(self.hparams.data_dir)
        if not missing:
            return
        data_dir, folder = self.hparams.data_dir, raw_folder(self.hparams.data_dir)
        fix = (
            f"put the four MNIST IDX files ({', '.join(f for p in FILES.values() for f in p)}) "
            f"in {folder} (the download fetches them), or set it to the folder that holds MNIST/raw"
        )
        if not self.hparams.download:
            raise ParameterError(self, "data_dir", f"{data_dir}: MNIST files missing in {folder}: "
                                 f"{', '.join(missing)}; {fix}")  # fmt: skip
        from torchvision.datasets import MNIST

        try:
            for train in (True, False):
                MNIST(self.hparams.data_dir, train=train, download=True)
        except Exception as err:  # torchvision raises several kinds when no mirror answers
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ParameterError(
                self,
                "data_dir",
                f"{data_dir}: MNIST files missing in {folder} ({', '.join(missing)}) "
                f"and the download failed ({reason}); {fix}",
            ) from err

    def setup(self, stage: str) -> None:
        if len(self.labels) or self._predicting_own_images():
            return
        (train_images, train_labels), (test_images, test_labels) = (
            load_split(self.hparams.data_dir, split) for split in ("train", "test")
        )
        n, val_size = len(train_labels), self.hparams.val_size
        if not 0 < val_size < n:
            raise ParameterError(self, "val_size", f"must be between 1 and {n - 1}, got {val_size}")
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.hparams.split_seed))
        self.val_idx, self.train_idx = order[:val_size].sort().values, order[val_size:].sort().values
        self.test_idx = torch.arange(n, n + len(test_labels))
        self.images = torch.cat([train_images, test_images])
        self.labels = torch.cat([train_labels, test_labels])

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
        from lit_mnist.data.images import ImageError, load_digits

        try:
            self.predict_files, images, self.predict_notes, self.predict_rejected = load_digits(
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
        return images[index].unsqueeze(1), labels[index]
