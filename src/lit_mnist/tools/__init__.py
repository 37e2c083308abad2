"""Around finished runs: read them back, plot, diagnose, export, compare and tabulate them.
Nothing here runs inside training.

The commands among them are `lit-mnist <tool>` subcommands: TOOLS names them, run_tool runs one.
Nothing heavy is imported here, so `lit-mnist --help` stays quick."""

import argparse
import importlib
import sys
from pathlib import Path
from typing import NoReturn

# the checkout holding configs/ (src/lit_mnist/tools/ is three levels below it)
PROJECT_ROOT = Path(__file__).resolve().parents[3]

LIGHTNING_SUBCOMMANDS = {
    "fit": "train, then test the best checkpoint on the official test set",
    "validate": "evaluate a checkpoint (--ckpt_path) on the validation split",
    "test": "evaluate a checkpoint (--ckpt_path) on the official test set",
    "predict": "classify an image or a folder of images (--data.predict_path) with a checkpoint",
}
TOOLS = {
    "compare": "train the seed CNN once per classic optimizer, same budget and seed (a grid sweep)",
    "seeds": "train one recipe once per seed; mean and standard deviation of the accuracies (a grid sweep)",
    "results": "every run's metrics.json under a folder as Markdown tables",
    "plots": "a run's loss, accuracy and learning-rate curves as PNG files, and its diagnosis",
    "export": "a checkpoint as ONNX and TorchScript, checked against PyTorch on its own test split",
    "drawn": "digits rendered from fonts and pens of every width, and a checkpoint's accuracy on them",
    "folders": "an IDX dataset (MNIST, ...) written out as PNG class folders for ImageFolderDataModule",
    "notebooks": "run the notebooks headless and keep copies with their outputs",
    "bench": "training speed of the template against plain PyTorch",
    "bench-gpu": "the same on a GPU: samples/s at large batches, and gpu_fast.yaml's time to 99%",
    "lr-find": "an LR range test on a recipe: the loss against the learning rate, and the rate to train with",
    "sweep": "an Optuna study over a search space (configs/sweeps/): trials in parallel, pruned, resumable",
}


def tool_module(name: str) -> str:
    """The module of the tool `name` (a hyphen in the command, an underscore in the module)."""
    return f"lit_mnist.tools.{name.replace('-', '_')}"


def run_tool(name: str, argv: list[str]) -> None:
    """`lit-mnist <name> <argv>`: imports only the tool asked for."""
    if name not in TOOLS:
        raise ValueError(f"unknown tool {name!r}; the tools are {', '.join(TOOLS)}")
    importlib.import_module(tool_module(name)).main(argv, prog=f"lit-mnist {name}")


def overview() -> str:
    """What `lit-mnist --help` prints: what the project is and every subcommand."""
    width = max(map(len, [*LIGHTNING_SUBCOMMANDS, *TOOLS])) + 2

    def rows(commands: dict[str, str]) -> list[str]:
        return [f"  {name:<{width}}{summary}" for name, summary in commands.items()]

    return "\n".join(
        [
            "lit-mnist: train image classifiers with PyTorch Lightning (MNIST is the worked example), "
            "and study the runs they leave in logs/.",
            "",
            "Training (LightningCLI; each writes a run folder logs/<experiment>/version_<n>/):",
            *rows(LIGHTNING_SUBCOMMANDS),
            "",
            "Around finished runs:",
            *rows(TOOLS),
            "",
            "lit-mnist <subcommand> --help for its flags",
            "lit-mnist --version",
        ]
    )


def parser_for(prog: str | None, doc: str) -> argparse.ArgumentParser:
    """A tool's parser: its module docstring as the help, and no abbreviated flags, so a
    `lit-mnist fit` flag passed on through a tool is never taken for one of the tool's own."""
    return argparse.ArgumentParser(
        prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    """The data root, spelled as in `lit-mnist fit`."""
    parser.add_argument(
        "--data.data_dir",
        dest="data_dir",
        default="data",
        help="the folder holding MNIST/raw (default: data)",
    )


def fit_flags(
    parser: argparse.ArgumentParser, argv: list[str], seed_flag: str
) -> tuple[argparse.Namespace, list[str]]:
    """The tool's own options, and every other argument: the flags for each `lit-mnist fit` run.
    A `--` before them and the word `fit` are accepted; the tool sets the seed itself."""
    # a subcommand word anywhere (`--seeds 0 1 fit ...`) that is no flag's value
    words = [i for i, a in enumerate(argv) if a in LIGHTNING_SUBCOMMANDS and not _is_value(argv, i)]
    if words and argv[words[0]] != "fit":
        fail(f"the runs are `lit-mnist fit` runs, not `{argv[words[0]]}`: only fit writes the metrics")
    argv = [a for i, a in enumerate(argv) if i not in words[:1]]
    args, passed_on = parser.parse_known_args(argv)
    if "--" in passed_on:
        passed_on.remove("--")
    if any(flag.startswith("--seed_everything") for flag in passed_on):
        fail(f"give the seed with {seed_flag}, not --seed_everything")
    return args, passed_on


def _is_value(argv: list[str], i: int) -> bool:
    before = argv[i - 1] if i else ""
    return before.startswith("-") and before != "--" and "=" not in before


def fail(message: str) -> NoReturn:
    """Bad input a user can fix: one line on stderr, exit status 2 (as argparse's own errors)."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)
