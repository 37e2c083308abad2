"""Finding a run's folder and its best checkpoint, loading its model."""

import json
import os

import pytest
import torch

from lit_mnist.data import SPEC
from lit_mnist.errors import UserError
from lit_mnist.tools.runs import best_checkpoint, latest_run, load_model, predict_logits, read_checkpoint


def make_run(root, name, checkpoints, written_at):
    folder = root / name / "checkpoints"
    folder.mkdir(parents=True)
    for checkpoint in checkpoints:
        (folder / checkpoint).write_bytes(b"")
        os.utime(folder / checkpoint, (written_at, written_at))
    return folder.parent


def test_latest_run_is_the_one_with_the_newest_checkpoint(tmp_path):
    older = make_run(tmp_path, "default/version_0", ["last.ckpt"], 1_000)
    newer = make_run(tmp_path, "best/version_3", ["last.ckpt"], 2_000)
    make_run(tmp_path, "quick/version_0", [], 3_000)  # no checkpoint: not a run to load
    assert latest_run(tmp_path) == newer
    os.utime(older / "checkpoints" / "last.ckpt", (4_000, 4_000))
    assert latest_run(tmp_path) == older
    with pytest.raises(UserError, match="no run with checkpoints"):
        latest_run(tmp_path / "quick")


def test_best_checkpoint_prefers_metrics_json_then_the_highest_val_acc_then_last(tmp_path):
    names = ["epoch01-step000100-val_acc0.9812.ckpt", "epoch03-step000300-val_acc0.9901.ckpt", "last.ckpt"]
    run = make_run(tmp_path, "a/version_0", names, 1_000)
    assert best_checkpoint(run).name == names[1]
    (run / "metrics.json").write_text(json.dumps({"best_checkpoint": f"elsewhere/checkpoints/{names[0]}"}))
    assert best_checkpoint(run).name == names[0]  # the run's own record, wherever it was run from
    only_last = make_run(tmp_path, "b/version_0", ["last.ckpt"], 1_000)
    assert best_checkpoint(only_last).name == "last.ckpt"
    empty = make_run(tmp_path, "c/version_0", [], 1_000)
    with pytest.raises(UserError, match="no checkpoints"):
        best_checkpoint(empty)


def test_unreadable_checkpoints_give_one_clear_error(tmp_path):
    text = tmp_path / "notes.ckpt"
    text.write_text("# not a checkpoint\n")
    not_lightning = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(2)}, not_lightning)
    with pytest.raises(UserError, match=r"cannot be read .*truncated or not a checkpoint"):
        read_checkpoint(text)
    with pytest.raises(UserError, match="not a Lightning checkpoint"):
        read_checkpoint(not_lightning)
    with pytest.raises(UserError, match="not found"):
        load_model(tmp_path / "missing.ckpt")


def test_predict_logits_normalises_as_in_training():
    seen = []

    def model(images):
        seen.append(images)
        return images.flatten(1)[:, :10]

    model.data = SPEC  # what a loaded checkpoint's model carries

    digits = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
    logits = predict_logits(model, digits, batch_size=2)
    assert [len(batch) for batch in seen] == [2, 2, 1]
    assert logits.shape == (5, 10) and logits.dtype == torch.float32
    expected = (digits[:, 0, :10].float() / 255 - 0.1307) / 0.3081
    torch.testing.assert_close(logits, expected)
