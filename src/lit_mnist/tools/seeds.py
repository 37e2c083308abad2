"""One recipe, several seeds: `make train SEEDS="0 1 2"`.

    lit-mnist seeds --seeds 0 1 2 [--config configs/default.yaml] [fit flags]

Runs `lit-mnist fit` once per seed, each in its own process (with `--seed_everything=<seed>`) and
its own run folder, then prints each run's accuracies and their mean +- sample standard deviation.
Every flag but --seeds goes to each run. The first failing run stops the rest and its exit
status is returned.
"""

import json
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

from lit_mnist.tools import fail, fit_flags, parser_for
from lit_mnist.tools.progress import Progress

RUN_FOLDER = "Run folder: "


def run_seed(fit_args: list[str], seed: int) -> Path:
    """Runs one seed, echoing its output; returns its run folder."""
    command = [sys.executable, "-m", "lit_mnist", "fit", *fit_args, f"--seed_everything={seed}"]
    print(f"\n=== seed {seed}: {shlex.join(['lit-mnist', *command[3:]])}", flush=True)
    run_dir = None
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, bufsize=1) as process:
        for line in process.stdout:
            print(line, end="", flush=True)
            if line.startswith(RUN_FOLDER):
                run_dir = Path(line[len(RUN_FOLDER) :].strip())
    if process.returncode != 0:
        print(f"error: the run with seed {seed} failed (exit {process.returncode})", file=sys.stderr)
        sys.exit(process.returncode)
    if run_dir is None or not (run_dir / "metrics.json").is_file():
        print(
            f"error: the run with seed {seed} wrote no metrics.json "
            "(fast_dev_run and --trainer.logger=false write none)",
            file=sys.stderr,
        )
        sys.exit(1)
    return run_dir


def summarize(results: dict[int, dict]) -> str:
    keys = [k for k in ("test/acc", "val/acc_best") if all(r.get(k) is not None for r in results.values())]
    lines = ["| seed | run folder | " + " | ".join(keys) + " |", "| --- | --- |" + " --- |" * len(keys)]
    for seed, result in results.items():
        values = " | ".join(f"{100 * result[k]:.2f}%" for k in keys)
        lines.append(f"| {seed} | {result['run_dir']} | {values} |")
    for key in keys:
        values = [r[key] for r in results.values()]
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        mean = statistics.fmean(values)
        lines.append(f"{key}: {100 * mean:.2f}% ± {100 * std:.2f} (mean ± std over {len(values)} seeds)")
    return "\n".join(lines)


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    parser = parser_for(prog, __doc__)
    parser.add_argument(
        "--seeds", nargs="+", type=int, required=True, metavar="SEED", help="the seeds, one run each"
    )
    options, fit_args = fit_flags(parser, sys.argv[1:] if argv is None else argv, seed_flag="--seeds")
    if len(set(options.seeds)) != len(options.seeds):
        fail(f"the seeds repeat: {' '.join(map(str, options.seeds))}; give each seed once")
    results = {}
    progress = Progress(len(options.seeds))
    for seed in options.seeds:
        run_dir = run_seed(fit_args, seed)
        results[seed] = {**json.loads((run_dir / "metrics.json").read_text()), "run_dir": str(run_dir)}
        progress.done(f"seed {seed}")
    print(f"\n{summarize(results)}")


if __name__ == "__main__":
    main()
