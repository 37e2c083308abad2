"""The precision and memory layout a net trains fastest in, measured on the machine at hand.

Which of fp32 and bf16 (fp16 on GPUs without bf16), with or without channels-last convolutions,
is fastest depends on the device and on the torch build: the same CPU flags ran bf16 faster with
one torch release and slower with another. So it is timed: a few training steps (forward,
backward) of the actual net on a batch of the actual shape, each candidate in turn, and the
fastest median wins. The answer is cached per machine, device, torch version, net and batch
shape in `$XDG_CACHE_HOME/lit-mnist/precision.json` (default ~/.cache), so later runs start at once.
"""

import contextlib
import copy
import hashlib
import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# the timed rounds: each round times one step of every candidate, so a slow moment hits all alike
ROUNDS, WARMUP = 7, 2
# stop timing early once the rounds have taken this long (large nets, slow devices)
BUDGET_SECONDS = 3.0


@dataclass(frozen=True)
class Choice:
    precision: str
    channels_last: bool
    # candidate "precision[+channels_last]" -> median milliseconds per step
    timings: dict[str, float]
    cached: bool = False
    # candidates the net cannot run with here (oneDNN has no bf16 LSTM on some CPUs), with the error
    failed: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        def name(key: str) -> str:
            return key.replace("+cl", " channels-last")

        ranked = sorted(self.timings.items(), key=lambda kv: kv[1])
        best = ranked[0][0]
        others = ", ".join(f"{name(k)} {ms:.1f}" for k, ms in ranked[1:])
        how = "measured earlier on this machine" if self.cached else "measured now"
        timed = f"{others} ms; " if others else ""
        failed = "".join(f"{name(k)} failed here ({why}); " for k, why in self.failed.items())
        return (
            f"auto_precision: {name(best)}, the fastest training step here ({ranked[0][1]:.1f} ms; "
            f"{timed}{failed}{how}, cached in {cache_path()}). --trainer.precision and "
            "--model.channels_last set them"
        )


def cache_path() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "lit-mnist" / "precision.json"


def candidates(device: torch.device, precisions: list[str] | None, layouts: list[bool] | None):
    """(precision, channels_last) pairs to time; None for either: all the device offers."""
    if precisions is None:
        if device.type == "cuda":
            half = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
            precisions = ["32-true", half]
        else:
            precisions = ["32-true", "bf16-mixed"]
    return [(p, cl) for p in precisions for cl in (layouts if layouts is not None else [False, True])]


def cache_key(net: nn.Module, shape: tuple[int, ...], device: torch.device, options) -> str:
    # the CPU's cores, not the thread count: DDP processes get fewer threads, and the same answer
    cpu = f"{cpu_name()} x{os.cpu_count()}"
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu
    parts = [platform.node(), where, torch.__version__, repr(net), str(shape), repr(options)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def choose(
    net: nn.Module,
    shape: tuple[int, ...],
    num_classes: int,
    device: torch.device,
    precisions: list[str] | None = None,
    layouts: list[bool] | None = None,
    measure: bool = True,
) -> Choice | None:
    """The fastest of the candidates for `net` on a batch of `shape` (B, C, H, W) on `device`:
    cached, else timed now (None instead when `measure` is off)."""
    options = candidates(device, precisions, layouts)
    key = cache_key(net, shape, device, options)
    # runs that start together (a sweep's workers) time one after another: the later ones read
    # the first one's answer instead of timing while it trains
    with _locked():
        cache = _read_cache()
        if key in cache:
            entry = cache[key]
            return Choice(
                entry["precision"], entry["channels_last"], entry["timings"], True, entry.get("failed", {})
            )
        if not measure:
            return None
        return _measure_and_cache(net, shape, num_classes, device, options, key, cache)


def _measure_and_cache(net, shape, num_classes, device, options, key: str, cache: dict) -> Choice:
    # dropout draws from the global generators: the run after this must draw as if untimed
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        timings, failed = time_steps(net, shape, num_classes, device, options)
    best = min(timings, key=timings.get)
    precision, channels_last = best.split("+")[0], best.endswith("+cl")
    choice = Choice(precision, channels_last, timings, failed=failed)
    cache[key] = {**asdict(choice), "date": date.today().isoformat(), "torch": torch.__version__}
    del cache[key]["cached"]
    _write_cache(cache)
    return choice


def time_steps(
    net: nn.Module, shape, num_classes: int, device: torch.device, options
) -> tuple[dict[str, float], dict[str, str]]:
    """Median milliseconds of a forward and backward pass for each (precision, channels_last), and
    the candidates whose first step raised, with the error's first line (all failing: it raises)."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(shape, generator=generator).to(device)
    labels = torch.randint(0, num_classes, (shape[0],), generator=generator).to(device)
    steps = {}
    for precision, channels_last in options:
        layout = torch.channels_last if channels_last else torch.contiguous_format
        copy_ = copy.deepcopy(net).to(device).to(memory_format=layout).train()
        steps[_name(precision, channels_last)] = _step(
            copy_, images.contiguous(memory_format=layout), labels, precision, device
        )
    failed, first_error = {}, None
    for name, step in list(steps.items()):
        try:
            step()
        except RuntimeError as err:
            first_error = first_error or err
            # its first sentence: oneDNN's messages go on about environment variables
            failed[name] = (str(err).splitlines() or [type(err).__name__])[0].split(". ")[0][:120]
            del steps[name]
    if not steps:
        raise first_error
    times: dict[str, list[float]] = {name: [] for name in steps}
    started = time.perf_counter()
    for round_ in range(WARMUP + ROUNDS):
        for name, step in steps.items():
            seconds = step()
            if round_ >= WARMUP:
                times[name].append(seconds)
        if round_ >= WARMUP + 2 and time.perf_counter() - started > BUDGET_SECONDS:
            break
    return {name: round(1000 * statistics.median(t), 2) for name, t in times.items()}, failed


def _step(net: nn.Module, images, labels, precision: str, device: torch.device):
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)

    def step() -> float:
        _sync(device)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(net(images), labels)
        loss.backward()
        net.zero_grad(set_to_none=True)
        _sync(device)
        return time.perf_counter() - start

    return step


def _name(precision: str, channels_last: bool) -> str:
    return precision + ("+cl" if channels_last else "")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def _locked():
    """An exclusive lock beside the cache file, where the platform and the folder allow one."""
    try:
        import fcntl

        cache_path().parent.mkdir(parents=True, exist_ok=True)
        handle = open(cache_path().with_suffix(".lock"), "w")  # noqa: SIM115 (held until the end)
    except (ImportError, OSError):
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _read_cache() -> dict:
    try:
        return json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return {}


def _write_cache(cache: dict) -> None:
    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(cache, indent=1) + "\n")
        temporary.replace(path)  # atomic: processes starting together read a whole file
    except OSError:
        pass  # a read-only home: measured again next time


def cpu_name() -> str:
    """The CPU's model name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
