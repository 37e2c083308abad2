"""How `lit-mnist predict` reads digits that already are MNIST's, and drawn ones: the numbers of
docs/results.md, "Predict on official digits written as files".

    python docs/measure/predict_on_files.py DATA_DIR WORK_DIR CHECKPOINT [CHECKPOINT ...]

Writes the 10,000 official test digits as PNG class folders under WORK_DIR (at 28, 56 and 112
pixels, bicubic; at 84 pixels nearest-neighbour and dark on light) and the `lit-mnist drawn`
digits (seed 0), reads each image as predict does (lit_mnist.data.images.load_digit) with and
without stroke normalisation, and prints each checkpoint's accuracy on them beside its accuracy on
the test set itself. The reading is cached in WORK_DIR/<set>.pt.
"""

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from lit_mnist.data import load_split
from lit_mnist.data.images import STROKE_LIMIT, load_digit, stroke_widths
from lit_mnist.tools import drawn
from lit_mnist.tools.runs import load_model, predict_logits

SETS = {  # name: (size, resampling, dark on light)
    "official28": (28, Image.BICUBIC, False),
    "official56": (56, Image.BICUBIC, False),
    "official112": (112, Image.BICUBIC, False),
    "official84-nearest-inverted": (84, Image.NEAREST, True),
}


def write_official(data_dir: str, work: Path) -> None:
    images, labels = load_split(data_dir, "test")
    for name, (size, resample, invert) in SETS.items():
        if (work / name).exists():
            continue
        for i, (image, label) in enumerate(zip(images.numpy(), labels.tolist(), strict=True)):
            folder = work / name / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            picture = Image.fromarray(image).resize((size, size), resample)
            (ImageOps.invert(picture) if invert else picture).save(folder / f"{i:05d}.png")


def read(folder: Path, cache: Path) -> dict:
    """The digits as drawn, as normalised, their stroke widths and labels."""
    if cache.exists():
        return torch.load(cache)
    files, plain, labels, _, _ = drawn.read(folder, normalise=False)
    widths = stroke_widths(plain.numpy())
    normalised = plain.clone()
    for i in np.nonzero(widths > STROKE_LIMIT)[0]:
        normalised[i] = load_digit(files[i], normalise_stroke=True)[0]
    data = {"plain": plain, "normalised": normalised, "widths": torch.from_numpy(widths), "labels": labels}
    torch.save(data, cache)
    return data


def main(data_dir: str, work: Path, checkpoints: list[str]) -> None:
    write_official(data_dir, work)
    if not (work / "drawn").exists():
        drawn.write(work / "drawn")
    sets = {name: read(work / name, work / f"{name}.pt") for name in [*SETS, "drawn"]}
    test_images, test_labels = load_split(data_dir, "test")
    for checkpoint in checkpoints:
        model = load_model(Path(checkpoint))

        def accuracy(images: torch.Tensor, labels: torch.Tensor, model=model) -> float:
            return 100 * (predict_logits(model, images).argmax(1) == labels).float().mean().item()

        print(f"\n{checkpoint}: the test set itself {accuracy(test_images, test_labels):.2f}%")
        print("| set | as drawn | normalised | thinned |\n| --- | --- | --- | --- |")
        for name, data in sets.items():
            thinned = int((data["widths"] > STROKE_LIMIT).sum())
            plain, normalised = (
                accuracy(data["plain"], data["labels"]),
                accuracy(data["normalised"], data["labels"]),
            )
            print(f"| {name} | {plain:.2f}% | {normalised:.2f}% | {thinned} |")


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), sys.argv[3:])
