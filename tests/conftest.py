import os
import subprocess
import sys
import tempfile
from pathlib import Path

import lightning as L
import pytest
import torch

from forkserver import ForkServer
from lit_mnist.data import FILES, raw_folder

ROOT = Path(__file__).resolve().parents[1]
# auto_precision's timings are cached per machine: the tests keep theirs apart from the user's
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="lit-mnist-cache-")


def write_idx(path: Path, array: torch.Tensor) -> None:
    """Write a uint8 tensor as an IDX file: magic 0x00000800 + ndim, big-endian dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.to(torch.uint8).contiguous().numpy().tobytes())


def synthetic_digits(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose label is written in them (a bright bar at a label-dependent row), so a
    small net can learn them, with noise so no two are alike."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    labels = labels[torch.randperm(n, generator=generator)]
    images = torch.randint(0, 60, (n, 28, 28), generator=generator, dtype=torch.uint8)
    for row in range(10):
        images[labels == row, 2 + 2 * row : 4 + 2 * row, 4:24] = 255
    return images, labels.to(torch.uint8)


def make_dataset(root: Path, n_train: int = 300, n_test: int = 100, dataset: str = "MNIST") -> Path:
    """IDX files in <root>/<dataset>/raw/, as torchvision's download leaves them."""
    folder = raw_folder(root, dataset)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 1), ("test", n_test, 2)):
        images, labels = synthetic_digits(n, seed)
        images_file, labels_file = FILES[split]
        write_idx(folder / images_file, images)
        write_idx(folder / labels_file, labels)
    return root


@pytest.fixture(scope="session")
def fake_mnist(tmp_path_factory) -> Path:
    """A data root with 300 training and 100 test images in MNIST's IDX layout, the same as
    FashionMNIST for the configs that read it."""
    root = make_dataset(tmp_path_factory.mktemp("fake_mnist"))
    return make_dataset(root, dataset="FashionMNIST")


@pytest.fixture(scope="session")
def real_mnist() -> Path:
    """The real MNIST under $DATA_DIR; skipped where absent unless LIT_MNIST_REQUIRE_DATA=1."""
    root = Path(os.environ.get("DATA_DIR", ROOT / "data")).resolve()
    if not (raw_folder(root) / FILES["train"][0]).is_file():
        message = f"real MNIST not found under {root} (set DATA_DIR)"
        if os.environ.get("LIT_MNIST_REQUIRE_DATA") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return root


def quiet_trainer(**kwargs) -> L.Trainer:
    """A Trainer that writes nothing and prints little, for tests in this process."""
    quiet = {
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    return L.Trainer(**{**quiet, **kwargs})


@pytest.fixture(scope="session")
def fork_server():
    """Runs `lit-mnist ARGS` in forked children of one process that imported it once
    (tests/forkserver.py); tests/ is on its path, for the killer callbacks."""
    tests = str(Path(__file__).parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])}
    with ForkServer(env) as server:
        yield server


def run_cli(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """`python -m lit_mnist ARGS` in `cwd`, as a user runs it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "lit_mnist", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"lit-mnist {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


# A small fit whose steps draw random numbers (dropout, augmentation), on the seed recipe.
RANDOM_RUN = [
    "fit",
    "--config", str(ROOT / "configs/default.yaml"),
    "--model.net.init_args.channels=[4, 8]",
    "--model.net.init_args.hidden=16",
    "--model.net.init_args.dropout=0.2",
    "--data.augment.degrees=10",
]  # fmt: skip

# Flags that make a CLI run small on the synthetic data.
SMALL = [
    "--data.val_size=50",
    "--data.eval_batch_size=50",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
]


@pytest.fixture(autouse=True)
def restore_determinism():
    """Trainer(deterministic=True) sets process-global torch flags: put them back after each test."""
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    yield
    torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]


@pytest.fixture(scope="session")
def quick_run(real_mnist, tmp_path_factory) -> Path:
    """The run folder of configs/experiments/quick.yaml on the real MNIST (100 steps, tested)."""
    cwd = tmp_path_factory.mktemp("quick_run")
    run_cli(
        "fit", "--config", str(ROOT / "configs/default.yaml"),
        "--config", str(ROOT / "configs/experiments/quick.yaml"),
        f"--data.data_dir={real_mnist}", "--trainer.enable_progress_bar=false", cwd=cwd,
    )  # fmt: skip
    return cwd / "logs" / "quick" / "version_0"


@pytest.fixture(scope="session")
def fake_quick_run(fake_mnist, tmp_path_factory) -> tuple[Path, Path]:
    """(working folder, run folder) of configs/experiments/quick.yaml on the synthetic digits,
    untested: a small checkpoint to predict or score with."""
    cwd = tmp_path_factory.mktemp("fake_quick_run")
    run_cli(
        "fit", "--config", str(ROOT / "configs/default.yaml"),
        "--config", str(ROOT / "configs/experiments/quick.yaml"),
        f"--data.data_dir={fake_mnist}", *SMALL, "--test_after_fit=false", cwd=cwd,
    )  # fmt: skip
    return cwd, cwd / "logs" / "quick" / "version_0"
