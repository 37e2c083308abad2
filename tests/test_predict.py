"""Predicting your own images: digits drawn with PIL, in any size, colour and polarity."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from conftest import run_cli
from lit_mnist.data.images import ImageError, load_digit, load_digits


def draw(path: Path, digit: str, size: int = 200, ink="black", paper="white", mode="RGB") -> Path:
    """A thick hand-drawn-like 1, 0 or 7 on paper of `size` pixels, saved by suffix."""
    image = Image.new(mode, (size, size), paper)
    pen = ImageDraw.Draw(image)
    w, s = max(2, size // 12), size
    if digit == "1":
        pen.line([(s * 0.55, s * 0.15), (s * 0.55, s * 0.85)], fill=ink, width=w)
        pen.line([(s * 0.55, s * 0.15), (s * 0.40, s * 0.30)], fill=ink, width=w)
    elif digit == "0":
        pen.ellipse([s * 0.3, s * 0.15, s * 0.7, s * 0.85], outline=ink, width=w)
    else:
        pen.line([(s * 0.3, s * 0.2), (s * 0.7, s * 0.2), (s * 0.45, s * 0.85)], fill=ink, width=w)
    image.save(path)
    return path


def mass_centre(image: torch.Tensor) -> tuple[float, float]:
    pixels = image.float().numpy()
    ys, xs = np.indices(pixels.shape)
    return (ys * pixels).sum() / pixels.sum(), (xs * pixels).sum() / pixels.sum()


@pytest.mark.parametrize(
    "name, options, expected_notes",
    [
        ("black_on_white.png", {},
         ["RGB to grayscale", "inverted (dark on light)", "200x200 scaled to 28x28"]),
        ("white_on_black_gray.png", {"ink": 255, "paper": 0, "mode": "L", "size": 28}, []),
        ("blue_on_yellow.jpg", {"ink": (20, 20, 200), "paper": (250, 240, 120), "size": 90},
         ["RGB to grayscale", "inverted (dark on light)", "90x90 scaled to 28x28"]),
        ("transparent.png", {"ink": (0, 0, 0, 255), "paper": (0, 0, 0, 0), "mode": "RGBA", "size": 64},
         ["RGBA to grayscale", "inverted (dark on light)", "64x64 scaled to 28x28"]),
    ],
)  # fmt: skip
@pytest.mark.parametrize("digit", ["1", "0", "7"])
def test_drawn_digits_become_mnist_digits(digit, name, options, expected_notes, tmp_path):
    image, notes = load_digit(draw(tmp_path / name, digit, **options))
    assert image.shape == (28, 28) and image.dtype == torch.uint8
    assert notes == expected_notes
    assert (image == 0).float().mean() > 0.5  # dark paper around light ink
    assert all(image[r : r + 3, c : c + 3].max() == 0 for r in (0, 25) for c in (0, 25))  # corners
    assert image.max() >= 200  # bright ink
    rows, cols = torch.nonzero(image > 40, as_tuple=True)
    height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    assert max(height, width) in (19, 20, 21)  # the longer side fills MNIST's 20-pixel box
    y, x = mass_centre(image)
    assert abs(y - 13.5) <= 1 and abs(x - 13.5) <= 1


def test_the_same_digit_drawn_differently_reads_alike(tmp_path):
    big, _ = load_digit(draw(tmp_path / "big.png", "7", size=400))
    small, _ = load_digit(draw(tmp_path / "small.png", "7", size=56, ink=255, paper=0, mode="L"))
    other, _ = load_digit(draw(tmp_path / "other.png", "0", size=56, ink=255, paper=0, mode="L"))
    distance = (big.float() - small.float()).abs().mean()
    assert distance < 0.5 * (big.float() - other.float()).abs().mean()


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: p.write_text("not an image at all"), "not a readable image"),
        (lambda p: Image.new("L", (50, 50), 255).save(p), "no digit found"),
        (lambda p: Image.new("L", (5, 5), 0).save(p), "5x5 pixels is too small"),
    ],
    ids=["text", "blank", "tiny"],
)
def test_what_cannot_be_a_digit_is_rejected_by_name(make, reason, tmp_path):
    path = tmp_path / "input.png"
    make(path)
    with pytest.raises(ImageError, match=reason) as err:
        load_digit(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_folder_reads_its_images_and_names_the_rest(tmp_path):
    draw(tmp_path / "a.png", "1")
    draw(tmp_path / "b.jpg", "0")
    (tmp_path / "c.png").write_bytes(b"\x89PNG broken")
    (tmp_path / "notes.txt").write_text("ignored: not an image suffix")
    files, images, _, rejected = load_digits(tmp_path)
    assert [f.name for f in files] == ["a.png", "b.jpg"] and images.shape == (2, 28, 28)
    assert list(rejected) == [tmp_path / "c.png"]
    with pytest.raises(ImageError, match="no such file or folder"):
        load_digits(tmp_path / "missing")


def predict(cwd: Path, run: Path, target: Path, *extra: str):
    return run_cli(
        "predict", "--config", str(run / "config.yaml"), f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
        f"--data.predict_path={target}", "--data.data_dir=no-mnist-needed", *extra, cwd=cwd, check=False,
    )  # fmt: skip


def test_predict_writes_the_csv_into_the_run_folder(fake_quick_run, tmp_path):
    cwd, run = fake_quick_run
    for digit in "107":
        draw(tmp_path / f"digit{digit}.png", digit)
    result = predict(cwd, run, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    with (run / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [Path(r["file"]).name for r in rows] == ["digit0.png", "digit1.png", "digit7.png"]
    for row in rows:
        assert 0 <= int(row["prediction"]) <= 9 and 0 < float(row["confidence"]) <= 1
        top3 = row["top3"].split("; ")
        assert len(top3) == 3 and top3[0].startswith(row["prediction"] + ":")
    assert f"written to {run / 'predictions.csv'}" in result.stdout
    assert "inverted (dark on light)" in result.stdout


def test_predict_names_rejected_files_and_exits_non_zero(fake_quick_run, tmp_path):
    cwd, run = fake_quick_run
    draw(tmp_path / "good.png", "1")
    (tmp_path / "bad.png").write_text("hello")
    output = tmp_path / "out" / "p.csv"
    result = predict(cwd, run, tmp_path, f"--predictions.output={output}")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {tmp_path / 'bad.png'}: not a readable image (UnidentifiedImageError)"]
    assert len(output.read_text().splitlines()) == 2  # header and the good image: nothing lost
