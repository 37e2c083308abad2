"""Digits that no one wrote for MNIST: rendered from fonts and drawn with pens of every width, and
how well a checkpoint reads them.

    lit-mnist drawn write DIR [--seed 0]
    lit-mnist drawn score DIR --config RUN/config.yaml [--ckpt_path CKPT] [--[no-]normalise]

`write` renders the digits 0-9 into DIR/<digit>/<style>.png (so DIR is an image-folder dataset
too): every font shipped inside matplotlib (DejaVu, STIX, Computer Modern; regular, italic and
bold), once dark on light and once light on dark, the bold ones also with an outline of 4% and 7%
of the font size (heavy: a black weight, a marker), in varied colours and image sizes; and pen
drawings of each digit's skeleton at widths from far thinner than MNIST's to far bolder, some with
a seeded wobble. The style is the file name: `dejavusans-bold_white-on-blue_96x96.png`,
`stix-bold-heavy7_white-on-black_40x40.png`, `pen-w4.5_jitter2_black-on-white_128x128.png` (w: the
stroke width in pixels once the digit is scaled into MNIST's 20-pixel box, where MNIST's own are
about 2.3). The same seed writes the same bytes.

`score` reads every image of DIR/<digit>/ as `lit-mnist predict` does
(lit_mnist.data.images.load_digit, with stroke-width normalisation as the run's predict has it,
or as --normalise / --no-normalise say),
classifies them with the checkpoint (the run's best unless --ckpt_path names one) and prints
Markdown tables: the accuracy per style family (font regular, bold, heavy; pen thin, MNIST-like,
thick; "other" for names `write` did not give) and overall, and the confusions.
"""

import argparse
import re
from collections import Counter
from pathlib import Path

import numpy as np

from lit_mnist.errors import UserError
from lit_mnist.tools import fail, parser_for

# (name in the style, file in matplotlib's fonts/ttf): shipped with matplotlib, so a machine
# without system fonts renders the same digits
FONTS = (
    ("dejavusans", "DejaVuSans.ttf"),
    ("dejavusans-oblique", "DejaVuSans-Oblique.ttf"),
    ("dejavuserif", "DejaVuSerif.ttf"),
    ("dejavuserif-italic", "DejaVuSerif-Italic.ttf"),
    ("dejavusansmono", "DejaVuSansMono.ttf"),
    ("stix", "STIXGeneral.ttf"),
    ("stix-italic", "STIXGeneralItalic.ttf"),
    ("cmr10", "cmr10.ttf"),
    ("cmss10", "cmss10.ttf"),
    ("cmtt10", "cmtt10.ttf"),
    ("cmti10", "cmti10.ttf"),
    ("dejavusans-bold", "DejaVuSans-Bold.ttf"),
    ("dejavusans-boldoblique", "DejaVuSans-BoldOblique.ttf"),
    ("dejavuserif-bold", "DejaVuSerif-Bold.ttf"),
    ("dejavuserif-bolditalic", "DejaVuSerif-BoldItalic.ttf"),
    ("dejavusansmono-bold", "DejaVuSansMono-Bold.ttf"),
    ("stix-bold", "STIXGeneralBol.ttf"),
    ("stix-bolditalic", "STIXGeneralBolIta.ttf"),
    ("cmb10-bold", "cmb10.ttf"),
)
# (name, ink, paper): the first half dark on light, the second light on dark; the luminances far
# apart, as in a photo or a scan of ink on paper
DARK_ON_LIGHT = (
    ("black-on-white", (0, 0, 0), (255, 255, 255)),
    ("blue-on-yellow", (20, 30, 160), (250, 235, 120)),
    ("darkred-on-pink", (120, 0, 20), (255, 215, 225)),
    ("darkgreen-on-white", (0, 90, 30), (245, 245, 240)),
    ("black-on-lightgray", (30, 30, 30), (200, 200, 200)),
)
LIGHT_ON_DARK = (
    ("white-on-black", (255, 255, 255), (0, 0, 0)),
    ("white-on-blue", (250, 250, 250), (20, 40, 140)),
    ("yellow-on-navy", (255, 230, 60), (10, 20, 70)),
    ("cyan-on-darkgray", (120, 240, 250), (40, 40, 40)),
    ("lightgray-on-brown", (220, 220, 210), (90, 50, 20)),
)
HEAVY = (4, 7)  # outlines around the bold fonts, in percent of the font size: 7 fills some counters
SIZES = ((28, 28), (40, 40), (64, 64), (96, 64), (96, 96), (128, 160), (200, 200), (256, 256))
PEN_SIZES = SIZES[2:]  # a pen digit below 64 pixels is a few blurred pixels, whatever its width
# stroke widths in MNIST's 20-pixel box (MNIST: 2.3 at the median, 1.7 to 3.4 for 80% of digits)
PEN_WIDTHS = (0.5, 1.0, 1.5, 2.5, 3.5, 4.5, 5.5)
PEN_JITTERS = (0, 2)  # the wobble of each point, in percent of the digit's height
SUPERSAMPLE = 4  # pens draw hard edges: drawn 4x larger and scaled down, their edges are soft


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float) -> list[tuple[float, float]]:
    """Points along an ellipse from `start` to `end` degrees, clockwise on the page (y down)."""
    n = max(2, round(abs(end - start) / 10))
    angles = np.radians(np.linspace(start, end, n + 1))
    return list(zip(cx + rx * np.cos(angles), cy + ry * np.sin(angles), strict=True))


# each digit as pen strokes, polylines in a unit box (x right, y down), shaped as digits are
# written by hand: an open 4, a 1 with a short flag, a 7 without a bar
SKELETONS = {
    0: [_arc(0.5, 0.5, 0.3, 0.5, 0, 360)],
    1: [[(0.35, 0.2), (0.55, 0.0), (0.55, 1.0)]],
    2: [[*_arc(0.5, 0.27, 0.3, 0.27, 190, 400), (0.18, 1.0), (0.85, 1.0)]],
    3: [_arc(0.5, 0.25, 0.28, 0.25, 200, 450) + _arc(0.5, 0.74, 0.32, 0.26, 270, 520)],
    4: [[(0.18, 0.0), (0.1, 0.62), (0.85, 0.62)], [(0.65, 0.15), (0.65, 1.0)]],
    5: [[(0.8, 0.0), (0.25, 0.0), (0.22, 0.5), *_arc(0.48, 0.68, 0.32, 0.32, 215, 510)]],
    6: [[(0.72, 0.0), (0.45, 0.15), *_arc(0.5, 0.72, 0.28, 0.28, 200, 560)]],
    7: [[(0.1, 0.0), (0.9, 0.0), (0.4, 1.0)]],
    8: [_arc(0.5, 0.25, 0.25, 0.25, 90, 450), _arc(0.5, 0.73, 0.3, 0.27, 270, 630)],
    9: [_arc(0.5, 0.28, 0.3, 0.28, 0, 360), [(0.8, 0.28), (0.75, 1.0)]],
}


def font_digit(
    digit: int, font_file: Path, size: tuple[int, int], ink, paper, rng: np.random.Generator, heavy: int = 0
):
    """The digit in a font, about 3/4 of the image's height, a little off centre; `heavy`: an
    outline of this percent of the font size around every stroke, as a black weight or a marker."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", size, paper)
    font_size = round(0.75 * min(size))
    font = ImageFont.truetype(str(font_file), font_size)
    offset = rng.uniform(-0.06, 0.06, 2) * min(size)
    centre = (size[0] / 2 + offset[0], size[1] / 2 + offset[1])
    outline = round(heavy / 100 * font_size)
    ImageDraw.Draw(image).text(centre, str(digit), ink, font, "mm", stroke_width=outline, stroke_fill=ink)
    return image


def pen_digit(
    digit: int, width: float, jitter: float, size: tuple[int, int], ink, paper, rng: np.random.Generator
):
    """The digit's skeleton drawn with a round pen whose stroke is `width` pixels once the digit is
    scaled into a 20-pixel box; with jitter, slanted and wobbling a little."""
    from PIL import Image, ImageDraw

    big = (size[0] * SUPERSAMPLE, size[1] * SUPERSAMPLE)
    height = 0.7 * min(big)
    # the box holds the pen's width too: pen / (height + pen) * 20 = width
    pen = width * height / (20 - width)
    slant = rng.uniform(-0.2, 0.2) if jitter else 0.0
    image = Image.new("RGB", big, paper)
    draw = ImageDraw.Draw(image)
    for stroke in SKELETONS[digit]:
        points = np.array(stroke) - 0.5
        points[:, 0] -= slant * points[:, 1]
        points = points * height + rng.normal(0, jitter / 100 * height, points.shape)
        points += (big[0] / 2, big[1] / 2)
        xy = [tuple(p) for p in points]
        draw.line(xy, fill=ink, width=max(1, round(pen)))
        for x, y in xy:  # round ends and joins
            draw.ellipse((x - pen / 2, y - pen / 2, x + pen / 2, y + pen / 2), fill=ink)
    return image.resize(size, Image.LANCZOS)


def write(folder: Path, seed: int = 0) -> list[Path]:
    """Every style of every digit as DIR/<digit>/<style>.png; the same seed, the same files."""
    import matplotlib

    fonts = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    rng = np.random.default_rng(seed)
    written = []
    for digit in range(10):
        (folder / str(digit)).mkdir(parents=True, exist_ok=True)
        for name, file in FONTS:
            styles = [(name, colours, 0) for colours in (DARK_ON_LIGHT, LIGHT_ON_DARK)]
            if "bold" in name:
                styles += [(f"{name}-heavy{heavy}", DARK_ON_LIGHT + LIGHT_ON_DARK, heavy) for heavy in HEAVY]
            for style, colours, heavy in styles:
                colour, ink, paper = colours[rng.integers(len(colours))]
                size = SIZES[rng.integers(len(SIZES))]
                image = font_digit(digit, fonts / file, size, ink, paper, rng, heavy)
                written.append(
                    _save(image, folder / str(digit) / f"{style}_{colour}_{size[0]}x{size[1]}.png")
                )
        for width in PEN_WIDTHS:
            for jitter in PEN_JITTERS:
                colour, ink, paper = (DARK_ON_LIGHT + LIGHT_ON_DARK)[rng.integers(len(DARK_ON_LIGHT) * 2)]
                size = PEN_SIZES[rng.integers(len(PEN_SIZES))]
                image = pen_digit(digit, width, jitter, size, ink, paper, rng)
                style = f"pen-w{width:.1f}_jitter{jitter}_{colour}_{size[0]}x{size[1]}"
                written.append(_save(image, folder / str(digit) / f"{style}.png"))
    return written


def _save(image, path: Path) -> Path:
    image.save(path, optimize=False)
    return path


PEN_WIDTH = re.compile(r"pen-w(\d+(?:\.\d+)?)_")
FAMILIES = (
    "font regular",
    "font bold",
    "font heavy (bold + outline)",
    "pen thin (w < 2)",
    "pen MNIST-like (w 2-4)",
    "pen thick (w >= 4)",
    "other",
)


def family(style: str) -> str:
    """The family (one of FAMILIES) of a file name that `write` gave; "other" for any other."""
    pen = PEN_WIDTH.match(style)
    if pen:
        width = float(pen.group(1))
        return FAMILIES[3] if width < 2 else FAMILIES[4] if width < 4 else FAMILIES[5]
    font, heavy, _ = style.split("_")[0].partition("-heavy")
    if font not in dict(FONTS):
        return FAMILIES[-1]
    return FAMILIES[2] if heavy else FAMILIES[1] if "bold" in font else FAMILIES[0]


def read(folder: Path, normalise: bool):
    """(files, digits (N, 28, 28) uint8, labels, files whose stroke was changed, rejected
    file -> reason) of the images in DIR/<digit>/."""
    import torch

    from lit_mnist.data.images import ImageError, image_files, load_digit

    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder: write one with `lit-mnist drawn write {folder}`")
    classes = sorted(
        (p for p in folder.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)
    )
    files, digits, labels, restroked, rejected = [], [], [], [], {}
    for class_folder in classes:
        try:
            found = image_files(class_folder)
        except ImageError:
            continue
        for file in found:
            try:
                digit, notes = load_digit(file, normalise_stroke=normalise)
            except ImageError as err:
                rejected[file] = str(err)
                continue
            files.append(file)
            digits.append(digit)
            labels.append(int(class_folder.name))
            if any(note.startswith("stroke ") for note in notes):
                restroked.append(file)
    if not files:
        raise UserError(
            f"{folder} holds no digit folders (0/ to 9/) with images: "
            f"write one with `lit-mnist drawn write {folder}`"
        )
    return files, torch.stack(digits), torch.tensor(labels), restroked, rejected


def score(folder: Path, checkpoint: Path, normalise: bool | None = None) -> dict:
    """How the checkpoint reads the digits under `folder`: per image its family, label and
    prediction, and which images were restroked or rejected. `normalise` None: as `predict` with
    the checkpoint's data settings does (`normalise_stroke`, on unless the run turned it off)."""
    from lit_mnist.tools.runs import load_model, predict_logits, read_checkpoint

    model = load_model(checkpoint)
    if tuple(model.data.shape) != (1, 28, 28):
        raise UserError(f"checkpoint {checkpoint} reads {tuple(model.data.shape)} images, not 28x28 digits")
    if normalise is None:
        settings = read_checkpoint(checkpoint).get("datamodule_hyper_parameters") or {}
        normalise = bool(settings.get("normalise_stroke", True))
    files, digits, labels, restroked, rejected = read(folder, normalise)
    predictions = predict_logits(model, digits).argmax(1)
    return {
        "folder": folder,
        "checkpoint": checkpoint,
        "normalise": normalise,
        "families": [family(f.stem) for f in files],
        "labels": labels.tolist(),
        "predictions": predictions.tolist(),
        "restroked": len(restroked),
        "rejected": rejected,
    }


def report(scores: dict) -> str:
    """The scores as Markdown: a heading line, accuracy per family and overall, the confusions."""
    rows = list(zip(scores["families"], scores["labels"], scores["predictions"], strict=True))
    normalised = (
        f"stroke normalisation on ({scores['restroked']} of {len(rows)} restroked)"
        if scores["normalise"]
        else "stroke normalisation off"
    )
    lines = [
        f"{len(rows)} digits from {scores['folder']}, checkpoint {scores['checkpoint']}, {normalised}",
        "",
        "| family | images | correct | accuracy |",
        "| --- | ---: | ---: | ---: |",
    ]

    def row(name: str, chosen: list) -> str:
        right = sum(label == predicted for _, label, predicted in chosen)
        return f"| {name} | {len(chosen)} | {right} | {100 * right / len(chosen):.1f}% |"

    for name in FAMILIES:
        chosen = [r for r in rows if r[0] == name]
        if chosen:
            lines.append(row(name, chosen))
    lines.append(row("**all**", rows))
    wrong = Counter((label, predicted) for _, label, predicted in rows if label != predicted)
    if wrong:
        lines += ["", "| true → predicted | count | in families |", "| --- | ---: | --- |"]
        for (label, predicted), count in sorted(wrong.items(), key=lambda item: (-item[1], item[0])):
            where = Counter(f for f, t, p in rows if (t, p) == (label, predicted))
            families = ", ".join(f"{name} {n}" for name, n in sorted(where.items(), key=lambda i: -i[1]))
            lines.append(f"| {label} → {predicted} | {count} | {families} |")
    for reason in scores["rejected"].values():
        lines.append(f"\nnot read: {reason}")
    return "\n".join(lines)


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    parser = parser_for(prog, __doc__)
    jobs = parser.add_subparsers(dest="job", required=True)
    writing = jobs.add_parser("write", help="render the digits into DIR/<digit>/<style>.png")
    writing.add_argument("folder", type=Path, metavar="DIR")
    writing.add_argument("--seed", type=int, default=0, help="colours, sizes, placement, wobble (default 0)")
    scoring = jobs.add_parser("score", help="a checkpoint's accuracy on the digits under DIR")
    scoring.add_argument("folder", type=Path, metavar="DIR")
    scoring.add_argument("--config", type=Path, help="a run's config.yaml: its best checkpoint is scored")
    scoring.add_argument("--ckpt_path", type=Path, help="the checkpoint to score (default: the run's best)")
    scoring.add_argument(
        "--normalise",
        action=argparse.BooleanOptionalAction,
        help="bring odd stroke widths to MNIST's (--no-normalise: read the images as drawn); "
        "default: as the checkpoint's run predicts (its data.normalise_stroke)",
    )
    args = parser.parse_args(argv)
    if args.job == "write":
        try:
            written = write(args.folder, args.seed)
        except OSError as err:
            fail(f"cannot write the digits into {args.folder}: {err.strerror}")
        print(f"wrote {len(written)} digits ({len(written) // 10} styles each) into {args.folder}")
        return
    try:
        checkpoint = args.ckpt_path or _best_of_run(args.config)
        print(report(score(args.folder, checkpoint, args.normalise)))
    except UserError as err:
        fail(str(err))


def _best_of_run(config: Path | None) -> Path:
    from lit_mnist.tools.runs import best_checkpoint

    if config is None:
        raise UserError("give the checkpoint: --ckpt_path CKPT, or --config RUN/config.yaml (the run's best)")
    if not config.is_file():
        raise UserError(f"--config {config}: no such file")
    return best_checkpoint(config.parent)


if __name__ == "__main__":
    main()
