"""Augmentation of whole batches on the device."""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


def random_affine(images: Tensor, degrees: float, shift: float, scale: float) -> Tensor:
    """Rotate, shift and scale each image of a float batch (B, C, H, W) by its own random draw,
    on the batch's device; what comes in from outside the image is 0."""
    n, device = len(images), images.device

    def uniform(size, bound):
        return (torch.rand(size, device=device) * 2 - 1) * bound

    angle = uniform(n, math.radians(degrees))
    zoom = 1 + uniform(n, scale)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    offset = uniform((n, 2), 2 * shift)  # grid coordinates span 2 per image side
    theta = torch.stack(
        [torch.stack([cos, -sin, offset[:, 0]], 1), torch.stack([sin, cos, offset[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


# Stroke thickness is changed by whole pixels: images smaller than this have strokes of about a
# pixel (MNIST's 2.3 pixels at 28, scaled down), which one pixel more or less doubles or erases.
THICKNESS_MIN_SIZE = 14


def stroke_windows(size: int) -> tuple[int, int]:
    """The (dilation, erosion) window sides that make a stroke bolder or thinner in proportion to
    an image of `size` pixels: 3 and 2 at MNIST's 28 (about 2 pixels on, 1 off a 2.3-pixel
    stroke), one pixel more each for every further 28."""
    steps = max(1, round(size / 28))
    return 2 * steps + 1, steps + 1


def _max_filter(images: Tensor, window: int) -> Tensor:
    """The largest value in a window x window neighbourhood, edges replicated, same size out."""
    before = (window - 1) // 2
    padded = F.pad(images, (before, window - 1 - before, before, window - 1 - before), mode="replicate")
    return F.max_pool2d(padded, window, stride=1)


def random_thickness(images: Tensor, probability: float) -> Tensor:
    """Each image of a float batch (B, C, H, W), light on dark, drawn with bolder strokes with
    probability `probability / 2` and thinner ones as likely, by its own draw on the batch's device.
    Bolder: a dilation, about 2 pixels onto MNIST's 2.3 at 28x28 (as bold type is); thinner: an
    erosion, 1 pixel off (a 3x3 one leaves a typical MNIST digit 14% of its ink); both in proportion
    on larger images (`stroke_windows`)."""
    dilation, erosion = stroke_windows(min(images.shape[-2:]))
    draw = torch.rand(len(images), 1, 1, 1, device=images.device)
    bolder = _max_filter(images, dilation)
    thinner = -_max_filter(-images, erosion)
    return torch.where(draw < probability / 2, bolder, torch.where(draw < probability, thinner, images))


@dataclass(frozen=True)
class AugmentSettings:
    """Random rotation, shift, scale and stroke thickness of the training images: each image gets
    its own draw, on the device, after the batch is there. All 0: no augmentation.

    Args:
        degrees: rotate by up to this many degrees either way.
        shift: shift by up to this fraction of the image size in x and y.
        scale: scale by a factor within 1 +- this.
        thickness: the probability that an image's strokes are made bolder or, as likely, thinner
            (`random_thickness`), so that bold or fine pens and type read as well as MNIST's.
    """

    degrees: float = 0.0
    shift: float = 0.0
    scale: float = 0.0
    thickness: float = 0.0

    def problems(self) -> list[tuple[str, str]]:
        """(field, what is wrong with it) for each value a draw cannot use."""
        bounds = (("degrees", self.degrees), ("shift", self.shift))
        problems = [(k, f"must be 0 or more, got {v}") for k, v in bounds if v < 0]
        if not 0 <= self.scale < 1:  # a zoom factor of 0 or less flips or collapses the image
            problems.append(("scale", f"must be in [0, 1), got {self.scale}"))
        if not 0 <= self.thickness <= 1:
            problems.append(("thickness", f"must be a probability in [0, 1], got {self.thickness}"))
        return problems

    def problems_for(self, height: int, width: int) -> list[tuple[str, str]]:
        """(field, what is wrong with it) for each draw that cannot apply to images of this size."""
        if self.thickness and min(height, width) < THICKNESS_MIN_SIZE:
            return [
                (
                    "thickness",
                    f"needs images of at least {THICKNESS_MIN_SIZE} pixels a side, where a stroke is "
                    f"wider than a pixel; these are {height}x{width}: set it to 0",
                )
            ]
        return []

    @property
    def enabled(self) -> bool:
        return bool(self.degrees or self.shift or self.scale or self.thickness)

    def apply(self, images: Tensor) -> Tensor:
        """`random_thickness`, then `random_affine`, of a float batch (B, C, H, W) with these
        settings: the strokes change on the pixel grid they were drawn on, before resampling."""
        if self.thickness:
            images = random_thickness(images, self.thickness)
        if self.degrees or self.shift or self.scale:
            images = random_affine(images, self.degrees, self.shift, self.scale)
        return images


# A datamodule built in Python stores these settings in checkpoints with its other arguments;
# Lightning reads checkpoints with torch.load's weights_only mode, which unpickles only the classes
# registered here.
torch.serialization.add_safe_globals([AugmentSettings])
