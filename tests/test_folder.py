"""Folders of your own images as a dataset (ImageFolderDataModule), on images made with PIL, and
the tool that writes an IDX dataset out as such folders."""

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT, SMALL, run_cli
from lit_mnist.data import DataSpec, ImageFolderDataModule, load_split, pixel_statistics, preset_spec
from lit_mnist.data import folder as folder_module
from lit_mnist.errors import ParameterError
from lit_mnist.tools import folders as folders_tool

FORMATS = ("png", "jpg", "bmp", "gif", "tiff", "webp")


def save(path: Path, pixels) -> Path:
    """An image of uint8 pixels, (H, W) grayscale or (H, W, 3) RGB, saved by suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(path)
    return path


def make_folder(root: Path, counts: dict[str, dict[str, int]], shape=(12, 10), rgb=False) -> Path:
    """split -> class -> number of images; each image a flat grey level: 10 times its class's
    place in sorted order plus the image's number, so its pixels tell which file it came from."""
    for split, classes in counts.items():
        for label, (name, n) in enumerate(sorted(classes.items())):
            for i in range(n):
                value = 10 * label + i
                pixels = np.full((*shape, 3) if rgb else shape, value)
                if rgb:
                    pixels[..., 0] = 255 - value  # the channels differ: a colour image
                save(root / split / name / f"{i:03d}.png", pixels)
    return root


def loaded(root: Path, **kwargs) -> ImageFolderDataModule:
    dm = ImageFolderDataModule(root=str(root), **{"val_size": 2, **kwargs})
    dm.setup("fit")
    return dm


def values(dm: ImageFolderDataModule, index: torch.Tensor) -> list[int]:
    """The flat grey level of each image of a split (its last channel)."""
    return sorted(dm.images[index, -1, 0, 0].tolist())


def test_folders_with_val_and_test_become_the_splits(tmp_path):
    make_folder(
        tmp_path,
        {"train": {"dog": 4, "cat": 3}, "val": {"cat": 1, "dog": 2}, "test": {"cat": 2}},
    )
    dm = loaded(tmp_path)
    spec = dm.spec
    assert spec.class_names == ("cat", "dog")  # sorted folder names
    assert (spec.channels, spec.height, spec.width, spec.num_classes) == (1, 12, 10, 2)
    assert values(dm, dm.train_idx) == [0, 1, 2, 10, 11, 12, 13]
    assert values(dm, dm.val_idx) == [0, 10, 11]
    assert values(dm, dm.test_idx) == [0, 1]
    assert dm.labels[dm.test_idx].tolist() == [0, 0]
    # a flat image's value tells its class (tens) in every split
    assert torch.equal(dm.labels, dm.images[:, 0, 0, 0].long() // 10)
    expected_mean, expected_std = pixel_statistics(dm.images[dm.train_idx])
    assert spec.mean == expected_mean and spec.std == expected_std
    assert spec.mean[0] == pytest.approx(np.mean([0, 1, 2, 10, 11, 12, 13]) / 255, abs=1e-4)


def test_without_test_a_seeded_fraction_of_train_is_held_out_before_val(tmp_path):
    make_folder(tmp_path, {"train": {"a": 20, "b": 20}})
    dm = loaded(tmp_path, val_size=5, test_size=0.25)
    assert (len(dm.train_idx), len(dm.val_idx), len(dm.test_idx)) == (25, 5, 10)
    parts = [values(dm, idx) for idx in (dm.train_idx, dm.val_idx, dm.test_idx)]
    assert sorted(v for part in parts for v in part) == sorted([*range(20), *range(10, 30)])
    # the test set is drawn first: the validation size does not change it, the seed does
    again = loaded(tmp_path, val_size=9, test_size=0.25)
    assert values(again, again.test_idx) == parts[2]
    other = loaded(tmp_path, val_size=5, test_size=0.25, split_seed=1)
    assert values(other, other.test_idx) != parts[2]


def test_a_val_folder_without_test_holds_out_test_from_train(tmp_path):
    make_folder(tmp_path, {"train": {"a": 5, "b": 5}, "val": {"a": 1, "b": 1}})
    dm = loaded(tmp_path, test_size=0.2)
    assert (len(dm.train_idx), len(dm.val_idx), len(dm.test_idx)) == (8, 2, 2)
    assert values(dm, dm.val_idx) == [0, 10]


@pytest.mark.parametrize(
    ("rgb", "gray", "channels", "expected"),
    [
        (True, False, None, 3),
        (False, True, None, 1),
        (True, True, None, 3),  # mixed: the grayscale ones repeated to RGB
        (True, True, 1, 1),
        (False, True, 3, 3),
    ],
)
def test_channels_follow_the_images_unless_given(tmp_path, rgb, gray, channels, expected):
    pixels = np.zeros((8, 8, 3), np.uint8)
    pixels[..., 0] = 200
    for name in ("a", "b"):
        for i in range(2):
            if rgb:
                save(tmp_path / "train" / name / f"colour{i}.png", pixels)
            if gray:
                save(tmp_path / "train" / name / f"gray{i}.png", np.full((8, 8), 90))
    dm = loaded(tmp_path, val_size=1, channels=channels)
    assert dm.spec.channels == expected and dm.images.shape[1] == expected
    if gray:
        gray_images = dm.images[dm.images[:, 0, 0, 0] == 90]
        assert len(gray_images) and (gray_images == 90).all()  # the same level in every channel
    if rgb and expected == 1:
        # colour to grayscale by luminance (ITU-R 601-2): 0.299 R
        assert (dm.images == 60).sum() == 4 * 64


def test_colour_files_of_grey_pixels_are_grayscale(tmp_path):
    for name in ("a", "b"):
        save(tmp_path / "train" / name / "x.png", np.full((8, 8, 3), 77))  # saved as RGB
        save(tmp_path / "train" / name / "y.png", np.full((8, 8, 3), 99))
    assert loaded(tmp_path, val_size=1).spec.channels == 1


def test_every_common_format_is_read(tmp_path):
    for i, suffix in enumerate(FORMATS):
        for name in ("a", "b"):
            save(tmp_path / "train" / name / f"{i}.{suffix}", np.full((8, 8), 128))
    transparent = np.zeros((8, 8, 4), np.uint8)  # fully transparent black: white once flattened
    Image.fromarray(transparent, mode="RGBA").save(tmp_path / "train" / "a" / "transparent.png")
    Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(tmp_path / "train" / "b" / "deep.png")
    dm = loaded(tmp_path, val_size=1, test_size=0.1)
    assert len(dm.labels) == 2 * len(FORMATS) + 2
    levels = sorted(dm.images[:, 0, 0, 0].tolist())
    assert levels[-1] == 255  # the transparent one
    assert 40000 >> 8 in levels  # 16 bits scaled to 8, not clipped
    assert sum(abs(v - 128) <= 2 for v in levels) == 2 * len(FORMATS)  # JPEG and WebP lose a little


def test_mixed_sizes_are_stretched_to_the_most_common(tmp_path):
    for name in ("a", "b"):
        for i in range(2):
            save(tmp_path / "train" / name / f"small{i}.png", np.full((10, 10), 255))
        left_dark = np.full((10, 40), 255)
        left_dark[:, :20] = 0
        save(tmp_path / "train" / name / "wide.png", left_dark)
    dm = loaded(tmp_path, val_size=1, test_size=0.2)
    assert dm.spec.shape == (1, 10, 10)
    wide = dm.images[dm.images[:, 0, 0, 0] == 0]
    assert len(wide) == 2
    # stretched, not padded: every row is dark on the left half and light on the right half
    assert (wide[:, 0, :, :4] == 0).all() and (wide[:, 0, :, 6:] == 255).all()


def test_a_tie_takes_the_larger_size_and_a_given_size_wins(tmp_path):
    for name in ("a", "b"):
        save(tmp_path / "train" / name / "small.png", np.zeros((6, 6)))
        save(tmp_path / "train" / name / "large.png", np.zeros((9, 12)))
    assert loaded(tmp_path, val_size=1, test_size=0.3).spec.shape == (1, 9, 12)
    assert loaded(tmp_path, val_size=1, test_size=0.3, size=7).spec.shape == (1, 7, 7)
    assert loaded(tmp_path, val_size=1, test_size=0.3, size=[5, 8]).spec.shape == (1, 5, 8)


def cache_files(root: Path) -> list[Path]:
    return sorted((root / ".lit_mnist_cache").glob("*.pt"))


def test_the_cache_is_written_once_and_read_without_decoding(tmp_path, monkeypatch):
    make_folder(tmp_path, {"train": {"a": 3, "b": 3}})
    first = loaded(tmp_path)
    assert len(cache_files(tmp_path)) == 1
    assert not list((tmp_path / ".lit_mnist_cache").glob("*.tmp"))

    def refuse(*args):
        raise AssertionError("decoded again")

    monkeypatch.setattr(folder_module, "decode", refuse)
    monkeypatch.setattr(folder_module.Image, "open", refuse)  # the size is not looked up either
    second = loaded(tmp_path)
    assert torch.equal(second.images, first.images) and torch.equal(second.labels, first.labels)
    assert second.spec == first.spec


@pytest.mark.parametrize("change", ["add", "rewrite", "remove"])
def test_a_changed_folder_is_decoded_again(tmp_path, monkeypatch, change):
    make_folder(tmp_path, {"train": {"a": 3, "b": 3}})
    loaded(tmp_path)
    (old,) = cache_files(tmp_path)
    image = tmp_path / "train" / "a" / "001.png"
    if change == "add":
        save(tmp_path / "train" / "b" / "new.png", np.full((12, 10), 99))
    elif change == "rewrite":
        save(image, np.full((12, 10), 77))
        os.utime(image, ns=(1, 1))  # a new mtime whatever the clock's resolution
    else:
        image.unlink()
    calls = []
    decode = folder_module.decode
    monkeypatch.setattr(folder_module, "decode", lambda *a: calls.append(a) or decode(*a))
    dm = loaded(tmp_path)
    assert len(calls) == {"add": 7, "rewrite": 6, "remove": 5}[change]
    assert cache_files(tmp_path) != [old] and len(cache_files(tmp_path)) == 1  # the stale one removed
    levels = dm.images[:, 0, 0, 0].tolist()
    assert {"add": 99 in levels, "rewrite": 77 in levels, "remove": 1 not in levels}[change]


def test_other_settings_keep_their_own_cache(tmp_path):
    make_folder(tmp_path, {"train": {"a": 3, "b": 3}})
    loaded(tmp_path)
    loaded(tmp_path, size=6)
    loaded(tmp_path, channels=3)
    assert len(cache_files(tmp_path)) == 3


def test_a_folder_that_cannot_hold_the_cache_still_loads(tmp_path, monkeypatch, capsys):
    make_folder(tmp_path, {"train": {"a": 3, "b": 3}})

    def disk_full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    assert len(loaded(tmp_path).labels) == 6
    assert "warning: could not cache the decoded images" in capsys.readouterr().err
    assert not list((tmp_path / ".lit_mnist_cache").iterdir())  # no half-written file left


def test_a_checkpoints_spec_sets_the_size_and_channels(tmp_path):
    make_folder(tmp_path, {"train": {"a": 3, "b": 3}}, shape=(12, 10))
    spec = DataSpec(3, 6, 8, 2, (0.5,) * 3, (0.2,) * 3, ("a", "b"))
    with preset_spec(spec):  # as when testing a checkpoint: its net reads 3x6x8
        dm = ImageFolderDataModule(root=str(tmp_path), val_size=2)
    dm.setup("test")
    assert dm.images.shape[1:] == (3, 6, 8) and dm.spec == spec


def with_broken_files(root: Path) -> Path:
    make_folder(root, {"train": {"a": 3, "b": 3}})
    (root / "train" / "a" / "broken.png").write_bytes(b"not a png")
    truncated = (root / "train" / "b" / "000.png").read_bytes()
    (root / "train" / "b" / "truncated.png").write_bytes(truncated[: len(truncated) // 2])
    (root / "train" / "a" / "notes.txt").write_text("not an image")
    (root / "train" / "a" / ".DS_Store").write_bytes(b"\0\1")
    (root / "train" / "b" / "._000.png").write_bytes(b"AppleDouble")
    return root


def test_broken_files_are_named_and_skipped(tmp_path, capsys):
    dm = loaded(with_broken_files(tmp_path))
    assert len(dm.labels) == 6
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("skipped")]
    assert len(lines) == 2 and "notes.txt" not in err and "DS_Store" not in err and "._000" not in err
    assert lines[0].startswith(f"skipped {tmp_path / 'train' / 'a' / 'broken.png'}: not a readable image")
    assert lines[1].startswith(f"skipped {tmp_path / 'train' / 'b' / 'truncated.png'}: not a readable image")
    loaded(tmp_path)  # from the cache: named again
    assert capsys.readouterr().err.count("skipped") == 2


def test_broken_files_refused_by_the_flag(tmp_path):
    with pytest.raises(ParameterError, match="2 unreadable image files") as err:
        loaded(with_broken_files(tmp_path), on_error="refuse")
    assert err.value.parameter == "root"
    assert "train/a/broken.png" in err.value.problem and "\n" not in err.value.problem


def bad_layout(root: Path, case: str) -> Path:
    if case == "missing":
        return root / "nowhere"
    if case == "no class folders":
        save(root / "train" / "loose.png", np.zeros((4, 4)))
        return root
    if case == "no train":
        make_folder(root, {"test": {"a": 1, "b": 1}})
        return root
    make_folder(root, {"train": {"a": 2, **({} if case == "one class" else {"b": 2})}})
    if case == "empty class":
        (root / "train" / "c").mkdir()
        (root / "train" / "c" / "readme.txt").write_text("no images")
    elif case == "unknown class":
        make_folder(root, {"val": {"a": 1, "zebra": 1}})
    elif case == "nothing readable":
        for path in (root / "train").rglob("*.png"):
            path.write_bytes(b"garbage")
    return root


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "nowhere: no such folder"),
        ("no train", "has no train/ folder"),
        ("no class folders", "train has no class folders"),
        ("empty class", "train/c: no image files"),
        ("one class", "train holds one class (a)"),
        ("unknown class", "val has classes that train/ lacks: zebra"),
        ("nothing readable", "train: none of its 4 image files could be read"),
    ],
)
@pytest.mark.parametrize("size", [None, 8])  # with and without looking up the sizes first
def test_bad_layouts_are_one_clear_error(tmp_path, case, message, size):
    with pytest.raises(ParameterError, match=re.escape(message)) as err:
        loaded(bad_layout(tmp_path, case), size=size)
    assert err.value.parameter == "root" and "\n" not in err.value.problem


@pytest.mark.parametrize(
    ("arguments", "parameter"),
    [
        ({"size": 0}, "size"),
        ({"size": [3, 4, 5]}, "size"),
        ({"channels": 2}, "channels"),
        ({"test_size": 1.5}, "test_size"),
        ({"on_error": "ignore"}, "on_error"),
    ],
)
def test_bad_settings_name_their_parameter(tmp_path, arguments, parameter):
    with pytest.raises(ParameterError) as err:
        ImageFolderDataModule(root=str(tmp_path), **arguments)
    assert err.value.parameter == parameter


def test_predict_images_reads_your_files_as_the_training_images(tmp_path):
    make_folder(tmp_path / "data", {"train": {"a": 3, "b": 3}}, shape=(12, 10), rgb=True)
    dm = loaded(tmp_path / "data")
    own = tmp_path / "own"
    save(own / "big.png", np.full((48, 40), 50))
    save(own / "same.png", np.full((12, 10, 3), 70))
    (own / "broken.jpg").write_bytes(b"nope")
    files, images, notes, rejected = dm.predict_images(str(own))
    assert [f.name for f in files] == ["big.png", "same.png"]
    assert images.shape == (2, 3, 12, 10) and images.dtype == torch.uint8
    assert (images[0] == 50).all()
    assert notes[own / "big.png"] == ["L to RGB", "40x48 resized to 10x12"]
    assert notes[own / "same.png"] == []
    assert "not a readable image" in rejected[own / "broken.jpg"]


def test_the_command_line_trains_on_a_folder(tmp_path):
    data = tmp_path / "data"
    for split, n in (("train", 30), ("test", 6)):
        for label, name in enumerate(("circle", "square", "triangle")):
            for i in range(n):
                save(data / split / name / f"{i}.png", np.full((16, 16), 40 * label + i))
    cwd = tmp_path / "run"
    cwd.mkdir()
    result = run_cli(
        "fit",
        "--config", str(ROOT / "configs" / "default.yaml"),
        "--data.data_dir=/nowhere",  # as `make train` passes it, before the datamodule is switched
        "--config", str(ROOT / "configs" / "experiments" / "folder.yaml"),
        f"--data.root={data}",
        "--model.net.init_args.channels=[4, 8]",
        "--model.net.init_args.hidden=16",
        *SMALL,
        "--data.val_size=9",
        "--trainer.max_epochs=1",
        cwd=cwd,
    )  # fmt: skip
    assert "test/acc" in result.stdout
    run_dir = cwd / "logs" / "folder" / "version_0"
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    spec = ckpt["hyper_parameters"]["data"]
    assert spec.class_names == ("circle", "square", "triangle") and spec.shape == (1, 16, 16)
    missing = run_cli(
        "fit", "--config", str(ROOT / "configs" / "default.yaml"),
        "--data=lit_mnist.data.ImageFolderDataModule", f"--data.root={tmp_path / 'nowhere'}",
        cwd=cwd, check=False,
    )  # fmt: skip
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    last_line = missing.stderr.strip().splitlines()[-1]
    assert last_line == f"error: --data.root {tmp_path / 'nowhere'}: no such folder"


def test_folders_tool_writes_the_idx_files_as_class_folders(fake_mnist, tmp_path, capsys):
    out = tmp_path / "png"
    folders_tool.main([str(out), f"--data.data_dir={fake_mnist}", "--limit", "40"], prog="lit-mnist folders")
    assert "wrote 80 images" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "train").iterdir()) == [str(d) for d in range(10)]
    for split in ("train", "test"):
        images, labels = load_split(fake_mnist, split)
        for index in (0, 17, 39):
            path = out / split / str(int(labels[index])) / f"{index:02d}.png"
            assert np.array_equal(np.asarray(Image.open(path)), images[index].numpy())
        assert len(list((out / split).rglob("*.png"))) == 40
    dm = loaded(out, val_size=5)
    assert dm.spec.shape == (1, 28, 28) and dm.spec.class_names == tuple(str(d) for d in range(10))
    with pytest.raises(SystemExit) as err:  # OUT holds files now
        folders_tool.main([str(out), f"--data.data_dir={fake_mnist}"], prog="lit-mnist folders")
    assert err.value.code == 2
    assert "is not an empty folder" in capsys.readouterr().err
