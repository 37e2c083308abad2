"""The MNIST family (MNIST, Fashion-MNIST, KMNIST): 28x28 grayscale IDX files, read once into
uint8 tensors."""

import math
from pathlib import Path

import torch
from torch import Tensor

from lit_mnist.data.base import DataError, ImageDataModule, Split
from lit_mnist.data.spec import DataSpec
from lit_mnist.errors import ParameterError

# Mean and standard deviation of MNIST's 60k training pixels, scaled to [0, 1]: the spec of nets
# built outside a datamodule. A datamodule computes its own from its training split.
MEAN, STD = 0.1307, 0.3081
SPEC = DataSpec(channels=1, height=28, width=28, num_classes=10, mean=(MEAN,), std=(STD,))
# The datasets that share MNIST's file format, each in <data_dir>/<name>/raw/, with their classes
# (torchvision's names).
CLASSES = {
    "MNIST": tuple(str(digit) for digit in range(10)),
    "FashionMNIST": (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ),
    "KMNIST": ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
}  # fmt: skip
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_UBYTE = 0x08


def raw_folder(data_dir: str | Path, dataset: str = "MNIST") -> Path:
    return Path(data_dir).expanduser() / dataset / "raw"


def missing_files(data_dir: str | Path, dataset: str = "MNIST") -> list[str]:
    folder = raw_folder(data_dir, dataset)
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


def load_split(data_dir: str | Path, split: str, dataset: str = "MNIST") -> tuple[Tensor, Tensor]:
    """Images (N, H, W) uint8 and labels (N,) int64 of the official `train` or `test` split."""
    images_file, labels_file = (raw_folder(data_dir, dataset) / name for name in FILES[split])
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


class MNISTDataModule(ImageDataModule):
    def __init__(
        self,
        data_dir: str = "data",
        dataset: str = "MNIST",
        download: bool = True,
        normalise_stroke: bool = True,
        **kwargs,
    ) -> None:
        """
        Args:
            data_dir: folder holding <dataset>/raw/ with the four IDX files.
            dataset: MNIST, FashionMNIST or KMNIST (same format: 28x28 grayscale, 10 classes).
            download: fetch the files with torchvision when they are missing.
            normalise_stroke: for `predict`, bring a stroke width that few MNIST digits have (bold
                fonts, thick pens) to MNIST's median. A net trained with `augment.thickness` reads
                thick strokes itself and may do better without.
            kwargs: the arguments of `ImageDataModule` (batch size, splits, loader, augmentation,
                predict_path: your own images, made into MNIST-style digits).
        """
        if dataset not in CLASSES:
            raise ParameterError(self, "dataset", f"must be one of {', '.join(CLASSES)}, got {dataset!r}")
        super().__init__(**kwargs)

    def prepare_data(self) -> None:
        if self._predicting_own_images():
            return
        data_dir, dataset = self.hparams.data_dir, self.hparams.dataset
        missing = missing_files(data_dir, dataset)
        if not missing:
            return
        folder = raw_folder(data_dir, dataset)
        fix = (
            f"put the four {dataset} IDX files ({', '.join(f for p in FILES.values() for f in p)}) "
            f"in {folder} (the download fetches them), or set it to the folder that holds {dataset}/raw"
        )
        if not self.hparams.download:
            raise ParameterError(self, "data_dir", f"{data_dir}: {dataset} files missing in {folder}: "
                                 f"{', '.join(missing)}; {fix}")  # fmt: skip
        import torchvision.datasets

        try:
            for train in (True, False):
                getattr(torchvision.datasets, dataset)(data_dir, train=train, download=True)
        except Exception as err:  # torchvision raises several kinds when no mirror answers
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ParameterError(
                self,
                "data_dir",
                f"{data_dir}: {dataset} files missing in {folder} ({', '.join(missing)}) "
                f"and the download failed ({reason}); {fix}",
            ) from err

    def load_splits(self) -> tuple[dict[str, Split], tuple[str, ...]]:
        data_dir, dataset = self.hparams.data_dir, self.hparams.dataset
        splits = {}
        for split in ("train", "test"):
            images, labels = load_split(data_dir, split, dataset)
            splits[split] = (images.unsqueeze(1), labels)
        return splits, CLASSES[dataset]

    def predict_images(self, path: str):
        from lit_mnist.data.images import load_digits

        files, images, notes, rejected = load_digits(path, self.hparams.normalise_stroke)
        return files, images.unsqueeze(1), notes, rejected
