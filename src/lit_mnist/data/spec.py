"""What the rest of the template needs to know about the images, given by the datamodule."""

import functools
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class DataSpec:
    """The image shape, the classes and the pixel statistics of a dataset.

    A datamodule provides it as `datamodule.spec`; the CLI hands it to the model, which builds the
    net from it and stores it, so every checkpoint says what its net reads and how to normalise
    its input.

    Args:
        channels, height, width: the shape of one image.
        num_classes: number of classes, labelled 0 .. num_classes - 1.
        mean, std: per-channel mean and standard deviation of the training pixels in [0, 1].
        class_names: a name per class, for figures and predictions; empty: the class numbers.
    """

    channels: int
    height: int
    width: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if min(self.channels, self.height, self.width) < 1 or self.num_classes < 2:
            raise ValueError(f"DataSpec needs positive image sides and at least 2 classes, got {self}")
        if not len(self.mean) == len(self.std) == self.channels or min(self.std) <= 0:
            raise ValueError(f"DataSpec needs a mean and a positive std per channel, got {self}")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ValueError(
                f"DataSpec has {len(self.class_names)} class names for {self.num_classes} classes"
            )

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    def normalize(self, images: Tensor, scale: float = 255.0) -> Tensor:
        """Pixels in 0..scale (uint8 or float, (B, C, H, W)) to float with the training set's mean
        and std per channel: (x / scale - mean) / std."""
        mean, std = _statistics(self, images.device, scale)
        return images.float().sub(mean).div_(std)

    def class_name(self, index: int) -> str:
        return self.class_names[index] if self.class_names else str(index)


@functools.cache
def _statistics(spec: DataSpec, device: torch.device, scale: float) -> tuple[Tensor, Tensor]:
    """mean and std shaped (C, 1, 1) on the device, made once: a copy per batch would cost a
    host-to-device transfer every step."""
    mean = torch.tensor(spec.mean, device=device).view(-1, 1, 1) * scale
    std = torch.tensor(spec.std, device=device).view(-1, 1, 1) * scale
    return mean, std


# Checkpoints store the spec with the model's arguments; Lightning reads those with torch.load's
# weights_only mode, which unpickles only the classes registered here.
torch.serialization.add_safe_globals([DataSpec])
