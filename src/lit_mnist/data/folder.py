"""Your own images as a dataset: a folder per class, decoded once into one uint8 tensor and cached
beside the images.

    root/train/<class>/<image>      required: a folder per class, named as the class
    root/val/<class>/<image>        optional: else val_size (a count or a fraction) of train is held out
    root/test/<class>/<image>       optional: else test_size of train is held out, before val

Images are any format Pillow reads (PNG, JPEG, BMP, GIF, TIFF, WebP), found by suffix in each class
folder and its subfolders; other files and hidden ones (.DS_Store, ._x.png) are passed over.
"""

import hashlib
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Literal, NoReturn

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only
from PIL import Image

from lit_mnist.data.base import ImageDataModule, Split, split_off
from lit_mnist.data.images import SUFFIXES, ImageError, image_files
from lit_mnist.errors import ParameterError

SPLITS = ("train", "val", "test")
CACHE_FOLDER = ".lit_mnist_cache"
# part of every cache file's name: a change to what decode() makes of a file must change it
DECODER_VERSION = 1
NAMED_FAILURES = 20  # unreadable files named one per line; the rest are counted
# split -> class -> image files, as paths relative to the root
Layout = dict[str, dict[str, list[str]]]


def decode(path: str | Path, size: tuple[int, int], channels: int | None) -> tuple[np.ndarray, list[str]]:
    """An image file as uint8 (C, H, W) at `size` (height, width), stretched to it when its shape
    differs, and what was converted to get it. `channels` 1 or 3; None keeps grayscale images (and
    colour ones whose channels are all equal) at 1 and colour ones at 3. Transparent pixels become
    white."""
    height, width = size
    try:
        with Image.open(path) as image:
            original = image.size
            # JPEG decodes at 1/2, 1/4 or 1/8 scale when that still covers the target: much less work
            image.draft(None, (width, height))
            image.load()
            mode = image.mode
            gray = Image.getmodebase(mode) == "L"
            if mode.startswith("I"):
                # 16-bit grayscale: Pillow's conversion to 8 bits clips at 255 instead of scaling
                image = Image.fromarray((np.asarray(image) >> 8).clip(0, 255).astype(np.uint8))
            elif "A" in mode or "transparency" in image.info:
                white = Image.new("RGBA", image.size, "white")
                image = Image.alpha_composite(white, image.convert("RGBA"))
            image = image.convert("L" if channels == 1 or (channels is None and gray) else "RGB")
            if image.size != (width, height):
                image = image.resize((width, height), Image.Resampling.BILINEAR)
            pixels = np.asarray(image)
    # Pillow's format plugins raise many kinds on a malformed file (OSError, SyntaxError, EOFError,
    # struct.error, DecompressionBombError, ...): any of them makes it one unreadable file
    except Exception as err:
        raise unreadable(path, err) from None
    pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    if channels is None and len(pixels) == 3 and (pixels == pixels[:1]).all():
        pixels = pixels[:1]
    notes = []
    if len(pixels) != (1 if gray else 3) or mode not in ("L", "RGB"):
        notes.append(f"{mode} to {'grayscale' if len(pixels) == 1 else 'RGB'}")
    if original != (width, height):
        notes.append(f"{original[0]}x{original[1]} resized to {width}x{height}")
    return np.ascontiguousarray(pixels), notes


def unreadable(path: str | Path, err: Exception) -> ImageError:
    reason = str(err).splitlines()[0] if str(err) else ""
    return ImageError(f"{path}: not a readable image ({type(err).__name__}{': ' * bool(reason)}{reason})")


def images_in(root: str, folder: str) -> list[str]:
    """The image files (by suffix) in a folder of root and its subfolders, sorted, relative to root;
    hidden files and folders passed over. os.walk and strings, not pathlib: MNIST's 70,000 files are listed
    in 0.2 s instead of 1.9, on every start."""
    found = []
    for parent, folders, names in os.walk(os.path.join(root, folder)):
        folders[:] = [name for name in folders if not name.startswith(".")]
        relative = os.path.relpath(parent, root)
        found += [
            os.path.join(relative, name)
            for name in names
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in SUFFIXES
        ]
    return sorted(found)


def with_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """A decoded grayscale image repeated to RGB when the dataset is in colour."""
    return pixels.repeat(channels, axis=0) if len(pixels) < channels else pixels


class ImageFolderDataModule(ImageDataModule):
    def __init__(
        self,
        root: str,
        size: int | tuple[int, int] | None = None,
        channels: int | None = None,
        test_size: float = 0.1,
        on_error: Literal["skip", "refuse"] = "skip",
        **kwargs,
    ) -> None:
        """
        Args:
            root: the folder holding train/<class>/ (and optionally val/ and test/ with the same
                classes); the class names are the folder names, sorted.
            size: the images' height and width (one number: square); an image of another shape is
                stretched to it. None: the most common shape in the folder (the larger one on a tie).
            channels: 1 (grayscale) or 3 (RGB); None: 1 when every image is grayscale (or colour
                with equal channels), else 3.
            test_size: the fraction of train held out as the test set when there is no test/
                folder, drawn with split_seed before the validation split. A fraction, not a
                count, so that the default fits a folder of any size.
            on_error: an image file that cannot be read is named on stderr and left out ("skip"),
                or stops the run with an error naming the first few ("refuse").
            kwargs: the arguments of `ImageDataModule` (batch size, splits, loader, augmentation,
                predict_path: your own images, read as the training images are).

        The decoded images are cached in root/.lit_mnist_cache/, one file per size and channels;
        a file added, removed or changed under root makes it decode again.
        """
        self._size = (size, size) if isinstance(size, int) else None if size is None else tuple(size)
        if self._size is not None and (len(self._size) != 2 or min(self._size) < 1):
            raise ParameterError(self, "size", f"must be a side or [height, width] of at least 1, got {size}")
        if channels not in (None, 1, 3):
            raise ParameterError(self, "channels", f"must be 1, 3 or None (from the images), got {channels}")
        if not 0 < test_size < 1:
            raise ParameterError(self, "test_size", f"must be a fraction between 0 and 1, got {test_size}")
        if on_error not in ("skip", "refuse"):
            raise ParameterError(self, "on_error", f"must be skip or refuse, got {on_error!r}")
        super().__init__(**kwargs)
        self.root = Path(root).expanduser()
        self._cache: Path | None = None  # set by prepare_data
        self._decoded: dict | None = None  # just decoded: load_splits takes it instead of reading the cache

    # -- the folder

    def _files(self) -> Layout:
        """The image files of each split and class, the layout checked."""
        root = self.root
        if not root.is_dir():
            raise ParameterError(self, "root", f"{root}: no such folder")
        if not (root / "train").is_dir():
            raise ParameterError(
                self,
                "root",
                f"{root} has no train/ folder: put the images in {root}/train/<class>/, a folder per class",
            )
        layout = {}
        for split in SPLITS:
            if not (root / split).is_dir():
                continue
            classes = sorted(
                p.name for p in (root / split).iterdir() if p.is_dir() and not p.name.startswith(".")
            )
            if not classes:
                raise ParameterError(
                    self,
                    "root",
                    f"{root / split} has no class folders: put the images in "
                    f"{root / split}/<class>/, a folder per class",
                )
            layout[split] = {name: images_in(str(root), os.path.join(split, name)) for name in classes}
            if empty := [name for name, files in layout[split].items() if not files]:
                raise ParameterError(
                    self,
                    "root",
                    f"{root / split / empty[0]}: no image files ({', '.join(sorted(SUFFIXES))}); "
                    "fill the class folder or remove it",
                )
        classes = list(layout["train"])
        if len(classes) < 2:
            raise ParameterError(
                self,
                "root",
                f"{root}/train holds one class ({classes[0]}): a classifier needs at least 2 class folders",
            )
        for split in ("val", "test"):
            if unknown := sorted(set(layout.get(split, {})) - set(classes)):
                raise ParameterError(
                    self, "root", f"{root / split} has classes that train/ lacks: {', '.join(unknown)}"
                )
        return layout

    def _fingerprint(self, layout: Layout) -> str:
        """Changes when an image file is added, removed, renamed or rewritten."""
        digest, root = hashlib.sha256(), str(self.root)
        for folders in layout.values():
            for files in folders.values():
                for file in files:
                    stat = os.stat(os.path.join(root, file))
                    digest.update(f"{file}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:16]

    def _target(self) -> tuple[tuple[int, int] | None, int | None]:
        """(size, channels) to decode to: a checkpoint's spec, when evaluating one, is what its
        net reads; else the settings (None: from the images)."""
        if self._spec is not None:
            return (self._spec.height, self._spec.width), self._spec.channels
        return self._size, self.hparams.channels

    def _cache_file(self, layout: Layout) -> Path:
        size, channels = self._target()
        settings = f"{'x'.join(map(str, size)) if size else 'auto'}-c{channels or 'auto'}-v{DECODER_VERSION}"
        return self.root / CACHE_FOLDER / f"{settings}-{self._fingerprint(layout)}.pt"

    # -- decoding, once

    def prepare_data(self) -> None:
        # loaded already: the spec was asked for before the Trainer calls this
        if self._predicting_own_images() or len(self.labels):
            return
        layout = self._files()
        self._cache = self._cache_file(layout)
        if not self._cache.is_file():
            self._decoded = self._decode_all(layout)
            self._write_cache(self._cache, self._decoded)

    def _decode_all(self, layout: Layout) -> dict:
        size, channels = self._target()
        classes = list(layout["train"])
        if size is None:
            size = self._most_common_size(layout)
        decoded, unreadable = {}, {}
        for split, folders in layout.items():
            pixels, labels = [], []
            for name, files in folders.items():
                label = classes.index(name)
                for file in files:
                    try:
                        image, _ = decode(self.root / file, size, channels)
                    except ImageError as err:
                        unreadable[file] = str(err)
                        continue
                    pixels.append(image)
                    labels.append(label)
            decoded[split] = (pixels, labels)
        if not decoded["train"][0]:
            self._nothing_readable(layout, unreadable)
        depth = channels or max(len(p) for pixels, _ in decoded.values() for p in pixels)
        splits = {}
        for split, (pixels, labels) in decoded.items():
            images = (
                np.stack([with_channels(p, depth) for p in pixels])
                if pixels
                else np.zeros((0, depth, *size), np.uint8)
            )
            splits[split] = (torch.from_numpy(images), torch.tensor(labels, dtype=torch.long))
        return {"splits": splits, "classes": classes, "unreadable": unreadable}

    def _most_common_size(self, layout: Layout) -> tuple[int, int]:
        """(height, width) of the most images, the larger on a tie; from the files' headers."""
        shapes, failures = Counter(), {}
        for folders in layout.values():
            for files in folders.values():
                for file in files:
                    try:
                        with Image.open(self.root / file) as image:
                            shapes[image.size[::-1]] += 1
                    except Exception as err:  # as in decode(), which names each such file
                        failures[file] = str(unreadable(self.root / file, err))
        if not shapes:
            self._nothing_readable(layout, failures)
        return max(shapes, key=lambda shape: (shapes[shape], shape[0] * shape[1]))

    def _nothing_readable(self, layout: Layout, failures: dict[str, str]) -> NoReturn:
        files = [file for files in layout["train"].values() for file in files]
        raise ParameterError(
            self,
            "root",
            f"{self.root}/train: none of its {len(files)} image files could be read ({failures[files[0]]})",
        )

    def _write_cache(self, cache: Path, decoded: dict) -> None:
        """Written under a name of this process and moved into place: a run killed mid-write, or
        two runs writing at once, never leave a half file under the real name. The caches of this
        size and channels for earlier states of the folder are removed."""
        temporary = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        try:
            cache.parent.mkdir(exist_ok=True)
            with open(temporary, "wb") as file:
                torch.save(decoded, file)
            os.replace(temporary, cache)
        except (OSError, RuntimeError) as err:  # torch.save's writer fails with RuntimeError
            temporary.unlink(missing_ok=True)
            _say(
                f"warning: could not cache the decoded images in {cache.parent} ({err}): "
                "each run will decode them again"
            )
            return
        settings = cache.name.rsplit("-", 1)[0]
        for stale in cache.parent.glob(f"{settings}-*.pt"):
            if stale != cache:
                stale.unlink(missing_ok=True)

    # -- what the base class asks for

    def load_splits(self) -> tuple[dict[str, Split], tuple[str, ...]]:
        if self._decoded is not None:
            data, self._decoded = self._decoded, None
        else:
            data = torch.load(self._cache, weights_only=True)
        unreadable = data["unreadable"]
        if unreadable and self.hparams.on_error == "refuse":
            first = "; ".join(
                f"{path}: {why.split(': ', 1)[-1]}" for path, why in list(unreadable.items())[:3]
            )
            raise ParameterError(
                self,
                "root",
                f"{self.root}: {len(unreadable)} unreadable image files "
                f"({first}); remove or replace them, or set on_error to skip",
            )
        for why in list(unreadable.values())[:NAMED_FAILURES]:
            _say(f"skipped {why}")
        if len(unreadable) > NAMED_FAILURES:
            _say(f"skipped {len(unreadable) - NAMED_FAILURES} more unreadable files under {self.root}")
        splits = data["splits"]
        if "test" not in splits:
            images, labels = splits["train"]
            n = len(labels)
            if n < 3:
                raise ParameterError(
                    self,
                    "root",
                    f"{self.root}/train holds {n} readable images: "
                    "too few to hold out a test and a validation split",
                )
            held_out, rest = split_off(n, max(1, round(self.hparams.test_size * n)), self.hparams.split_seed)
            splits["test"], splits["train"] = (
                (images[held_out], labels[held_out]),
                (images[rest], labels[rest]),
            )
        return splits, tuple(data["classes"])

    def predict_images(self, path: str):
        spec = self.spec
        read, images, notes, rejected = [], [], {}, {}
        for file in image_files(path):
            try:
                image, converted = decode(file, (spec.height, spec.width), spec.channels)
            except ImageError as err:
                rejected[file] = str(err)
                continue
            read.append(file)
            images.append(torch.from_numpy(image))
            notes[file] = converted
        stacked = torch.stack(images) if images else torch.empty(0, *spec.shape, dtype=torch.uint8)
        return read, stacked, notes, rejected


@rank_zero_only
def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
