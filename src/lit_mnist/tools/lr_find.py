"""The learning rate found, not guessed: an LR range test on a recipe (`make lr-find`).

    lit-mnist lr-find [--min_lr 1e-6] [--max_lr 1] [--steps 100] [--divergence 4] [--config ...] [fit flags]

The recipe's base learning rate (--model.optimizer.lr) grows exponentially from --min_lr to
--max_lr over --steps optimizer steps, each parameter group keeping its ratio to it (lr_mult,
batch scaling), with the recipe's optimizer, net, data, precision and accumulation; schedulers,
validation, checkpoints and the logger are left out. The test stops once the smoothed training
loss is --divergence times its lowest, or has fallen by a fifth and risen back half-way to its
first value (a diverged classifier's loss tends to settle near chance). The suggestion is the rate
where the smoothed loss falls fastest; on the seed CNN it was 1.5 to 3 times below the best rate
of a one-epoch sweep (docs/recipes.md).

Into logs/lr_find/version_<n>/: lr_find.png (loss against learning rate, the suggestion marked)
and lr_find.json (every step's rate and loss, the suggestion, the command). The flag to train
with is printed. A loss that does not diverge within the steps is one line, exit 2, nothing written.
"""

import json
import math
import shlex
import sys
from pathlib import Path

from lit_mnist.tools import fail, parser_for

FOLDER = Path("logs") / "lr_find"


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    from lit_mnist.cli import with_one_line_errors

    parser = parser_for(prog, __doc__)
    parser.add_argument(
        "--min_lr", type=float, default=1e-6, help="the first base learning rate (default 1e-6)"
    )
    parser.add_argument("--max_lr", type=float, default=1.0, help="the last base learning rate (default 1)")
    parser.add_argument(
        "--steps", type=int, default=100, help="optimizer steps from min_lr to max_lr (default 100)"
    )
    parser.add_argument(
        "--divergence",
        type=float,
        default=4.0,
        help="stop when the smoothed loss is this many times its lowest",
    )
    argv = sys.argv[1:] if argv is None else argv
    options, fit_args = parser.parse_known_args(argv)
    fit_args = [a for i, a in enumerate(fit_args) if not (i == 0 and a in ("fit", "--"))]
    if not 0 < options.min_lr < options.max_lr:
        fail(
            f"--min_lr and --max_lr must satisfy 0 < min_lr < max_lr, got {options.min_lr}, {options.max_lr}"
        )
    if options.steps < 10:
        fail(f"--steps must be at least 10, got {options.steps}")
    if options.divergence <= 1:
        fail(f"--divergence must be over 1, got {options.divergence}")
    with_one_line_errors(lambda: range_test(options, fit_args, shlex.join(["lit-mnist", "lr-find", *argv])))


def range_test(options, fit_args: list[str], command: str) -> None:
    from lightning.pytorch.callbacks import ProgressBar

    from lit_mnist.callbacks.lr_range import LRRangeTest
    from lit_mnist.cli import MNISTCLI, RAISING, _check_config_files
    from lit_mnist.errors import UserError

    _check_config_files(fit_args)
    flags = [
        *fit_args,
        "--trainer.logger=false",
        "--trainer.max_epochs=-1",
        f"--trainer.max_steps={options.steps}",
        "--trainer.limit_val_batches=0",
        "--trainer.num_sanity_val_steps=0",
        "--test_after_fit=false",
        "--divergence=null",  # the test diverges on purpose
    ]
    cli = MNISTCLI(args=flags, run=False, parser_kwargs=RAISING)
    test = LRRangeTest(options.min_lr, options.max_lr, options.steps, options.divergence)
    trainer = cli.trainer
    # only the test watches this fit: no checkpoint, config file, summary or early stop
    trainer.callbacks[:] = [c for c in trainer.callbacks if isinstance(c, ProgressBar)] + [test]
    trainer.fit(cli.model, datamodule=cli.datamodule)
    top = test.lrs[-1] if test.lrs else options.min_lr
    if not test.diverged:
        raise UserError(
            f"the loss did not diverge in {len(test.lrs)} steps up to a learning rate of {top:.3g}: "
            "raise --max_lr or --steps"
        )
    suggestion = test.suggestion()
    if suggestion is None:
        raise UserError(
            f"the loss did not fall before it diverged at a learning rate of {top:.3g}: lower --min_lr"
        )
    folder = _next_version(FOLDER)
    folder.mkdir(parents=True)
    optimizer = trainer.optimizers[0]
    report = {
        "suggestion": suggestion,
        "flag": f"--model.optimizer.lr={suggestion:.3g}",
        "diverged_at": top,
        "optimizer": type(optimizer).__name__,
        "groups": {
            g.get("name", str(i)): r
            for i, (g, r) in enumerate(zip(optimizer.param_groups, test.ratios, strict=True))
        },
        "lrs": test.lrs,
        "losses": test.losses,
        "smoothed": test.smoothed,
        "command": command,
    }
    (folder / "lr_find.json").write_text(json.dumps(report, indent=1) + "\n")
    plot(test, suggestion, folder / "lr_find.png", report["optimizer"])
    print(
        f"lr-find: {len(test.lrs)} steps of {report['optimizer']} from {options.min_lr:.3g}; the smoothed "
        f"loss diverged at {top:.3g}\nsuggested: {report['flag']} (the steepest fall of the smoothed loss)\n"
        f"plot and numbers: {folder / 'lr_find.png'}, {folder / 'lr_find.json'}"
    )


def plot(test, suggestion: float, path: Path, optimizer: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(test.lrs, test.losses, color="0.75", label="loss of each step")
    ax.plot(test.lrs, test.smoothed, color="C0", label="smoothed")
    at = min(range(len(test.lrs)), key=lambda i: abs(math.log(test.lrs[i] / suggestion)))
    ax.plot([suggestion], [test.smoothed[at]], "o", color="C3", label=f"suggested lr {suggestion:.3g}")
    ax.set_xscale("log")
    finite = [v for v in test.smoothed if math.isfinite(v)]
    ax.set_ylim(min(finite) * 0.9, min(max(finite), 4 * min(finite)) * 1.1)
    ax.set_xlabel("base learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(f"LR range test ({optimizer})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _next_version(folder: Path) -> Path:
    taken = [int(p.name.split("_")[1]) for p in folder.glob("version_*") if p.name.split("_")[1].isdigit()]
    return folder / f"version_{max(taken, default=-1) + 1}"


if __name__ == "__main__":
    main()
