"""One recipe, several seeds: `make train SEEDS="0 1 2"`.

    lit-mnist seeds --seeds 0 1 2 [--workers N] [--study NAME] [--config configs/default.yaml] [fit flags]

A grid sweep over configs/sweeps/seeds.yaml with these seeds: each seed is a `lit-mnist fit` run
(with `--seed_everything=<seed>`) in logs/sweeps/seeds-<time>/trial_<n>/ that tests its best
checkpoint. trials.md there holds every run and the mean ± sample standard deviation of the
accuracies, which are printed too; curves.png overlays the validation curves. Every flag but
those above goes to each run. A failing run leaves the others to finish; the command then exits 1,
and the same command with --study <its study> runs the missing seeds.
"""

import dataclasses
import sys

from lit_mnist.tools import PROJECT_ROOT, fail, fit_flags, parser_for

SPACE = PROJECT_ROOT / "configs" / "sweeps" / "seeds.yaml"
SEED = "seed_everything"


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    from lit_mnist.errors import UserError
    from lit_mnist.tools.sweep.report import seed_summary
    from lit_mnist.tools.sweep.run import add_grid_options, grid_sweep
    from lit_mnist.tools.sweep.space import Param, load_space

    parser = parser_for(prog, __doc__)
    parser.add_argument(
        "--seeds", nargs="+", type=int, required=True, metavar="SEED", help="the seeds, one run each"
    )
    add_grid_options(parser, "seeds")
    options, fit_args = fit_flags(parser, sys.argv[1:] if argv is None else argv, seed_flag="--seeds")
    if len(set(options.seeds)) != len(options.seeds):
        fail(f"the seeds repeat: {' '.join(map(str, options.seeds))}; give each seed once")
    try:
        space = load_space(SPACE)
    except UserError as err:
        fail(str(err))
    space = dataclasses.replace(space, params=(Param(SEED, "choice", choices=tuple(options.seeds)),))
    study = grid_sweep(space, fit_args, options.study, "seeds", options.workers)
    print(f"\n{seed_summary(study, space) or 'no run finished'}")


if __name__ == "__main__":
    main()
