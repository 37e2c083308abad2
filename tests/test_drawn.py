"""Bold and fine strokes: the width estimate, the normalisation in the predict path, the thickness
augmentation, and `lit-mnist drawn` (a rendered set of digits, and a checkpoint's score on it)."""

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from conftest import ROOT, SMALL, run_cli
from lit_mnist.data import AugmentSettings, MNISTDataModule, load_split
from lit_mnist.data.augment import random_thickness
from lit_mnist.data.images import MNIST_CENTRE, STROKE_LIMIT, STROKE_TARGET, load_digit, stroke_widths
from lit_mnist.errors import ParameterError
from lit_mnist.tools import drawn

WHITE, BLACK = (255, 255, 255), (0, 0, 0)


def width_of(digit: torch.Tensor) -> float:
    return float(stroke_widths(digit.numpy()[None])[0])


def pen(path: Path, digit: int, width: float, size: int = 200) -> Path:
    """The digit drawn with a pen `width` pixels wide in MNIST's 20-pixel box, black on white."""
    drawn.pen_digit(digit, width, 0, (size, size), BLACK, WHITE, np.random.default_rng(0)).save(path)
    return path


def shape(path: Path, kind: str, pen_px: int) -> tuple[Path, float]:
    """A ring, a frame or a diagonal bar drawn `pen_px` wide on 400 pixels, and that width in the
    20-pixel box the longer side of the ink is scaled to."""
    image = Image.new("L", (400, 400), 0)
    draw = ImageDraw.Draw(image)
    if kind == "ring":
        draw.ellipse([60, 40, 340, 360], outline=255, width=pen_px)
    elif kind == "frame":
        draw.rectangle([60, 40, 340, 360], outline=255, width=pen_px)
    else:
        draw.line([(80, 80), (320, 320)], fill=255, width=pen_px)
    rows, cols = np.nonzero(np.asarray(image) > 50)
    box = max(np.ptp(rows), np.ptp(cols)) + 1
    image.save(path)
    return path, pen_px * 20 / box


@pytest.mark.parametrize("kind", ["ring", "frame", "diagonal"])
@pytest.mark.parametrize("box_width", [1.5, 2.5, 4, 6])
def test_the_estimate_reads_strokes_drawn_at_known_widths(kind, box_width, tmp_path):
    path, expected = shape(tmp_path / "shape.png", kind, round(box_width * 16))
    digit, _ = load_digit(path, normalise_stroke=False)
    assert width_of(digit) == pytest.approx(expected, rel=0.2, abs=0.2)


def test_the_estimate_of_mnist_digits_is_the_figure_the_target_was_chosen_from(real_mnist):
    images, _ = load_split(real_mnist, "test")
    widths = stroke_widths(images[:2000].numpy())
    assert np.median(widths) == pytest.approx(STROKE_TARGET, abs=0.15)
    assert 0.98 < (widths <= STROKE_LIMIT).mean() < 1  # the limit: MNIST's 99.5th percentile


def test_official_digits_written_as_files_read_back_as_they_were(real_mnist, tmp_path):
    """MNIST's own digits, saved as PNG at their size and enlarged, come back where they were:
    centred where MNIST centres (MNIST_CENTRE), not a pixel off; at their own size mostly
    pixel for pixel."""
    images, _ = load_split(real_mnist, "test")
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")

    def centres(digits: torch.Tensor) -> torch.Tensor:
        mass = digits.float()
        total = mass.sum((-2, -1))
        return torch.stack([(mass * ys).sum((-2, -1)) / total, (mass * xs).sum((-2, -1)) / total], -1)

    assert centres(images[:2000]).mean(0).tolist() == pytest.approx([MNIST_CENTRE] * 2, abs=0.05)
    for size in (28, 112):
        read = []
        for i in range(200):
            path = tmp_path / f"{i}.png"
            Image.fromarray(images[i].numpy()).resize((size, size), Image.BICUBIC).save(path)
            read.append(load_digit(path, normalise_stroke=False)[0])
        read = torch.stack(read)
        moved = (centres(read) - centres(images[:200])).abs()
        assert moved.mean() < 0.2 and moved.max() < 1.1, (size, moved.mean(), moved.max())  # 13.5: 0.5
        if size == 28:  # centred at the frame's middle (13.5), 28 of these 200 came back unchanged
            assert (read == images[:200]).flatten(1).all(1).sum() >= 100


@pytest.mark.parametrize("digit", range(10))
@pytest.mark.parametrize("box_width", [6.0, 6.5])
def test_bold_strokes_are_thinned_to_mnist_width(digit, box_width, tmp_path):
    path = pen(tmp_path / "digit.png", digit, box_width)
    plain, _ = load_digit(path, normalise_stroke=False)
    normalised, notes = load_digit(path)
    before, after = width_of(plain), width_of(normalised)
    assert before > STROKE_LIMIT
    # within MNIST's usual range (80% of its digits lie within 1.66-3.40), far from where it was
    assert 1.5 < after < 3.6 and abs(after - STROKE_TARGET) < abs(before - STROKE_TARGET) / 2
    assert notes[-1] == f"stroke {before:.1f} px thinned to {after:.1f}"
    # still an MNIST digit: soft edges, filling the 20-pixel box
    assert normalised.max() == 255 and ((normalised > 0) & (normalised < 255)).sum() > 20
    rows, cols = torch.nonzero(normalised > 40, as_tuple=True)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 in (19, 20, 21)


@pytest.mark.parametrize("digit", range(10))
@pytest.mark.parametrize("box_width", [1.0, 2.5, 4.0])
def test_fine_and_mnist_like_strokes_are_left_as_drawn(digit, box_width, tmp_path):
    path = pen(tmp_path / "digit.png", digit, box_width)
    normalised, notes = load_digit(path)
    assert torch.equal(normalised, load_digit(path, normalise_stroke=False)[0])
    assert not any(note.startswith("stroke") for note in notes)


def strokes(n: int = 64) -> torch.Tensor:
    """A float batch (n, 1, 28, 28) of bright 3-pixel bars, light on dark as MNIST."""
    images = torch.zeros(n, 1, 28, 28)
    for i in range(n):
        images[i, 0, 4 + i % 16 : 7 + i % 16, 6:22] = 255.0
    return images


def test_thickness_makes_some_strokes_bolder_some_thinner_and_leaves_the_rest():
    images = strokes()
    torch.manual_seed(0)
    out = random_thickness(images, 0.5)
    assert out.shape == images.shape and out.dtype == images.dtype and out.device == images.device
    ink_before, ink_after = images.sum((1, 2, 3)), out.sum((1, 2, 3))
    bolder, thinner = int((ink_after > ink_before).sum()), int((ink_after < ink_before).sum())
    assert bolder > 5 and thinner > 5 and bolder + thinner < 55  # about 16 each, 32 untouched
    untouched = ink_after == ink_before
    assert torch.equal(out[untouched], images[untouched])


def test_thickness_zero_is_the_identity_and_one_changes_every_image():
    images = strokes()
    assert torch.equal(random_thickness(images, 0.0), images)
    # on its own it does not resample: each image is exactly dilated or eroded
    changed = AugmentSettings(thickness=1.0).apply(images)
    assert (changed != images).flatten(1).any(1).all()
    assert set(changed.unique().tolist()) <= {0.0, 255.0}


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan")])
def test_a_thickness_that_is_no_probability_is_one_clear_error(value):
    assert AugmentSettings(thickness=value).problems() == [
        ("thickness", f"must be a probability in [0, 1], got {value}")
    ]
    with pytest.raises(ParameterError, match=re.escape("augment.thickness must be a probability in [0, 1]")):
        MNISTDataModule(augment=AugmentSettings(thickness=value))
    assert AugmentSettings(thickness=0.5).enabled and not AugmentSettings().enabled


def test_a_bad_thickness_flag_is_one_line(fake_mnist, tmp_path):
    result = run_cli(
        "fit", "--config", str(ROOT / "configs/default.yaml"), f"--data.data_dir={fake_mnist}",
        "--data.augment.thickness=2", *SMALL, cwd=tmp_path, check=False,
    )  # fmt: skip
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert errors == ["error: --data.augment.thickness must be a probability in [0, 1], got 2.0"]


def test_write_renders_every_style_of_every_digit_the_same_for_a_seed(tmp_path):
    first = drawn.write(tmp_path / "a", seed=0)
    again = drawn.write(tmp_path / "b", seed=0)
    other = drawn.write(tmp_path / "c", seed=1)
    assert Counter(p.parent.name for p in first) == {str(d): len(first) // 10 for d in range(10)}
    assert [p.relative_to(tmp_path / "a") for p in first] == [p.relative_to(tmp_path / "b") for p in again]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(first, again, strict=True))
    assert any(a.read_bytes() != c.read_bytes() for a, c in zip(first, other, strict=True))
    styles = {p.stem for p in first if p.parent.name == "4"}
    assert len(first) == 10 * len(styles) and 300 <= len(first) <= 800
    families = {drawn.family(style) for style in styles}
    assert families == set(drawn.FAMILIES) - {"other"}
    starts = (
        "dejavusans_",
        "dejavusans-bold_",
        "cmr10_",
        "stix-bold-heavy7_",
        "pen-w0.5_jitter0_",
        "pen-w5.5_",
    )
    for start in starts:
        assert any(style.startswith(start) for style in styles), start
    # both polarities, and sizes from MNIST's own to photo-like
    assert any("-on-white" in s for s in styles) and any("white-on-" in s for s in styles)
    sizes = {Image.open(p).size for p in first}
    assert (28, 28) in sizes and max(max(s) for s in sizes) >= 200


@pytest.fixture(scope="module")
def checkpoint(fake_quick_run) -> Path:
    return fake_quick_run[1] / "checkpoints" / "last.ckpt"


@pytest.fixture
def small_set(tmp_path) -> Path:
    """Two pen digits of each class, one fine and one bold, and one file that is no image."""
    for digit in range(10):
        (tmp_path / "set" / str(digit)).mkdir(parents=True)
        for width in (1.0, 6.5):
            name = f"pen-w{width:.1f}_jitter0_black-on-white_96x96.png"
            pen(tmp_path / "set" / str(digit) / name, digit, width, 96)
    (tmp_path / "set" / "3" / "broken.png").write_text("not an image")
    return tmp_path / "set"


@pytest.mark.parametrize("normalise", [True, False])
def test_score_prints_accuracy_per_family_and_the_confusions(checkpoint, small_set, normalise, capsys):
    flags = [] if normalise else ["--no-normalise"]
    drawn.main(["score", str(small_set), "--ckpt_path", str(checkpoint), *flags])
    out = capsys.readouterr().out
    heading = out.splitlines()[0]
    assert heading.startswith(f"20 digits from {small_set}, checkpoint {checkpoint}, stroke normalisation ")
    # the bold half is thinned, the fine half left as drawn
    assert ("(10 of 20 restroked)" in heading) if normalise else heading.endswith("normalisation off")
    rows = {line.split(" | ")[0].strip("| "): line for line in out.splitlines() if line.startswith("| ")}
    assert rows.keys() >= {"family", "pen thin (w < 2)", "pen thick (w >= 4)", "**all**"}
    all_row = [cell.strip() for cell in rows["**all**"].strip("|").split("|")]
    correct = int(all_row[2])
    assert all_row[1] == "20" and all_row[3] == f"{100 * correct / 20:.1f}%"
    confusions = re.findall(r"^\| (\d) → (\d) \| (\d+) \|", out, re.MULTILINE)
    assert sum(int(count) for *_, count in confusions) == 20 - correct
    assert all(true != predicted for true, predicted, _ in confusions)
    assert "not read: " in out and "broken.png" in out


def test_score_normalises_as_the_runs_predict_does(fake_mnist, small_set, tmp_path, capsys):
    run_cli(
        "fit", "--config", str(ROOT / "configs/default.yaml"),
        "--config", str(ROOT / "configs/experiments/quick.yaml"), f"--data.data_dir={fake_mnist}", *SMALL,
        "--test_after_fit=false", "--data.normalise_stroke=false", cwd=tmp_path,
    )  # fmt: skip
    last = tmp_path / "logs" / "quick" / "version_0" / "checkpoints" / "last.ckpt"
    drawn.main(["score", str(small_set), "--ckpt_path", str(last)])
    assert capsys.readouterr().out.splitlines()[0].endswith("normalisation off")
    drawn.main(["score", str(small_set), "--ckpt_path", str(last), "--normalise"])
    assert "restroked" in capsys.readouterr().out.splitlines()[0]


def test_score_finds_the_runs_best_checkpoint_from_its_config(checkpoint, small_set, capsys):
    drawn.main(["score", str(small_set), "--config", str(checkpoint.parent.parent / "config.yaml")])
    assert "checkpoints" in capsys.readouterr().out.splitlines()[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (lambda digits, ckpt, tmp: [str(tmp / "none"), "--ckpt_path", str(ckpt)], "is not a folder"),
        (lambda digits, ckpt, tmp: [str(tmp), "--ckpt_path", str(ckpt)], "holds no digit folders (0/ to 9/)"),
        (
            lambda digits, ckpt, tmp: [str(digits), "--ckpt_path", str(tmp / "gone.ckpt")],
            "gone.ckpt not found",
        ),
        (
            lambda digits, ckpt, tmp: [str(digits), "--ckpt_path", str(digits / "3" / "broken.png")],
            "cannot be read",
        ),
        (lambda digits, ckpt, tmp: [str(digits)], "give the checkpoint"),
    ],
    ids=["no-folder", "no-digit-folders", "no-checkpoint", "not-a-checkpoint", "neither-flag"],
)
def test_score_on_bad_input_is_one_line_and_exit_2(args, message, checkpoint, small_set, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit) as stopped:
        drawn.main(["score", *args(small_set, checkpoint, empty)])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_write_into_a_file_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "taken").write_text("a file, not a folder")
    with pytest.raises(SystemExit) as stopped:
        drawn.main(["write", str(tmp_path / "taken")])
    err = capsys.readouterr().err
    assert (
        stopped.value.code == 2
        and err == f"error: cannot write the digits into {tmp_path / 'taken'}: Not a directory\n"
    )


def test_thickness_scales_with_the_image_size():
    """At twice MNIST's size, a stroke twice as wide is made bolder or thinner by twice the pixels:
    2 rows become 4 or 1 at 28x28, 4 rows become 8 or 2 at 56x56."""
    torch.manual_seed(0)
    for size, rows, expected in ((28, slice(10, 12), {4, 1}), (56, slice(20, 24), {8, 2})):
        images = torch.zeros(64, 1, size, size)
        images[:, :, rows, size // 4 : 3 * size // 4] = 255.0
        changed = random_thickness(images, 1.0)  # every image: bolder or thinner
        widths = {int((image[0].amax(1) > 0).sum()) for image in changed}
        assert widths == expected, size


def test_thickness_on_images_too_small_for_whole_pixel_strokes_is_one_line(fork_server, tmp_path):
    data = tmp_path / "data"
    for split, n in (("train", 20), ("test", 4)):
        for label, name in enumerate(("a", "b")):
            for i in range(n):
                pixels = np.full((8, 8), 100 * label + i, dtype=np.uint8)
                path = data / split / name / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(path)
    result = fork_server.run(
        [
            "fit", "--config", str(ROOT / "configs/default.yaml"),
            "--data=lit_mnist.data.ImageFolderDataModule", f"--data.root={data}", "--data.val_size=4",
            "--data.augment.thickness=0.5", "--trainer.max_epochs=1",
        ],
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: --data.augment.thickness needs images of at least 14 pixels a side")
    assert "these are 8x8" in error and "Traceback" not in result.stderr
