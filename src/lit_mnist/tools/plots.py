"""`make plots RUN=<run folder>`: the run's curves as PNG files, and the diagnosis.

    lit-mnist plots logs/default/version_0

Writes loss.png and accuracy.png (train against validation, per epoch) and lr.png (the learning
rate of every parameter group, per step) into <run>/plots/, and prints the diagnosis.
"""

from pathlib import Path

from lit_mnist.tools import fail, parser_for
from lit_mnist.tools.diagnosis import diagnose_run, learning_rates
from lit_mnist.tools.events import read_scalars


def per_epoch(scalars: dict, tag: str) -> tuple[list[float], list[float]]:
    """(epoch numbers from 1, values) of a tag, placed by the epoch Lightning logged at its step."""
    epoch_at = dict(scalars.get("epoch", []))
    points = scalars.get(tag, [])
    return [epoch_at.get(step, 0) + 1 for step, _ in points], [value for _, value in points]


def draw_epochs(ax, scalars: dict, name: str, ylabel: str) -> None:
    """Train against validation per epoch of `name` ("loss" or "acc") on a matplotlib Axes."""
    import matplotlib.ticker

    for stage in ("train", "val"):
        x, y = per_epoch(scalars, f"{stage}/{name}")
        if y:
            ax.plot(x, y, marker="o", label={"train": "train", "val": "validation"}[stage])
    ax.set(xlabel="epoch", ylabel=ylabel, title=f"{ylabel.capitalize()}: train and validation")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend()


def draw_learning_rates(ax, scalars: dict) -> None:
    """Every parameter group's learning rate per optimizer step on a matplotlib Axes."""
    for tag, points in sorted(learning_rates(scalars).items()):
        ax.plot([s for s, _ in points], [v for _, v in points], label=tag.split("/", 1)[-1])
    ax.set(xlabel="optimizer step", ylabel="learning rate", title="Learning rate per parameter group")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def plot(run_dir: Path) -> list[Path]:
    from matplotlib.figure import Figure  # no pyplot: no backend to choose, nothing left open

    scalars = read_scalars(run_dir)
    out = run_dir / "plots"
    out.mkdir(exist_ok=True)
    figures = [
        ("loss.png", draw_epochs, ("loss", "loss")),
        ("accuracy.png", draw_epochs, ("acc", "accuracy")),
    ]
    if learning_rates(scalars):
        figures.append(("lr.png", draw_learning_rates, ()))
    written = []
    for filename, draw, args in figures:
        fig = Figure(figsize=(6, 4))
        draw(fig.subplots(), scalars, *args)
        fig.tight_layout()
        fig.savefig(out / filename, dpi=100)
        written.append(out / filename)
    return written


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    parser = parser_for(prog, __doc__)
    parser.add_argument("run", type=Path, help="a run folder (logs/<experiment>/version_<n>)")
    args = parser.parse_args(argv)
    try:
        scalars = read_scalars(args.run)
    except FileNotFoundError as err:
        fail(f"{args.run} is not a run folder ({err})")
    for path in plot(args.run):
        print(f"wrote {path}")
    print(f"\nDiagnosis: {diagnose_run(scalars)}")


if __name__ == "__main__":
    main()
