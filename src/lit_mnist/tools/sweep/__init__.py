"""lit-mnist sweep: an Optuna study over a search space, each trial a `lit-mnist fit` run.

    lit-mnist sweep --space configs/sweeps/search.yaml --trials 24 [--workers 2] [fit flags]

space.py reads the space file, run.py runs the trials, report.py writes the table, the best config
and the plots. docs/sweeps.md tells the whole story.
"""


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    from lit_mnist.tools.sweep.run import main as sweep

    sweep(argv, prog)
