"""`make compare`: the classic optimizers on the seed CNN, same budget, same seed.

    lit-mnist compare [--epochs 4] [--seed 0] [--optimizers sgd adam ...] [--workers N] [--study NAME]
                      [fit flags]

A grid sweep over configs/sweeps/optimizers.yaml (each optimizer with its customary learning rate)
on configs/default.yaml: each optimizer is a `lit-mnist fit` run in
logs/sweeps/compare-<time>/trial_<n>/ that tests its best checkpoint. trials.md there is the table
(best validation accuracy, test accuracy, epochs, time per optimizer) and curves.png every
validation curve; `tensorboard --logdir` on the folder overlays the runs. Every flag not listed
above goes to each run (e.g. --config configs/experiments/fast.yaml --data.batch_size=128).
"""

import dataclasses
import sys

from lit_mnist.tools import PROJECT_ROOT, fail, fit_flags, parser_for

CONFIG = PROJECT_ROOT / "configs" / "default.yaml"
SPACE = PROJECT_ROOT / "configs" / "sweeps" / "optimizers.yaml"
OPTIMIZER = "model.optimizer"


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    from lit_mnist.errors import UserError
    from lit_mnist.tools.sweep.run import SWEEPS, add_grid_options, grid_sweep
    from lit_mnist.tools.sweep.space import Param, load_space

    try:
        space = load_space(SPACE)
    except UserError as err:
        fail(str(err))
    (param,) = [param for param in space.params if param.key == OPTIMIZER]
    names = list(param.labels())
    parser = parser_for(prog, __doc__)
    parser.add_argument("--epochs", type=int, default=4, help="the budget: epochs per optimizer")
    parser.add_argument("--seed", type=int, default=0, help="the seed of every run (--seed_everything)")
    parser.add_argument(
        "--optimizers",
        nargs="+",
        choices=names,
        default=names,
        metavar="NAME",
        help=f"the optimizers to train (default: all): {' '.join(names)}",
    )
    add_grid_options(parser, "compare")
    options, fit_args = fit_flags(parser, sys.argv[1:] if argv is None else argv, seed_flag="--seed")
    if options.epochs < 1:
        fail(f"--epochs must be at least 1, got {options.epochs}")
    if len(set(options.optimizers)) != len(options.optimizers):
        fail(f"the optimizers repeat: {' '.join(options.optimizers)}; give each once")
    chosen = [param.value_of(name) for name in options.optimizers]
    space = dataclasses.replace(
        space,
        params=(Param(OPTIMIZER, "choice", choices=tuple(chosen), names=tuple(options.optimizers)),),
        flags=(f"--trainer.max_epochs={options.epochs}", f"--seed_everything={options.seed}"),
    )
    study = grid_sweep(space, [f"--config={CONFIG}", *fit_args], options.study, "compare", options.workers)
    folder = SWEEPS / study.study_name
    print(f"\n{(folder / 'trials.md').read_text()}\nCurves overlaid: tensorboard --logdir {folder}")


if __name__ == "__main__":
    main()
