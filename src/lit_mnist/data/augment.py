"""Augmentation of whole batches on the device."""

import math

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
