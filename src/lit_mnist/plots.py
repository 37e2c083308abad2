"""`make plots RUN=<run folder>`: the run's curves as PNG files, and the diagnosis.

    python -m lit_mnist.plots logs/default/version_0

Writes loss.png and accuracy.png (train against validation, per epoch) and lr.png (the learning
rate of every parameter group, per step) into <run>/plots/, and prints the diagnosis.
"""

import argparse
import sys
from pathlib import Path

from lit_mnist.diagnosis import diagnose_run
from lit_mnist.events import read_scalars


def per_epoch(scalars: dict, tag: str) -> tuple[list[float], list[float]]:
    """(epoch numbers from 1, values) of a tag, placed by the epoch Lightning logged at its step."""
    epoch_at = dict(scalars.get("epoch", []))
    points = scalars.get(tag, [])
    return [epoch_at.get(step, 0) + 1 for step, _ in points], [value for _, value in points]


def plot(run_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    scalars = read_scalars(run_dir)
    out = run_dir / "plots"
    out.mkdir(exist_ok=True)
    written = []
    for name, ylabel in (("loss", "loss"), ("acc", "accuracy")):
        fig, ax = plt.subplots(figsize=(6, 4))
        for stage in ("train", "val"):
            x, y = per_epoch(scalars, f"{stage}/{name}")
            if y:
                ax.plot(x, y, marker="o", label={"train": "train", "val": "validation"}[stage])
        ax.set(xlabel="epoch", ylabel=ylabel, title=f"{ylabel.capitalize()}: train and validation")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
        path = out / f"{'accuracy' if name == 'acc' else name}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    rates = {
        t: v
        for t, v in scalars.items()
        if t.startswith("lr-") and not t.endswith(("momentum", "weight_decay"))
    }
    if rates:
        fig, ax = plt.subplots(figsize=(6, 4))
        for tag, points in sorted(rates.items()):
            ax.plot([s for s, _ in points], [v for _, v in points], label=tag.split("/", 1)[-1])
        ax.set(xlabel="optimizer step", ylabel="learning rate", title="Learning rate per parameter group")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "lr.png", dpi=100)
        plt.close(fig)
        written.append(out / "lr.png")
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path, help="a run folder (logs/<experiment>/version_<n>)")
    args = parser.parse_args(argv)
    if not args.run.is_dir() or not any(args.run.glob("events.out.tfevents.*")):
        sys.exit(f"error: {args.run} is not a run folder with TensorBoard event files")
    for path in plot(args.run):
        print(f"wrote {path}")
    print(f"\nDiagnosis: {diagnose_run(read_scalars(args.run))}")


if __name__ == "__main__":
    main()
