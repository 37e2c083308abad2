"""Training speed on a GPU, with the images held on it (--data.on_device=true):

    lit-mnist bench-gpu [--data.data_dir=data] [--output docs/bench-gpu.md]      (or: make bench-gpu)

1. Samples per second of the seed CNN (configs/default.yaml's net and Adam) at large batches, three
   ways in turns: a plain PyTorch loop, a bare LightningModule (no logger, callbacks or metrics) and
   the template. Each trains whole 55,000-image epochs without validation, one epoch of warm-up,
   then --epochs timed, end-of-epoch work (the template's checkpoints and logs) included. All three
   use the precision and layout auto_precision picks for that batch on this GPU.
2. The time to 99.0% test accuracy of configs/experiments/gpu_fast.yaml through the template, once
   per seed: from its first training step to the end of the test evaluation (after each epoch)
   that first reaches 99.0%. "Training" sums the training passes alone; "wall" adds the
   validation, the checkpoints and the test evaluations of the epochs before.
"""

import contextlib
import io
import platform
import shlex
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import lightning
import lightning as L
import torch
import torch.nn.functional as F

from lit_mnist.errors import UserError
from lit_mnist.tools import PROJECT_ROOT, add_data_dir, fail, parser_for
from lit_mnist.tools.bench import TARGET, accuracy, bare_module

LOOPS = ("plain loop", "bare LightningModule", "template (default.yaml)")


class Timer:
    """Wall seconds between two moments, with the device's queued work finished at each."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()


class EpochClock(L.Callback):
    """Times the training epochs after the first (warm-up) one, end-of-epoch hooks included."""

    def __init__(self, timer: Timer) -> None:
        self.timer, self.start, self.seconds = timer, None, None

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            self.start = self.timer.now()

    def on_train_end(self, trainer, pl_module):
        self.seconds = self.timer.now() - self.start


@contextlib.contextmanager
def quiet():
    """A run's own output (progress bar, Lightning's notes) held back; shown if it fails."""
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            yield
    except BaseException:
        print(out.getvalue()[-3000:], file=sys.stderr)
        raise


def throughput(args, device: torch.device, batch: int) -> dict:
    """Samples per second of each loop at `batch`, over args.rounds rounds in turns."""
    from lit_mnist import precision
    from lit_mnist.cli import MNISTCLI
    from lit_mnist.data import SPEC, MNISTDataModule
    from lit_mnist.nets import ConvNet

    timer = Timer(device)
    choice = precision.choose(ConvNet(SPEC), (batch, 1, 28, 28), 10, device)
    layout = torch.channels_last if choice.channels_last else torch.contiguous_format
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(choice.precision)
    epochs = 1 + args.epochs

    def data_module() -> MNISTDataModule:
        data = MNISTDataModule(data_dir=args.data_dir, batch_size=batch, on_device=True)
        data.setup("fit")
        return data

    def plain() -> float:
        data = data_module()
        images = data.images[data.train_idx].to(device)
        labels = data.labels[data.train_idx].to(device)
        net = ConvNet(SPEC).to(device, memory_format=layout)
        optimizer = torch.optim.Adam(net.parameters(), 1e-3)
        for epoch in range(epochs):
            if epoch == 1:
                start = timer.now()
            order = torch.randperm(len(labels), device=device)
            for i in range(0, len(labels), batch):
                index = order[i : i + batch]
                x = SPEC.normalize(images[index]).contiguous(memory_format=layout)
                with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    loss = F.cross_entropy(net(x), labels[index])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        return len(labels) * args.epochs / (timer.now() - start)

    def bare() -> float:
        data, clock = data_module(), EpochClock(timer)
        trainer = L.Trainer(
            max_epochs=epochs,
            limit_val_batches=0,
            precision=choice.precision,
            callbacks=[clock],
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(bare_module(layout), data)
        return len(data.train_idx) * args.epochs / clock.seconds

    def template() -> float:
        clock = EpochClock(timer)
        with tempfile.TemporaryDirectory() as logs:
            cli = MNISTCLI(
                args=[
                    f"--config={PROJECT_ROOT / 'configs/default.yaml'}",
                    f"--data.data_dir={args.data_dir}",
                    f"--data.batch_size={batch}",
                    "--data.on_device=true",
                    f"--trainer.logger.init_args.save_dir={logs}",
                    f"--trainer.max_epochs={epochs}",
                    "--trainer.limit_val_batches=0",
                    "--test_after_fit=false",
                    f"--trainer.precision={choice.precision}",
                    f"--model.channels_last={choice.channels_last}",
                ],
                run=False,
            )
            cli.trainer.callbacks.append(clock)
            cli.trainer.fit(cli.model, cli.datamodule)
            return len(cli.datamodule.train_idx) * args.epochs / clock.seconds

    ways = dict(zip(LOOPS, (plain, bare, template), strict=True))
    rates: dict[str, list[float]] = {name: [] for name in LOOPS}
    for _ in range(args.rounds):
        for name, way in ways.items():
            with quiet():
                rates[name].append(way())
    return {
        "rates": rates,
        "choice": choice.describe(),
        "precision": choice.precision,
        "cl": choice.channels_last,
        "samples": len(data_module().train_idx),
    }


def to_target(args, device: torch.device, config: str, seed: int) -> dict:
    """One run of the fast recipe: training seconds, wall seconds and epochs to TARGET."""
    from lit_mnist.cli import MNISTCLI

    timer = Timer(device)

    class Clock(L.Callback):
        def __init__(self) -> None:
            self.start = self.epoch_start = None
            self.training = 0.0
            self.test_acc: list[float] = []
            self.reached: dict | None = None

        def on_train_epoch_start(self, trainer, pl_module):
            self.epoch_start = timer.now()
            self.start = self.start or self.epoch_start
            self.trained = False

        def _end_of_training_pass(self):
            if not self.trained:
                self.training += timer.now() - self.epoch_start
                self.trained = True

        def on_validation_epoch_start(self, trainer, pl_module):
            if not trainer.sanity_checking:
                self._end_of_training_pass()

        def on_train_epoch_end(self, trainer, pl_module):
            self._end_of_training_pass()
            data = trainer.datamodule

            def prepare(batch):
                return data.on_after_batch_transfer(
                    data.transfer_batch_to_device(batch, pl_module.device, 0), 0
                )

            with trainer.precision_plugin.forward_context():
                self.test_acc.append(accuracy(pl_module, data.test_dataloader(), prepare))
            if self.reached is None and self.test_acc[-1] >= TARGET:
                self.reached = {
                    "training": self.training,
                    "wall": timer.now() - self.start,
                    "epochs": len(self.test_acc),
                }

    clock = Clock()
    with tempfile.TemporaryDirectory() as logs:
        cli = MNISTCLI(
            args=[
                f"--config={PROJECT_ROOT / 'configs/default.yaml'}",
                f"--config={config}",
                f"--data.data_dir={args.data_dir}",
                f"--trainer.logger.init_args.save_dir={logs}",
                f"--seed_everything={seed}",
                "--test_after_fit=false",
                *args.fit_flags,
            ],
            run=False,
        )
        cli.trainer.callbacks.append(clock)
        with quiet():
            cli.trainer.fit(cli.model, cli.datamodule)
        return {
            "config": config,
            "seed": seed,
            "reached": clock.reached,
            "test_acc": clock.test_acc,
            "training": clock.training,
            "precision": str(cli.trainer.precision),
            "cl": cli.model.channels_last,
            "batch": cli.datamodule.hparams.batch_size,
        }


def shown(config: str) -> str:
    path = Path(config).resolve()
    return str(path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else config)


def report(args, device: torch.device, speeds: dict[int, dict], runs: list[dict]) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    lines = [
        f"Measured {date.today().isoformat()} on {name} (torch {torch.__version__}, lightning "
        f"{lightning.__version__}, Python {platform.python_version()}).",
        f"Command: `{args.command}`",
    ]
    if speeds:
        samples = next(iter(speeds.values()))["samples"]
        lines += [
            "",
            "## Samples per second of the seed CNN",
            "",
            f"Whole epochs of the {samples:,} training images, the images on the device, no validation: "
            f"one epoch of warm-up, then {args.epochs} timed; {args.rounds} rounds of the three loops in "
            "turns, medians.",
            "",
            "| batch | precision | plain loop | bare LightningModule | template | template vs plain |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for batch, s in speeds.items():
            medians = [statistics.median(s["rates"][loop]) for loop in LOOPS]
            lines.append(
                f"| {batch} | {s['precision']}{', channels_last' if s['cl'] else ''} | "
                + " | ".join(f"{m:,.0f}" for m in medians)
                + f" | {medians[2] / medians[0]:.2f}x |"
            )
        lines += ["", "auto_precision at each batch:", ""]
        lines += [f"- batch {batch}: {s['choice']}" for batch, s in speeds.items()]
    if runs:
        lines += [
            "",
            f"## Time to {TARGET:.1%} test accuracy",
            "",
            "Through the template, from the first training step to the end of the first test evaluation "
            "(one after each epoch) at or above the target. Training: the training passes alone; wall: "
            "with every earlier epoch's validation, checkpoints, logs and test evaluation.",
            "",
            "| recipe | seed | ran as | training s | wall s | epochs | test acc per epoch |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for run in runs:
            reached = run["reached"]
            accs = ", ".join(f"{a:.4f}" for a in run["test_acc"])
            settings = f"{run['precision']}{', channels_last' if run['cl'] else ''}, batch {run['batch']}"
            if reached:
                numbers = f"{reached['training']:.2f} | {reached['wall']:.2f} | {reached['epochs']}"
            else:
                numbers = f"not reached ({run['training']:.2f} s in all) | | "
            lines.append(f"| {shown(run['config'])} | {run['seed']} | {settings} | {numbers} | {accs} |")
        lines.append("")
        for config in args.configs:
            reached = [r["reached"] for r in runs if r["config"] == config and r["reached"]]
            summary = (
                f"median over the {len(reached)} of {len(args.seeds)} seeds that reached it, "
                f"**{statistics.median(r['training'] for r in reached):.2f} s of training**, "
                f"{statistics.median(r['wall'] for r in reached):.2f} s wall"
                if reached
                else "no seed reached it"
            )
            lines.append(f"- {shown(config)}: {summary}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    from lit_mnist.data import MNISTDataModule

    argv = sys.argv[1:] if argv is None else argv
    parser = parser_for(prog, __doc__)
    add_data_dir(parser)
    parser.add_argument("--device", default="cuda", help="the device to measure (default: cuda)")
    parser.add_argument(
        "--batches",
        type=int,
        nargs="*",
        default=[1024, 4096, 16384],
        help="batch sizes for part 1 (none: skip it)",
    )
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per loop and round in part 1")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of part 1's three loops")
    parser.add_argument(
        "--configs",
        nargs="*",
        default=[str(PROJECT_ROOT / "configs/experiments" / name) for name in ("gpu_fast.yaml", "fast.yaml")],
        help="the recipes timed to 99%% in part 2, each over configs/default.yaml (none: skip it)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[3, 4, 5, 6, 7],
        help="part 2's runs per recipe (default 3-7: seeds 0-2 chose gpu_fast.yaml's settings)",
    )
    parser.add_argument(
        "--output", type=Path, default=PROJECT_ROOT / "docs" / "bench-gpu.md", help="the report"
    )
    args, args.fit_flags = parser.parse_known_args(argv)
    if any(not flag.startswith("--") for flag in args.fit_flags):
        fail(f"unexpected argument(s): {' '.join(args.fit_flags)}")
    for name in ("epochs", "rounds"):
        if getattr(args, name) < 1:
            fail(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.batches and min(args.batches) < 1:
        fail(f"--batches must be at least 1, got {min(args.batches)}")
    try:
        device = torch.device(args.device)
    except RuntimeError as err:
        fail(f"--device: {err}")
    if device.type == "cuda" and not torch.cuda.is_available():
        fail("no CUDA GPU here (torch.cuda.is_available() is False); --device=cpu measures the CPU instead")
    for config in args.configs:
        if not Path(config).is_file():
            fail(f"--configs: no such file {config}")
    args.data_dir = str(Path(args.data_dir).resolve())
    try:
        MNISTDataModule(data_dir=args.data_dir).prepare_data()  # the download, or one clear line
    except UserError as err:
        fail(str(err))
    args.command = shlex.join(["lit-mnist", "bench-gpu", *argv])
    torch.manual_seed(0)
    speeds = {}
    for batch in args.batches:
        speeds[batch] = throughput(args, device, batch)
        medians = ", ".join(
            f"{loop} {statistics.median(r):,.0f}" for loop, r in speeds[batch]["rates"].items()
        )
        print(f"batch {batch}: samples/s {medians}", flush=True)
    runs = []
    for config in args.configs:
        for seed in args.seeds:
            runs.append(to_target(args, device, config, seed))
            r = runs[-1]["reached"]
            reached = f"{r['training']:.2f} s of training, {r['wall']:.2f} s wall" if r else "not reached"
            print(f"{shown(config)} seed {seed}: {reached}", flush=True)
    text = report(args, device, speeds, runs)
    args.output.write_text("# Benchmark on a GPU: the template against plain PyTorch\n\n" + text)
    print("\n" + text + f"\nwritten to {args.output}")


if __name__ == "__main__":
    main()
