"""`make compare`: the classic optimizers on the seed CNN, same budget, same seed.

    lit-mnist compare [--epochs 4] [--seed 0] [--optimizers sgd adam ...] [--data.data_dir=data] [fit flags]

Each optimizer trains configs/default.yaml with its usual learning rate in its own process, logged
to one parent folder (logs/compare/<time>/<optimizer>) so TensorBoard overlays the curves. Then
compare.md (best validation accuracy, test accuracy, epochs to 98.5% validation accuracy, wall
time) and compare.png (every validation curve) are written to that folder. Every flag not listed
below goes to each `lit-mnist fit` run (e.g. --trainer.max_steps=5 --data.batch_size=128).
"""

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from lit_mnist.tools import PROJECT_ROOT, add_data_dir, fail, fit_flags, parser_for
from lit_mnist.tools.events import read_scalars
from lit_mnist.tools.progress import Progress

CONFIG = PROJECT_ROOT / "configs" / "default.yaml"
# name: (class, arguments). The learning rates are the customary starting points: torch's
# defaults where they are usable (Adagrad 0.01, Adadelta 1.0, Adam/AdamW 1e-3), 0.01 for SGD
# with and without momentum, and 1e-3 for RMSprop (torch's 0.01 is known to be too high for CNNs).
OPTIMIZERS = {
    "sgd": ("torch.optim.SGD", {"lr": 0.01}),
    "sgd_momentum": ("torch.optim.SGD", {"lr": 0.01, "momentum": 0.9}),
    "sgd_nesterov": ("torch.optim.SGD", {"lr": 0.01, "momentum": 0.9, "nesterov": True}),
    "adam": ("torch.optim.Adam", {"lr": 0.001}),
    "adamw": ("torch.optim.AdamW", {"lr": 0.001, "weight_decay": 0.01}),
    "rmsprop": ("torch.optim.RMSprop", {"lr": 0.001}),
    "adagrad": ("torch.optim.Adagrad", {"lr": 0.01}),
    "adadelta": ("torch.optim.Adadelta", {"lr": 1.0}),
}
TARGET = 0.985


def optimizer_flags(name: str) -> list[str]:
    class_path, arguments = OPTIMIZERS[name]
    flags = [f"--model.optimizer={class_path}"]
    for key, value in arguments.items():
        flags.append(f"--model.optimizer.{key}={str(value).lower() if isinstance(value, bool) else value}")
    return flags


def train(name: str, args, parent: Path, passed_on: list[str]) -> None:
    command = [
        sys.executable, "-m", "lit_mnist", "fit", f"--config={_relative(CONFIG)}",
        *optimizer_flags(name),
        f"--data.data_dir={args.data_dir}",
        f"--seed_everything={args.seed}",
        f"--trainer.max_epochs={args.epochs}",
        f"--trainer.logger.init_args.save_dir={parent.parent.parent}",
        f"--trainer.logger.init_args.name={parent.parent.name}/{parent.name}",
        f"--trainer.logger.init_args.version={name}",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        *passed_on,
    ]  # fmt: skip
    print(f"=== {name}: {shlex.join(['lit-mnist', *command[3:]])}", flush=True)
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        print(result.stdout[-2000:] + result.stderr[-3000:], file=sys.stderr)
        sys.exit(f"error: the {name} run failed (exit {result.returncode}); its output is above")


def _relative(path: Path) -> str:
    """The path as typed from the working folder when it lies below it (commands read better)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def summarize(name: str, run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    curve = [value for _, value in read_scalars(run_dir).get("val/acc", [])]
    reached = next((epoch for epoch, value in enumerate(curve, 1) if value >= TARGET), None)
    class_path, arguments = OPTIMIZERS[name]
    return {
        "name": name,
        "optimizer": f"{class_path.rsplit('.', 1)[1]}({', '.join(f'{k}={v}' for k, v in arguments.items())})",
        "val_curve": curve,
        "val_best": metrics.get("val/acc_best"),
        "test": metrics.get("test/acc"),
        "epochs_to_target": reached,
        "seconds": metrics.get("fit_seconds"),
    }


def table(rows: list[dict], epochs: int) -> str:
    lines = [
        f"| optimizer | best val acc | test acc | epochs to {100 * TARGET:.1f}% val | training time |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in sorted(rows, key=lambda r: -(r["val_best"] or 0)):
        reached = row["epochs_to_target"] or f"not in {epochs}"
        test = "n/a" if row["test"] is None else f"{100 * row['test']:.2f}%"
        lines.append(
            f"| {row['optimizer']} | {100 * (row['val_best'] or 0):.2f}% | {test} | {reached} "
            f"| {row['seconds']:.0f} s |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (full, zoom) = plt.subplots(1, 2, figsize=(12, 5))
    for row in rows:
        epochs = range(1, len(row["val_curve"]) + 1)
        for ax in (full, zoom):
            ax.plot(epochs, [100 * v for v in row["val_curve"]], marker="o", label=row["optimizer"])
    full.set_title("Validation accuracy")
    zoom.set_title(f"Validation accuracy above {100 * TARGET - 1:.1f}%")
    zoom.set_ylim(100 * TARGET - 1, 100)
    for ax in (full, zoom):
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    zoom.axhline(100 * TARGET, color="gray", linestyle="--", linewidth=1)
    handles, labels = full.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8)  # below both: hides no curve
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = parser_for(prog, __doc__)
    parser.add_argument("--epochs", type=int, default=4, help="the budget: epochs per optimizer")
    parser.add_argument("--seed", type=int, default=0, help="the seed of every run (--seed_everything)")
    add_data_dir(parser)
    parser.add_argument("--logs", type=Path, default=Path("logs"), help="runs go to <logs>/compare/<time>/")
    parser.add_argument(
        "--optimizers",
        nargs="+",
        choices=list(OPTIMIZERS),
        default=list(OPTIMIZERS),
        metavar="NAME",
        help=f"the optimizers to train (default: all): {' '.join(OPTIMIZERS)}",
    )
    args, passed_on = fit_flags(parser, argv, seed_flag="--seed")
    if args.epochs < 1:
        fail(f"--epochs must be at least 1, got {args.epochs}")
    parent = args.logs / "compare" / time.strftime("%Y%m%d-%H%M%S")
    if parent.exists():
        fail(f"{parent} exists already: wait a second and run again")
    progress = Progress(len(args.optimizers))
    for name in args.optimizers:
        train(name, args, parent, passed_on)
        progress.done(name)
    rows = [summarize(name, parent / name) for name in args.optimizers]
    text = (
        f"Seed CNN (configs/default.yaml), {args.epochs} epochs per optimizer, seed {args.seed}.\n"
        f"Command: {shlex.join(['lit-mnist', 'compare', *argv])}\n\n{table(rows, args.epochs)}\n\n"
        f"![validation curves](compare.png)\n"
    )
    (parent / "compare.md").write_text(text)
    plot(rows, parent / "compare.png")
    print(f"\n{text}\nWritten: {parent / 'compare.md'}, {parent / 'compare.png'}")
    print(f"Curves overlaid: tensorboard --logdir {parent}")


if __name__ == "__main__":
    main()
