"""Training speed of the template against plain PyTorch, measured in one run on one machine.

    lit-mnist bench [--data.data_dir=data] [--cases abcdefg] [--output docs/bench.md]      (or: make bench)

Cases, each in its own process with the same thread count:
  a  the tutorial loop: torchvision MNIST with ToTensor+Normalize per sample, batch 64, fp32
  b  a plain loop on the template's data path and configs/default.yaml's settings
  c  the template through Lightning with configs/default.yaml
  d  the template through Lightning with configs/experiments/fast.yaml
  e  configs/experiments/best.yaml's seconds per epoch (two short epochs, the second timed)
  f  each speed option alone, the template with configs/default.yaml
  g  where the template's per-step cost goes: a plain loop, a bare LightningModule (same net,
     optimizer, data and precision; no logger, callbacks or metrics) and the template, in turns
Every case of a-d evaluates the official test set after each epoch, to time the way to 99.0%; that
evaluation is counted in the time to 99% (as is the template's validation) but not in the
seconds per epoch, which time the training pass alone.
"""

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import lightning
import torch
import torch.nn.functional as F

from lit_mnist.errors import UserError
from lit_mnist.precision import cpu_name
from lit_mnist.tools import PROJECT_ROOT, add_data_dir, fail, parser_for
from lit_mnist.tools.progress import Progress

TARGET = 0.99
CASES = {
    "a": "tutorial loop: torchvision per-sample ToTensor+Normalize, batch 64, fp32",
    "b": "plain loop on the template's data path and default.yaml settings",
    "c": "template through Lightning, configs/default.yaml",
    "d": "template through Lightning, configs/experiments/fast.yaml",
    "e": "configs/experiments/best.yaml, seconds per epoch",
    "f": "each speed option alone, the template with default.yaml",
    "g": "milliseconds per step: plain loop, bare LightningModule, template, side by side",
}
CONFIGS = {
    "c": ["configs/default.yaml"],
    "d": ["configs/default.yaml", "configs/experiments/fast.yaml"],
    "e": ["configs/default.yaml", "configs/experiments/best.yaml"],
}
# Each speed option on its own, against the default recipe's settings (row 1).
FEATURES = {
    "default.yaml (auto_precision's precision and layout, batch 64, in-process loader)": [],
    "bf16 (--trainer.precision=bf16-mixed)": ["--trainer.precision=bf16-mixed"],
    "fp32 (--trainer.precision=32-true)": ["--trainer.precision=32-true"],
    "no channels_last (--model.channels_last=false)": ["--model.channels_last=false"],
    "channels_last (--model.channels_last=true)": ["--model.channels_last=true"],
    "fp32 and no channels_last: the tutorial's arithmetic": [
        "--trainer.precision=32-true",
        "--model.channels_last=false",
    ],
    "batch 256, lr x2 (--data.batch_size=256 --model.lr_scaling.mode=sqrt)": [
        "--data.batch_size=256",
        "--model.lr_scaling.mode=sqrt",
    ],
    "torch.compile (--model.compile=true)": ["--model.compile=true"],
    "1 thread (--threads=1)": ["--threads=1"],
    "1 loader worker (--data.loader.num_workers=1 --data.loader.persistent_workers=true)": [
        "--data.loader.num_workers=1",
        "--data.loader.persistent_workers=true",
    ],
    "data held on the device (--data.on_device=true)": ["--data.on_device=true"],
}


class Record:
    """Per-epoch training seconds and test accuracy, and the wall time at which TARGET was reached."""

    def __init__(self, min_epochs: int) -> None:
        self.min_epochs = min_epochs
        self.start = time.perf_counter()
        self.epoch_seconds: list[float] = []
        self.test_acc: list[float] = []
        self.to_target: float | None = None

    def epoch(self, seconds: float, test_acc: float) -> bool:
        """Record one epoch (its evaluation just ended); True when the case may stop."""
        self.epoch_seconds.append(seconds)
        self.test_acc.append(test_acc)
        if self.to_target is None and test_acc >= TARGET:
            self.to_target = time.perf_counter() - self.start
            self.epochs_to_target = len(self.test_acc)
        return self.to_target is not None and len(self.epoch_seconds) >= self.min_epochs

    def result(self, **extra) -> dict:
        return {
            "epoch_seconds": self.epoch_seconds,
            "test_acc": self.test_acc,
            "to_target_seconds": self.to_target,
            "epochs_to_target": getattr(self, "epochs_to_target", None),
            **extra,
        }


def accuracy(net, batches, prepare) -> float:
    net.eval()
    correct = total = 0
    with torch.inference_mode():
        for batch in batches:
            images, labels = prepare(batch)
            correct += int((net(images).argmax(1) == labels).sum())
            total += len(labels)
    net.train()
    return correct / total


def data_seconds(batches, prepare) -> float:
    start = time.perf_counter()
    for batch in batches:
        prepare(batch)
    return time.perf_counter() - start


def plain_loop(args, loader, test_loader, prepare, net, autocast: bool, optimizer) -> Record:
    record = Record(args.min_epochs)
    for _ in range(args.max_epochs):
        start = time.perf_counter()
        for batch in loader:
            images, labels = prepare(batch)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = F.cross_entropy(net(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        seconds = time.perf_counter() - start
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            done = record.epoch(seconds, accuracy(net, test_loader, prepare))
        if done:
            break
    return record


def case_a(args) -> dict:
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    from lit_mnist.data import SPEC
    from lit_mnist.nets import ConvNet

    # the tutorial's transform, with the statistics the datamodule uses
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(SPEC.mean, SPEC.std)])
    train = datasets.MNIST(args.data_dir, train=True, transform=transform)
    test = datasets.MNIST(args.data_dir, train=False, transform=transform)
    loader = DataLoader(train, batch_size=64, shuffle=True)
    test_loader = DataLoader(test, batch_size=1000)

    def same(batch):
        return batch

    loading = data_seconds(loader, same)
    net = ConvNet(SPEC)
    record = plain_loop(args, loader, test_loader, same, net, False, torch.optim.Adam(net.parameters(), 1e-3))
    return record.result(
        train_samples=len(train),
        data_seconds=loading,
        precision="32-true",
        channels_last=False,
        batch_size=64,
    )


def case_b(args) -> dict:
    from lit_mnist import precision
    from lit_mnist.data import SPEC, MNISTDataModule
    from lit_mnist.nets import ConvNet
    from lit_mnist.optim import GroupSettings, param_groups

    data = MNISTDataModule(data_dir=args.data_dir)  # default.yaml's data settings are the class defaults
    data.setup("fit")
    net = ConvNet(SPEC)
    # what auto_precision picks for the same net and batch (the cache case c reads too)
    choice = precision.choose(net, (64, 1, 28, 28), 10, torch.device("cpu"))
    layout = torch.channels_last if choice.channels_last else torch.contiguous_format

    def prepare(batch):
        images, labels = batch
        return (SPEC.normalize(images).contiguous(memory_format=layout), labels)

    loading = data_seconds(data.train_dataloader(), prepare)
    net = net.to(memory_format=layout)
    optimizer = torch.optim.Adam(param_groups(net, GroupSettings(), GroupSettings()), lr=1e-3)
    record = plain_loop(
        args,
        data.train_dataloader(),
        data.test_dataloader(),
        prepare,
        net,
        choice.precision == "bf16-mixed",
        optimizer,
    )
    return record.result(
        train_samples=len(data.train_idx),
        data_seconds=loading,
        precision=choice.precision,
        channels_last=choice.channels_last,
        batch_size=64,
    )


def case_lightning(args, configs: list[str], extra: tuple[str, ...] = (), evaluate: bool = True) -> dict:
    import lightning as L

    from lit_mnist.cli import MNISTCLI

    class Clock(L.Callback):
        """Times each training pass; evaluates the test set after each epoch's validation."""

        def __init__(self, record: Record) -> None:
            self.record = record

        def on_train_epoch_start(self, trainer, pl_module):
            self.started, self.trained = time.perf_counter(), None

        def on_validation_epoch_start(self, trainer, pl_module):
            if not trainer.sanity_checking:
                self.trained = time.perf_counter() - self.started

        def on_train_epoch_end(self, trainer, pl_module):
            data = trainer.datamodule

            def prepare(batch):
                return data.on_after_batch_transfer(
                    data.transfer_batch_to_device(batch, pl_module.device, 0), 0
                )

            if evaluate:
                with trainer.precision_plugin.forward_context():
                    test_acc = accuracy(pl_module, data.test_dataloader(), prepare)
            else:
                test_acc = float("nan")
            if self.trained is None:  # no validation this epoch
                self.trained = time.perf_counter() - self.started
            if self.record.epoch(self.trained, test_acc):
                trainer.should_stop = True

    with tempfile.TemporaryDirectory() as logs:
        flags = [f"--config={PROJECT_ROOT / c}" for c in configs] + [
            f"--data.data_dir={args.data_dir}",
            f"--threads={args.threads}",
            f"--trainer.logger.init_args.save_dir={logs}",
            "--trainer.enable_model_summary=false",
            *extra,
        ]
        cli = MNISTCLI(args=flags, run=False)
        data = cli.datamodule
        data.prepare_data()
        data.setup("fit")
        loading = data_seconds(data.train_dataloader(), lambda batch: data.on_after_batch_transfer(batch, 0))
        record = Record(args.min_epochs)
        cli.trainer.callbacks.append(Clock(record))
        record.start = time.perf_counter()
        cli.trainer.fit(cli.model, data)
        return record.result(
            train_samples=len(data.train_idx),
            data_seconds=loading,
            precision=str(cli.trainer.precision),
            channels_last=cli.model.channels_last,
            batch_size=data.hparams.batch_size,
        )


def epoch_seconds(args, configs: list[str], flags: list[str], batch: int) -> tuple[float, dict]:
    """Seconds per 55k-image epoch, from the second of two short epochs of `args.feature_samples`
    images (the first pays one-time costs: kernel selection, compilation); and the case's record."""
    batches = max(1, args.feature_samples // batch)
    limits = (
        f"--trainer.limit_train_batches={batches}",
        "--trainer.limit_val_batches=0",
        "--trainer.max_epochs=2",
    )
    record = case_lightning(args, configs, (*flags, *limits), evaluate=False)
    return record["epoch_seconds"][-1] * record["train_samples"] / (batches * batch), record


def case_features(args) -> dict:
    """Seconds per epoch of the default recipe with one option changed."""
    seconds, settings = {}, {}
    for name, flags in FEATURES.items():
        seconds[name], record = epoch_seconds(
            args, CONFIGS["c"], flags, 256 if "--data.batch_size=256" in flags else 64
        )
        settings[name] = f"{record['precision']}{', channels_last' if record['channels_last'] else ''}"
        print(f"  {name}: {seconds[name]:.2f} s/epoch", file=sys.stderr, flush=True)
    return {"feature_seconds": seconds, "feature_settings": settings}


def case_best(args) -> dict:
    seconds, record = epoch_seconds(args, CONFIGS["e"], [], 128)
    return {"best_seconds": seconds, **{k: record[k] for k in ("precision", "channels_last", "batch_size")}}


def bare_module(layout: torch.memory_format):
    """The seed CNN, cross-entropy and Adam as a bare LightningModule: no metrics, no logging."""
    import lightning as L

    from lit_mnist.data import SPEC
    from lit_mnist.nets import ConvNet

    class Bare(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = ConvNet(SPEC).to(memory_format=layout)

        def training_step(self, batch, batch_idx):
            images, labels = batch
            return F.cross_entropy(self.net(images.contiguous(memory_format=layout)), labels)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), 1e-3)

    return Bare()


def case_overhead(args) -> dict:
    """Milliseconds per step of the default recipe's step three ways, in turns (rounds), each
    timed over `args.overhead_steps` steps after 50 of warm-up."""
    import lightning as L

    from lit_mnist import precision
    from lit_mnist.cli import MNISTCLI
    from lit_mnist.data import SPEC, MNISTDataModule
    from lit_mnist.nets import ConvNet

    steps = args.overhead_steps
    warmup = min(50, steps)
    data = MNISTDataModule(data_dir=args.data_dir)
    data.setup("fit")
    choice = precision.choose(ConvNet(SPEC), (64, 1, 28, 28), 10, torch.device("cpu"))
    layout = torch.channels_last if choice.channels_last else torch.contiguous_format
    half = choice.precision == "bf16-mixed"
    flags = (f"--trainer.precision={choice.precision}", f"--model.channels_last={choice.channels_last}")

    def plain() -> float:
        net = ConvNet(SPEC).to(memory_format=layout)
        optimizer = torch.optim.Adam(net.parameters(), 1e-3)
        for i, batch in enumerate(data.train_dataloader()):
            if i == warmup:
                start = time.perf_counter()
            elif i == warmup + steps:
                return 1000 * (time.perf_counter() - start) / steps
            images, labels = data.on_after_batch_transfer(batch, 0)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=half):
                loss = F.cross_entropy(net(images.contiguous(memory_format=layout)), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        raise UserError("too few training batches for the overhead case")

    class Clock(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == warmup:
                self.start = time.perf_counter()
            elif batch_idx == warmup + steps:
                self.ms = 1000 * (time.perf_counter() - self.start) / steps
                trainer.should_stop = True

    def bare() -> float:
        clock = Clock()
        quiet = dict(
            logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
        )
        trainer = L.Trainer(
            max_epochs=1, limit_val_batches=0, precision=choice.precision, callbacks=[clock], **quiet
        )
        trainer.fit(bare_module(layout), data)
        return clock.ms

    def template() -> float:
        clock = Clock()
        with tempfile.TemporaryDirectory() as logs:
            flags_ = [
                f"--config={PROJECT_ROOT / 'configs/default.yaml'}",
                f"--data.data_dir={args.data_dir}",
                f"--trainer.logger.init_args.save_dir={logs}",
                "--trainer.max_epochs=1",
                "--trainer.limit_val_batches=0",
                "--test_after_fit=false",
                "--trainer.enable_model_summary=false",
                *flags,
            ]
            cli = MNISTCLI(args=flags_, run=False)
            cli.trainer.callbacks.append(clock)
            cli.trainer.fit(cli.model, cli.datamodule)
        return clock.ms

    ways = {"plain loop": plain, "bare LightningModule": bare, "template (default.yaml)": template}
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.overhead_rounds):
        for name, way in ways.items():
            times[name].append(way())
    return {
        "step_ms": times,
        "precision": choice.precision,
        "channels_last": choice.channels_last,
        "batch_size": 64,
    }


def run_case(args) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.case == "e":
        result = case_best(args)
    elif args.case in CONFIGS:
        result = case_lightning(args, CONFIGS[args.case])
    elif args.case == "f":
        result = case_features(args)
    elif args.case == "g":
        result = case_overhead(args)
    else:
        result = {"a": case_a, "b": case_b}[args.case](args)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


def table(results: dict, args) -> str:
    rows = [
        "| case | what | s/epoch (median) | samples/s | data loading s/epoch | time to 99.0% test | "
        "test acc per epoch | peak RSS |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key, r in results.items():
        if key in "efg":
            continue
        median = statistics.median(r["epoch_seconds"])
        to_target = (
            f"{r['to_target_seconds']:.1f} s (epoch {r['epochs_to_target']})"
            if r["to_target_seconds"] is not None
            else f"not in {len(r['test_acc'])} epochs"
        )
        accs = ", ".join(f"{a:.4f}" for a in r["test_acc"])
        rows.append(
            f"| {key} | {CASES[key]} ({_settings(r)}) "
            f"| {median:.2f} (of {len(r['epoch_seconds'])}) | {r['train_samples'] / median:,.0f} "
            f"| {r['data_seconds']:.2f} | {to_target} | {accs} | {r['peak_rss_mb']:,.0f} MB |"
        )
    ratios = []

    def per_epoch(k):
        return statistics.median(results[k]["epoch_seconds"]) if k in results else None

    def per_sample(k):
        return per_epoch(k) / results[k]["train_samples"] if k in results else None

    if "a" in results and "c" in results:
        ratios.append(
            f"- a/c, seconds per training sample: **{per_sample('a') / per_sample('c'):.2f}x** (target ≥ 2)"
        )
    if "b" in results and "c" in results:
        ratios.append(
            f"- c/b, seconds per epoch: **{per_epoch('c') / per_epoch('b'):.3f}** "
            "(Lightning's overhead; target ≤ 1.05)"
        )
    if "a" in results and "d" in results:
        a, d = results["a"]["to_target_seconds"], results["d"]["to_target_seconds"]
        ratios.append(
            f"- a/d, time to 99.0% test accuracy: **{a / d:.1f}x** (target ≥ 5)"
            if a and d
            else "- a/d, time to 99.0%: not reached by both"
        )
    if "e" in results:
        e = results["e"]
        ratios += [
            "",
            f"- e, configs/experiments/best.yaml ({_settings(e)}): **{e['best_seconds']:.1f} s per "
            f"55,000-image epoch** ({args.feature_samples:,} images timed after one warm-up epoch of the "
            f"same length, scaled), about {20 * e['best_seconds'] / 60:.0f} minutes for its 20 epochs "
            "without validation",
        ]
    if "g" in results:
        g = results["g"]
        medians = {name: statistics.median(ms) for name, ms in g["step_ms"].items()}
        plain = next(iter(medians.values()))
        ratios += [
            "",
            f"Where the per-step cost goes (case g: {_settings(g)}; {args.overhead_steps} steps after "
            f"{min(50, args.overhead_steps)} of warm-up, {args.overhead_rounds} rounds in turns, medians):",
            "",
            "| loop | ms/step (median) | each round | time vs plain loop |",
            "| --- | --- | --- | --- |",
            *(
                f"| {name} | {ms:.2f} | {', '.join(f'{x:.2f}' for x in rounds)} | {ms / plain:.3f}x |"
                for (name, ms), rounds in zip(medians.items(), g["step_ms"].values(), strict=True)
            ),
        ]
    if "f" in results:
        features = results["f"]["feature_seconds"]
        settings = results["f"].get("feature_settings", {})
        base = next(iter(features.values()))
        ratios += [
            "",
            f"Each speed option alone (case f: {args.feature_samples:,} images timed after one warm-up "
            "epoch of the same length, scaled to 55,000):",
            "",
            "| setting | ran as | s/epoch | time vs default.yaml |",
            "| --- | --- | --- | --- |",
            *(
                f"| {name} | {settings.get(name, '')} | {sec:.2f} | {sec / base:.2f}x |"
                for name, sec in features.items()
            ),
        ]
    header = [
        f"Measured {date.today().isoformat()} on {cpu_name()}, {os.cpu_count()} cores, "
        f"{args.threads} threads per case, torch {torch.__version__}, lightning {lightning.__version__}, "
        f"Python {platform.python_version()}.",
        f"Command: `{args.command}`",
        "",
        "Seconds per epoch time the training pass alone (median over the epochs run); samples/s divides the "
        "training images (60,000 for the tutorial, 55,000 after the template's validation split) by it. "
        "Time to 99.0% runs from the first step to the end of the first test evaluation at or above 99.0%, "
        "with every earlier epoch's validation (template only) and test evaluation included. "
        "Data loading is one pass over the training loader, batches turned into normalised float. "
        "Peak RSS is the case's whole process.",
        "",
    ]
    return "\n".join(header + rows + [""] + ratios) + "\n"


def _settings(result: dict) -> str:
    layout = ", channels_last" if result.get("channels_last") else ""
    return f"{result['precision']}{layout}, batch {result['batch_size']}"


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    from lit_mnist.data import MNISTDataModule

    argv = sys.argv[1:] if argv is None else argv
    parser = parser_for(prog, __doc__)
    add_data_dir(parser)
    parser.add_argument(
        "--cases",
        default="abcdefg",
        help="which cases to run, e.g. 'bc' (e: best.yaml, f: each speed option, g: per-step cost)",
    )
    parser.add_argument(
        "--feature_samples", type=int, default=12800, help="images per timed epoch in cases e and f"
    )
    parser.add_argument("--overhead_steps", type=int, default=400, help="timed steps per loop in case g")
    parser.add_argument("--overhead_rounds", type=int, default=5, help="rounds of case g's three loops")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads in every case")
    parser.add_argument("--min_epochs", type=int, default=3, help="epochs at least, for the median")
    parser.add_argument(
        "--max_epochs", type=int, default=10, help="epochs at most (a, b; c and d stop at their config's)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=PROJECT_ROOT / "docs" / "bench.md",
        help="the report (default: docs/bench.md)",
    )
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.data_dir = str(Path(args.data_dir).resolve())
    if args.case:
        run_case(args)
        return
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        fail(f"unknown case(s) {''.join(unknown)}; choose from {''.join(CASES)}")
    try:
        MNISTDataModule(data_dir=args.data_dir).prepare_data()  # the download, or one clear line
    except UserError as err:
        fail(str(err))
    args.command = shlex.join(["lit-mnist", "bench", *argv])
    results = {}
    progress = Progress(len(args.cases))
    for key in args.cases:
        print(f"case {key}: {CASES[key]} ...", flush=True)
        # the data root resolved here: the case runs from the project root
        case_argv = [*argv, "--case", key, f"--data.data_dir={args.data_dir}"]
        child = subprocess.run(
            [sys.executable, "-m", "lit_mnist.tools.bench", *case_argv],
            capture_output=True,
            text=True,
            cwd=PROJECT_ROOT,
        )
        lines = [line for line in child.stdout.splitlines() if line.startswith("RESULT ")]
        if child.returncode != 0 or not lines:
            sys.exit(f"error: case {key} failed:\n{child.stderr[-3000:]}")
        results[key] = json.loads(lines[-1][len("RESULT ") :])
        r = results[key]
        if "epoch_seconds" in r:
            print(
                f"  {statistics.median(r['epoch_seconds']):.2f} s/epoch, test acc {r['test_acc']}", flush=True
            )
        progress.done(f"case {key}")
    report = table(results, args)
    args.output.write_text("# Benchmark: the template against plain PyTorch\n\n" + report)
    print("\n" + report + f"\nwritten to {args.output}")


if __name__ == "__main__":
    main()
