"""Your own digit images as MNIST digits: grayscale, light on dark, the digit scaled into a 20x20
box and centred by its centre of mass in 28x28, as MNIST's were made; strokes bolder than
nearly all of MNIST's are thinned to MNIST's width."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from lit_mnist.data.mnist import DataError

SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
MIN_SIDE = 8  # smaller images hold too few pixels to be a digit

# MNIST's strokes, by `stroke_widths` on its 60,000 training digits: median 2.33 pixels, 10th and
# 90th percentiles 1.66 and 3.40, 99.5th 5.28. Only a stroke bolder than 99.5% of MNIST's (a bold
# font, a felt pen) is thinned to the median. Measured on official test digits written as image
# files and on `lit-mnist drawn` digits (docs/results.md): thinning strokes within MNIST's range
# costs its own digits more than it gains, and thickening fine strokes gains nothing.
STROKE_TARGET = 2.3
STROKE_LIMIT = 5.28
# where MNIST's digits have their centre of mass: pixel 14 (row and column; 13.99 and 14.01 on
# average over the training digits), not the frame's middle at 13.5. Centred at 13.5, most
# digits came back a pixel off from where the nets learnt them (86% of the official test digits).
MNIST_CENTRE = 14.0
WORK_BOX = 160  # strokes are changed at 8x the 20-pixel box: in eighths of a pixel


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


def load_digit(path: Path, normalise_stroke: bool = True) -> tuple[Tensor, list[str]]:
    """A uint8 (28, 28) MNIST-style digit from an image file, and what was converted to get it.
    With `normalise_stroke`, a stroke bolder than nearly all of MNIST's is thinned to its median."""
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
    crop = _cropped(gray)
    if size != (28, 28):
        notes.append(f"{size[0]}x{size[1]} scaled to 28x28")
    digit = _centred(crop)
    if normalise_stroke:
        width = float(stroke_widths(digit.numpy()[None])[0])
        if width > STROKE_LIMIT:
            digit = _centred(_cropped(_thinned(crop, width)))
            now = float(stroke_widths(digit.numpy()[None])[0])
            notes.append(f"stroke {width:.1f} px thinned to {now:.1f}")
    return digit, notes


def _cropped(gray: np.ndarray) -> np.ndarray:
    """The ink's bounding box, its brightest pixel at 255."""
    gray = gray * (255 / gray.max())
    rows, cols = np.nonzero(gray > 0.2 * 255)
    return gray[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


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
    shift_y = round(MNIST_CENTRE - (ys * canvas).sum() / mass)
    shift_x = round(MNIST_CENTRE - (xs * canvas).sum() / mass)
    # shift within the frame: the 20x20 box leaves 4 pixels each side
    shift_y = int(np.clip(shift_y, -top, 28 - top - size[1]))
    shift_x = int(np.clip(shift_x, -left, 28 - left - size[0]))
    canvas = np.roll(canvas, (shift_y, shift_x), axis=(0, 1))
    return torch.from_numpy(np.clip(canvas, 0, 255).round().astype(np.uint8))


def stroke_widths(digits: np.ndarray) -> np.ndarray:
    """The mean stroke width in pixels of each digit of a stack (N, H, W), light on dark: the ink
    (grey levels summed, the brightest pixel counting 1) over the length of its skeleton. A
    skeleton stops about half a stroke width short of each free end, so there the ink counts
    half a square of the width too."""
    ink = digits.astype(np.float64) / np.maximum(digits.max(axis=(1, 2), keepdims=True), 1)
    skeleton = _skeleton(ink >= 0.5)
    ring = _neighbours(skeleton)
    _, _, e, se, s, sw, w, _ = ring
    # each link counted once, from its west or north end; a diagonal one counts sqrt(2) unless
    # a pixel in the corner already links the two
    straight = (skeleton & e).sum((1, 2)) + (skeleton & s).sum((1, 2))
    diagonal = (skeleton & se & ~e & ~s).sum((1, 2)) + (skeleton & sw & ~s & ~w).sum((1, 2))
    length = straight + np.sqrt(2) * diagonal
    ends = (skeleton & (sum(x.astype(np.uint8) for x in ring) == 1)).sum((1, 2))
    area = ink.sum((1, 2))
    # area = width * length + ends / 2 * width**2, solved for the width
    with np.errstate(divide="ignore", invalid="ignore"):
        with_ends = (np.sqrt(length**2 + 2 * ends * area) - length) / ends
    return np.where(ends > 0, with_ends, area / np.maximum(length, 1))


def _neighbours(mask: np.ndarray) -> list[np.ndarray]:
    """Each pixel's 8 neighbours in a stack of masks or grey images (N, H, W), clockwise from
    north; False (0) outside the image."""
    height, width = mask.shape[1:]
    padded = np.pad(mask, ((0, 0), (1, 1), (1, 1)))
    steps = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))
    return [padded[:, 1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width] for dy, dx in steps]


def _skeleton(mask: np.ndarray) -> np.ndarray:
    """Zhang and Suen's thinning (1984) of a stack of masks (N, H, W): the ink peeled off a pixel
    at a time from alternating sides until lines one pixel wide remain, connected as the ink was."""
    mask = mask.copy()
    while True:
        removed = False
        for first in (True, False):
            n, _, e, _, s, _, w, _ = ring = _neighbours(mask)
            inked = sum(x.astype(np.uint8) for x in ring)
            rises = sum((~a & b).astype(np.uint8) for a, b in zip(ring, ring[1:] + ring[:1], strict=True))
            # the first pass peels south-east boundaries and north-west corners, the second the rest
            kept = (n & e & s) | (e & s & w) if first else (n & e & w) | (n & s & w)
            peel = mask & (inked >= 2) & (inked <= 6) & (rises == 1) & ~kept
            if peel.any():
                mask &= ~peel
                removed = True
        if not removed:
            return mask


def _thinned(crop: np.ndarray, width: float) -> np.ndarray:
    """The crop, light on dark, with strokes `width` pixels wide in the 20-pixel box (more than
    STROKE_TARGET) brought to STROKE_TARGET: eroded by the difference, and drawn again along their
    skeleton with a round pen of the target's width, so that a part thinner than the mean (a
    serif, a hairline, a blob's narrow neck) keeps a stroke where erosion alone would erase it.
    Works at WORK_BOX pixels: scaled down, the edges are soft as MNIST's are."""
    scale = WORK_BOX / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    work = np.asarray(Image.fromarray(crop.astype(np.float32), mode="F").resize(size, Image.LANCZOS))
    # the box shrinks by twice the change per side, and filling it again widens the strokes:
    # (width - 2 d) * 20 / (20 - 2 d) = STROKE_TARGET, solved for d
    per_side = (width - STROKE_TARGET) / (2 - STROKE_TARGET / 10)
    steps = round(per_side * WORK_BOX / 20)
    # half the brightest, not of 255: a hairline scaled down is faint
    skeleton = _skeleton(work[None] >= work.max() / 2)[0]
    rows, cols = np.nonzero(skeleton)
    extent = max(np.ptp(rows), np.ptp(cols)) + 1
    # the pen widens the box too: pen / (extent + pen) * 20 = STROKE_TARGET
    pen = STROKE_TARGET * extent / (20 - STROKE_TARGET)
    pen_steps = round((pen - 1) / 2)
    margin = max(steps, pen_steps)  # room to grow
    moved = _spread(np.pad(work.clip(0, 255), margin), steps, np.minimum)
    drawn = _spread(np.pad(skeleton, margin) * np.float32(255), pen_steps, np.maximum)
    return np.maximum(moved, drawn)


def _spread(image: np.ndarray, steps: int, extreme) -> np.ndarray:
    """`steps` dilations (extreme np.maximum) or erosions (np.minimum) of a grey image, by a cross
    (n, e, s, w) and a 3x3 square in turn: an octagon, nearly as round as a pen tip."""
    for step in range(steps):
        ring = [x[0] for x in _neighbours(image[None])]
        image = extreme.reduce([image, *(ring[::2] if step % 2 == 0 else ring)])
    return image


def load_digits(
    path: str | Path, normalise_stroke: bool = True
) -> tuple[list[Path], Tensor, dict[Path, list[str]], dict[Path, str]]:
    """Every image under `path` as a digit (`load_digit`): (files read, images (N, 28, 28) uint8,
    conversions per file, reasons per rejected file)."""
    read, images, notes, rejected = [], [], {}, {}
    for file in image_files(path):
        try:
            image, converted = load_digit(file, normalise_stroke)
        except ImageError as err:
            rejected[file] = str(err)
            continue
        read.append(file)
        images.append(image)
        notes[file] = converted
    stacked = torch.stack(images) if images else torch.empty(0, 28, 28, dtype=torch.uint8)
    return read, stacked, notes, rejected
