"""Nets as a user writes them without the template in mind, importable by the command line in the
tests (tests/ is on the fork server's path)."""

import torch
from torch import Tensor, nn


class PlainNet(nn.Module):
    """A small CNN that knows nothing of DataSpec: RGB and 1000 classes unless told otherwise."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1000, width: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten()
        )
        self.out = nn.Linear(width * 16, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.body(x))


class Embedder(nn.Module):
    """A net whose output is an embedding, not one value per class."""

    def __init__(self, size: int = 7) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.LazyLinear(size))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class NaNBackward(nn.Module):
    """A net whose backward makes a NaN: the square root of a weight's product that is 0."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.out = nn.Linear(1, 10)

    def forward(self, x: Tensor) -> Tensor:
        zero = self.weight * x.flatten(1)[:, :1]
        return self.out(zero.sqrt() * 0 + zero)  # sqrt's gradient at 0 is infinite: times 0, NaN
