"""Your own digit images as MNIST digits: grayscale, light on dark, the digit scaled into a 20x20
box and centred by its centre of mass in 28x28, as MNIST's were made."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from lit_mnist.data.mnist import DataError

SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
MIN_SIDE = 8  # smaller images hold too few pixels to be a digit


class ImageError(DataError):
    """An input that cannot be made into a digit, named with the reason."""


def image_files(path: str | Path) -> list[Path]:
    """The image file, or the images of a folder (by suffix, sorted); one clear error if none."""
    path = Path(path).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
        if not files:
            raise ImageError(f"{path}: no image files ({', '.join(sorted(SUFFIXES))})")
        return files
    raise ImageError(f"{path}: no such file or folder")


def load_digit(path: Path) -> tuple[Tensor, list[str]]:
    """A uint8 (28, 28) MNIST-style digit from an image file, and what was converted to get it."""
    try:
        with Image.open(path) as image:
            image.load()
            mode, size = image.mode, image.size
            notes = [] if mode == "L" else [f"{mode} to grayscale"]
            if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
                # transparent pixels become white paper behind the ink
                paper = Image.new("RGBA", image.size, "white")
                image = Image.alpha_composite(paper, image.convert("RGBA"))
            gray = np.asarray(image.convert("L"), dtype=np.float32)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ImageError(f"{path}: not a readable image ({err.__class__.__name__})") from None
    if min(size) < MIN_SIDE:
        raise ImageError(f"{path}: {size[0]}x{size[1]} pixels is too small for a digit (at least {MIN_SIDE})")
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if np.median(border) > 127:  # dark ink on light paper: MNIST is light on dark
        gray, border = 255 - gray, 255 - border
        notes.append("inverted (dark on light)")
    gray = np.clip(gray - np.median(border), 0, None)  # the paper becomes 0
    if gray.max() < 32:
        raise ImageError(f"{path}: no digit found (the image has no contrast)")
    gray *= 255 / gray.max()
    rows, cols = np.nonzero(gray > 0.2 * 255)
    crop = gray[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    if size != (28, 28):
        notes.append(f"{size[0]}x{size[1]} scaled to 28x28")
    return _centred(crop), notes


def _centred(crop: np.ndarray) -> Tensor:
    """The crop scaled so its longer side is 20 pixels, placed in 28x28 with its centre of mass
    at the centre."""
    height, width = crop.shape
    scale = 20 / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = np.asarray(Image.fromarray(crop.astype(np.uint8)).resize(size, Image.LANCZOS), dtype=np.float32)
    canvas = np.zeros((28, 28), dtype=np.float32)
    top, left = (28 - size[1]) // 2, (28 - size[0]) // 2
    canvas[top : top + size[1], left : left + size[0]] = small
    mass = canvas.sum()
    ys, xs = np.indices(canvas.shape)
    shift_y = round(13.5 - (ys * canvas).sum() / mass)
    shift_x = round(13.5 - (xs * canvas).sum() / mass)
    # shift within the frame: the 20x20 box leaves 4 pixels each side
    shift_y = int(np.clip(shift_y, -top, 28 - top - size[1]))
    shift_x = int(np.clip(shift_x, -left, 28 - left - size[0]))
    canvas = np.roll(canvas, (shift_y, shift_x), axis=(0, 1))
    return torch.from_numpy(np.clip(canvas, 0, 255).round().astype(np.uint8))


def load_digits(path: str | Path) -> tuple[list[Path], Tensor, dict[Path, list[str]], dict[Path, str]]:
    """Every image under `path` as a digit: (files read, images (N, 28, 28) uint8, conversions
    per file, reasons per rejected file)."""
    read, images, notes, rejected = [], [], {}, {}
    for file in image_files(path):
        try:
            image, converted = load_digit(file)
        except ImageError as err:
            rejected[file] = str(err)
            continue
        read.append(file)
        images.append(image)
        notes[file] = converted
    stacked = torch.stack(images) if images else torch.empty(0, 28, 28, dtype=torch.uint8)
    return read, stacked, notes, rejected
