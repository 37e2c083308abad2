"""A finished run, back in Python: its folder, its checkpoints, its model and what the model says.

    from lit_mnist.tools.runs import latest_run, best_checkpoint, load_model, predict_logits
    run = latest_run("logs")                      # logs/<experiment>/version_<n>
    model = load_model(best_checkpoint(run))      # on the CPU, in eval mode
    logits = predict_logits(model, images)        # uint8 images shaped as model.data says

The notebooks and `make export` are built on these.
"""

import json
import re
from pathlib import Path

import torch
from torch import Tensor

from lit_mnist.errors import UserError

LAST = "last.ckpt"


def run_dir_of(checkpoint: Path) -> Path | None:
    """`<save_dir>/<name>/<version>/checkpoints/x.ckpt` -> its run folder, else None."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else None


def newest_last_checkpoint(experiment: Path | None, flag: str = "--ckpt_path") -> Path:
    """The last.ckpt written most recently by any run of an experiment folder."""
    if experiment is None:
        raise UserError(f"{flag} last: the logger keeps no run folders here; give the checkpoint's path")
    candidates = sorted(experiment.glob(f"*/checkpoints/{LAST}"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise UserError(f"{flag} last: no run under {experiment} has checkpoints/{LAST}")
    return candidates[-1]


def shape_mismatch(saved: dict, model: torch.nn.Module, most: int = 3) -> list[str]:
    """How a checkpoint's state_dict differs from a model's, by key and shape (a few of each)."""
    here = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    there = {k: tuple(v.shape) for k, v in saved.items() if hasattr(v, "shape")}
    problems = [f"missing {k}" for k in here if k not in there][:most]
    problems += [f"unexpected {k}" for k in there if k not in here][:most]
    changed = [k for k in here if k in there and there[k] != here[k]]
    return problems + [f"{k} is {there[k]} there, {here[k]} here" for k in changed][:most]


def latest_run(root: str | Path = "logs") -> Path:
    """The most recently written run folder under `root` (one with a checkpoints/ folder)."""
    root = Path(root)
    runs = [run_dir_of(c) for c in root.glob("**/checkpoints/*.ckpt")]
    if not runs:
        raise UserError(f"no run with checkpoints under {root}: train one first (make train)")

    def written(run: Path) -> float:
        return max(c.stat().st_mtime for c in (run / "checkpoints").glob("*.ckpt"))

    return max(set(runs), key=written)


def best_checkpoint(run: str | Path) -> Path:
    """The run's best checkpoint: the one metrics.json names, else the highest val_acc in a file
    name, else last.ckpt."""
    folder = Path(run) / "checkpoints"
    metrics = Path(run) / "metrics.json"
    if metrics.is_file():
        named = json.loads(metrics.read_text()).get("best_checkpoint")
        if named and (folder / Path(named).name).is_file():
            return folder / Path(named).name

    def val_acc(path: Path) -> float:
        found = re.search(r"val_acc(\d+\.\d+)", path.name)
        return float(found.group(1)) if found else -1.0

    scored = [c for c in folder.glob("*.ckpt") if c.name != LAST and val_acc(c) >= 0]
    if scored:
        return max(scored, key=val_acc)
    if (folder / LAST).is_file():
        return folder / LAST
    raise UserError(f"{run} has no checkpoints/ folder with a checkpoint in it")


def read_checkpoint(path: str | Path, name: str = "checkpoint") -> dict:
    """A Lightning checkpoint's contents on the CPU, or one clear error (starting with `name`) when
    the file is not one."""
    try:
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            if "Weights only load failed" not in str(err):
                raise
            # readable only with objects that Lightning may load (hyper-parameters, callbacks)
            checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        reason = str(err).splitlines()[0].split(". ")[0] if str(err) else type(err).__name__
        raise UserError(
            f"{name} {path} cannot be read ({reason}): the file is truncated or not a "
            "checkpoint; pick another (the run's checkpoints/ folder keeps the best and the last)"
        ) from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise UserError(f"{name} {path} is not a Lightning checkpoint: it holds no state_dict")
    return checkpoint


def load_model(checkpoint: str | Path):
    """The LightningModule of a checkpoint, rebuilt from the arguments it was trained with, on the
    CPU in eval mode (uncompiled, whatever the run used). One clear error when it cannot be read."""
    from lit_mnist.model import MNISTClassifier

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise UserError(f"checkpoint {checkpoint} not found")
    read_checkpoint(checkpoint)
    try:
        model = MNISTClassifier.load_from_checkpoint(checkpoint, map_location="cpu", compile=False)
    except UserError:
        raise
    except Exception as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"checkpoint {checkpoint} does not rebuild an MNIST classifier ({reason})") from None
    return model.eval()


@torch.inference_mode()
def predict_logits(model, images: Tensor, batch_size: int = 1000) -> Tensor:
    """float32 logits (N, classes) of uint8 images (N, C, H, W), or (N, H, W) for one channel, of
    the shape `model.data` (the checkpoint's DataSpec) gives, normalised as in training."""
    images = images.reshape(-1, *model.data.shape)
    batches = (images[i : i + batch_size] for i in range(0, len(images), batch_size))
    return torch.cat([model(model.data.normalize(batch)).float() for batch in batches])
