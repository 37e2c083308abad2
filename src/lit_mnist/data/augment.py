"""Pixels to the net's input, on the device: normalisation and random affine augmentation."""

import math

import torch
import torch.nn.functional as F
from torch import Tensor

# Mean and standard deviation of the 60k MNIST training pixels, scaled to [0, 1].
MEAN, STD = 0.1307, 0.3081


def normalize(images: Tensor) -> Tensor:
    """Pixels in 0..255 (uint8, or float from `random_affine`) to float with the training set's
    mean and std: (x / 255 - MEAN) / STD."""
    return images.float().sub(255 * MEAN).div_(255 * STD)


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
