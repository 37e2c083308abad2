"""One recipe, several seeds: `make train SEEDS="0 1 2"`.

    python -m lit_mnist.tools.seeds --seeds 0 1 2 -- fit --config configs/default.yaml [flags]

Runs `lit-mnist` once per seed, each in its own process (with `--seed_everything=<seed>`) and its
own run folder, then prints each run's accuracies and their mean +- sample standard deviation.
The first failing run stops the rest and its exit status is returned.
"""

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

RUN_FOLDER = "Run folder: "


def run_seed(args: list[str], seed: int) -> Path:
    """Runs one seed, echoing its output; returns its run folder."""
    command = [sys.executable, "-m", "lit_mnist", *args, f"--seed_everything={seed}"]
    print(f"\n=== seed {seed}: lit-mnist {' '.join(command[3:])}", flush=True)
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
        print(f"error: the run with seed {seed} wrote no metrics.json (was it a fit?)", file=sys.stderr)
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


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        sys.exit(
            "error: usage: python -m lit_mnist.tools.seeds --seeds 0 1 2 -- fit --config <config> [flags]"
        )
    split = argv.index("--")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", nargs="+", type=int, required=True, help="the seeds, one run each")
    options = parser.parse_args(argv[:split])
    run_args = argv[split + 1 :]
    if not run_args or run_args[0] != "fit":
        sys.exit("error: the command after -- must be `fit ...`: only fit writes the metrics to compare")
    if len(set(options.seeds)) != len(options.seeds):
        sys.exit(f"error: the seeds repeat: {options.seeds}")
    if any(a.startswith("--seed_everything") for a in run_args):
        sys.exit("error: give the seeds with --seeds (SEEDS= with make), not --seed_everything")
    results = {}
    for seed in options.seeds:
        run_dir = run_seed(run_args, seed)
        results[seed] = {**json.loads((run_dir / "metrics.json").read_text()), "run_dir": str(run_dir)}
    print(f"\n{summarize(results)}")


if __name__ == "__main__":
    main()
