"""`make results`: every run's metrics.json under a folder, as Markdown tables.

    lit-mnist results [ROOT] [--output FILE] [--readme README.md]

One row per run (its folder, experiment, seed, epochs, accuracies, wall time, hardware and the
command that made it) and one row per recipe run with several seeds (mean +- sample std).
`--readme` replaces the block between the results markers in that file.
"""

import json
import math
import re
import shlex
import statistics
import sys
from pathlib import Path

from lit_mnist.errors import UserError
from lit_mnist.tools import fail, parser_for

START, END = "<!-- results:start -->", "<!-- results:end -->"
# flags that say where, not what: left out of the commands shown and of the grouping
# and a sweep trial's place in its study
WHERE = re.compile(
    r"^--(data\.data_dir|trainer\.logger\.init_args\.(save_dir|name|version)"
    r"|trainer\.callbacks\.(storage|study|trial))(=|$)"
)
SEED = re.compile(r"^--seed_everything(=|$)")
# a config inside some checkout's configs/ folder, shown as run from the project's root
CONFIG_PATH = re.compile(r"^(--config=)?\S*?/(configs/\S+\.ya?ml)$")


def load_runs(root: Path) -> list[dict]:
    """One dict per metrics.json below `root`, with the run folder relative to it."""
    runs = []
    for path in sorted(root.rglob("metrics.json")):
        try:
            metrics = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            print(f"skipped {path}: {err}", file=sys.stderr)
            continue
        if not isinstance(metrics, dict):
            print(f"skipped {path}: not a metrics object", file=sys.stderr)
            continue
        run = path.parent
        metrics["run"] = str(run.relative_to(root)) if run != root else run.name
        metrics.setdefault("experiment", run.parent.name)
        if "seed" not in metrics:  # runs written before the seed was recorded: read their config
            metrics["seed"] = _seed_from_config(run / "config.yaml")
        runs.append(metrics)
    return runs


def _seed_from_config(path: Path):
    import yaml

    try:
        return (yaml.safe_load(path.read_text()) or {}).get("seed_everything")
    except (OSError, yaml.YAMLError):
        return None


def _without(command: str, flag) -> list[str]:
    """The command's words without the flags `flag` matches (and the value of `--flag value`)."""
    words, skip = [], False
    for word in shlex.split(command):
        if skip:
            skip = False
        elif flag.match(word):
            skip = "=" not in word
        else:
            words.append(word)
    return words


def shown_command(run: dict) -> str | None:
    """The command as recorded, without the flags that only say where data and logs live."""
    command = run.get("command")
    if not command:
        return None
    return shlex.join(CONFIG_PATH.sub(r"\1\2", word) for word in _without(command, WHERE))


def recipe_of(run: dict) -> str:
    """What a run trained, seed aside: its command without the seed, else its experiment."""
    command = shown_command(run)
    if command is None:
        return f"{run['experiment']} (command not recorded)"
    return shlex.join(_without(command, SEED))


def _percent(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _duration(seconds) -> str:
    if seconds is None:
        return "n/a"
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes}:{seconds:02d}"


def _hardware(run: dict) -> str:
    hw = run.get("hardware") or {}
    device = hw.get("gpu") or f"{hw.get('cpu', '?')}, {hw.get('torch_threads', '?')} threads"
    return f"{device}, {hw.get('precision', '?')}"


def runs_table(runs: list[dict]) -> str:
    lines = [
        "| run | experiment | seed | epochs | best val acc | test acc | wall time | hardware | command |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in runs:
        command = shown_command(run)
        lines.append(
            f"| {run['run']} | {run['experiment']} | {run.get('seed')} | {run.get('epochs')} "
            f"| {_percent(run.get('val/acc_best'))} | {_percent(run.get('test/acc'))} "
            f"| {_duration(run.get('wall_seconds'))} | {_hardware(run)} "
            f"| {f'`{command}`' if command else 'not recorded (see config.yaml in the run folder)'} |"
        )
    return "\n".join(lines)


def seed_summary(runs: list[dict]) -> list[dict]:
    """Recipes run with more than one seed: n, seeds, mean and sample std of the accuracies."""
    groups: dict[str, list[dict]] = {}
    for run in runs:
        if run.get("test/acc") is not None:
            groups.setdefault(recipe_of(run), []).append(run)
    summary = []
    for recipe, members in groups.items():
        seeds = [m.get("seed") for m in members]
        if len(set(map(str, seeds))) < 2:
            continue
        test = [m["test/acc"] for m in members]
        summary.append(
            {
                "recipe": recipe,
                "experiment": members[0]["experiment"],
                "seeds": seeds,
                "test_mean": statistics.fmean(test),
                "test_std": statistics.stdev(test),
                "val_mean": _mean([m.get("val/acc_best") for m in members]),
                "wall_mean": _mean([m.get("wall_seconds") for m in members]),
            }
        )
    return summary


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.fmean(values) if values else None


def summary_table(summary: list[dict]) -> str:
    lines = [
        "| experiment | seeds | test acc, mean ± std | best val acc, mean | wall time, mean "
        "| command (plus `--seed_everything=<seed>`) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in summary:
        lines.append(
            f"| {row['experiment']} | {', '.join(map(str, row['seeds']))} "
            f"| {100 * row['test_mean']:.2f}% ± {100 * row['test_std']:.2f} "
            f"| {_percent(row['val_mean'])} | {_duration(row['wall_mean'])} | `{row['recipe']}` |"
        )
    return "\n".join(lines)


def report(root: Path) -> str:
    runs = load_runs(root)
    if not runs:
        raise UserError(f"no metrics.json under {root}: train first (make train)")
    parts = [f"{len(runs)} runs under `{root}` (`make results`). Commands leave out `--data.data_dir`.", ""]
    summary = seed_summary(runs)
    if summary:
        parts += ["Recipes run with several seeds:", "", summary_table(summary), ""]
    parts += ["Every run:", "", runs_table(runs)]
    return "\n".join(parts) + "\n"


def replace_block(text: str, block: str, name: str) -> str:
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise UserError(f"{name} needs one '{START}' line followed by one '{END}' line")
    head, rest = text.split(START)
    _, tail = rest.split(END)
    return f"{head}{START}\n{block}{END}{tail}"


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    parser = parser_for(prog, __doc__)
    parser.add_argument("root", nargs="?", default="logs", type=Path, help="folder searched for metrics.json")
    parser.add_argument("--output", type=Path, help="also write the tables to this Markdown file")
    parser.add_argument("--readme", type=Path, help="replace the results block of this file")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        fail(f"{args.root} is not a folder: train first (make train) or name the logs")
    if args.readme and not args.readme.is_file():
        fail(f"--readme {args.readme}: no such file")
    try:
        text = report(args.root)
        readme = replace_block(args.readme.read_text(), text, str(args.readme)) if args.readme else None
    except UserError as err:
        fail(str(err))
    print(text, end="")
    if args.output:
        args.output.write_text(text)
        print(f"written to {args.output}")
    if readme is not None:
        args.readme.write_text(readme)
        print(f"results block of {args.readme} replaced")


if __name__ == "__main__":
    main()
