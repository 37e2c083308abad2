"""Parameter groups and learning-rate schedules; plain PyTorch, no Lightning."""

import functools
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


@dataclass(frozen=True)
class GroupSettings:
    """How one part of the net (its features or its classifier) trains.

    Args:
        lr_mult: its learning rate, as a multiple of the optimizer's.
        weight_decay: its weight decay; None keeps the optimizer's.
    """

    lr_mult: float = 1.0
    weight_decay: float | None = None

    def problems(self) -> list[tuple[str, str]]:
        """(field, what is wrong with it) for each value training cannot use."""
        return [("lr_mult", f"must be 0 or more, got {self.lr_mult}")] if self.lr_mult < 0 else []


@dataclass(frozen=True)
class ScheduleSettings:
    """When the learning-rate scheduler steps.

    Args:
        interval: step it every "epoch" or every optimizer "step".
        frequency: step it every this many intervals.
        monitor: the metric a ReduceLROnPlateau watches.
    """

    interval: Literal["epoch", "step"] = "epoch"
    frequency: int = 1
    monitor: str = "val/loss"

    def problems(self) -> list[tuple[str, str]]:
        return [("frequency", f"must be at least 1, got {self.frequency}")] if self.frequency < 1 else []


@dataclass(frozen=True)
class LRScaling:
    """Learning rates (and a scheduler's max_lr) scaled with the effective batch (batch size x
    accumulation x devices).

    Args:
        mode: "linear" multiplies them by the effective batch / `reference_batch`, "sqrt" by its
            square root, "none" leaves them as configured.
        reference_batch: the batch size the configured learning rates were tuned for.
    """

    mode: Literal["none", "linear", "sqrt"] = "none"
    reference_batch: int = 64

    def problems(self) -> list[tuple[str, str]]:
        if self.reference_batch < 1:
            return [("reference_batch", f"must be at least 1, got {self.reference_batch}")]
        return []

    def factor(self, effective_batch: int) -> float:
        """The multiplier of the learning rates for this effective batch size."""
        ratio = effective_batch / self.reference_batch
        return {"none": 1.0, "linear": ratio, "sqrt": math.sqrt(ratio)}[self.mode]


def head_of(net: nn.Module) -> nn.Module | None:
    """The classifier of a net: its `classifier` (the template's nets), timm's `get_classifier()`,
    torchvision's `fc`, `head` or `heads`, else its last nn.Linear; None when it has none of them."""
    for name in ("classifier", "fc", "head", "heads"):
        if isinstance(head := getattr(net, name, None), nn.Module) and any(True for _ in head.parameters()):
            return head
    getter = getattr(net, "get_classifier", None)
    if callable(getter) and isinstance(head := getter(), nn.Module) and any(True for _ in head.parameters()):
        return head
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def param_groups(net: nn.Module, features: GroupSettings, classifier: GroupSettings) -> list[dict]:
    """Named parameter groups: features and classifier, each split into weights that decay and
    biases/normalisation parameters that do not. Every trainable parameter lands in exactly one
    group; empty groups are left out. Each group carries its `lr_mult` for `scale_group_lrs`."""
    head = head_of(net)
    if head is None and classifier != GroupSettings():
        raise ValueError(
            f"{type(net).__name__} has no classifier to set apart (no classifier, fc, head or heads "
            "attribute, no get_classifier(), no nn.Linear): name it `classifier` in the net"
        )
    head_ids = {id(p) for p in head.parameters()} if head is not None else set()
    groups: dict[str, dict] = {}
    for param in net.parameters():
        if not param.requires_grad:
            continue
        part, settings = ("classifier", classifier) if id(param) in head_ids else ("features", features)
        # Vectors are biases and norm scales/shifts: decaying them only limits what they can fit.
        decays = param.ndim > 1
        name = part if decays else f"{part}_no_decay"
        if name not in groups:
            groups[name] = {"name": name, "params": [], "lr_mult": settings.lr_mult}
            if not decays:
                groups[name]["weight_decay"] = 0.0
            elif settings.weight_decay is not None:
                groups[name]["weight_decay"] = settings.weight_decay
        groups[name]["params"].append(param)
    order = ["features", "features_no_decay", "classifier", "classifier_no_decay"]
    return [groups[n] for n in order if n in groups]


def scale_group_lrs(optimizer: Optimizer, factor: float = 1.0) -> None:
    """Multiply the learning rate the optimizer filled in by each group's `lr_mult` and `factor`."""
    for group in optimizer.param_groups:
        group["lr"] = group["lr"] * group.get("lr_mult", 1.0) * factor


def scheduler_run_arguments(
    factory, optimizer: Optimizer, batch_factor: float, intervals: Callable[[], float | None], frequency: int
) -> dict:
    """Scheduler arguments that depend on the run: an unset `total_steps` (OneCycleLR,
    WarmupCosineLR) becomes the number of scheduler steps, `intervals()` / `frequency`; a scalar
    `max_lr` becomes one peak per group, so the groups keep their learning-rate ratios, scaled with
    the batch like the learning rates. ValueError when the run has no end to count to."""
    accepted, given = _partial_signature(factory)
    derived = {}
    if "total_steps" in accepted and given.get("total_steps") is None and given.get("epochs") is None:
        total = intervals()
        if total is None or total < 1 or math.isinf(total):
            raise ValueError(
                "needs total_steps: set it, or bound the run with the trainer's max_epochs or max_steps"
            )
        derived["total_steps"] = math.ceil(total / frequency)
    if isinstance(given.get("max_lr"), int | float):
        derived["max_lr"] = [
            given["max_lr"] * group["lr_mult"] * batch_factor for group in optimizer.param_groups
        ]
    return derived


def _partial_signature(factory) -> tuple[set[str], dict]:
    """The parameter names of the class a partial builds, and the keywords it already holds.
    LightningCLI hands over a functools.partial whose arguments include the class; torch and
    Lightning have no public way to ask it."""
    if not isinstance(factory, functools.partial):
        return set(), {}
    target = next((x for x in (factory.func, *factory.args) if isinstance(x, type)), None)
    accepted = set(inspect.signature(target).parameters) if target else set()
    return accepted, factory.keywords


class LinearWarmup:
    """`lr_lambda` for LambdaLR: the factor rises linearly from 1/steps to 1 over `steps` steps."""

    def __init__(self, steps: int) -> None:
        if steps < 1:
            raise ValueError(f"warm-up steps must be at least 1, got {steps}")
        self.steps = steps

    def __call__(self, step: int) -> float:
        return min(1.0, (step + 1) / self.steps)


class WarmupCosine(LinearWarmup):
    """`lr_lambda`: linear warm-up, then a cosine decay to `final_factor` at `total_steps`.
    A run shorter than its warm-up only warms up."""

    def __init__(self, steps: int, total_steps: int, final_factor: float = 0.0) -> None:
        super().__init__(steps)
        self.total_steps = total_steps
        self.final_factor = final_factor

    def __call__(self, step: int) -> float:
        if step < self.steps:
            return super().__call__(step)
        progress = min(1.0, (step - self.steps) / max(1, self.total_steps - self.steps))
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.final_factor + (1.0 - self.final_factor) * cosine


class WarmupCosineLR(LambdaLR):
    """Linear warm-up then cosine decay, as one scheduler. Leave `total_steps` unset in a config
    and the model fills in the trainer's number of optimizer steps."""

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_steps: int,
        total_steps: int | None = None,
        final_factor: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        if total_steps is None:
            raise ValueError("WarmupCosineLR needs total_steps")
        lr_lambda: Callable[[int], float] = WarmupCosine(warmup_steps, total_steps, final_factor)
        super().__init__(optimizer, lr_lambda, last_epoch)


# A model built in Python keeps these objects among the arguments saved in its checkpoints (the CLI
# saves their fields as plain values); Lightning reads those with torch.load's weights_only mode,
# which unpickles only the classes registered here.
torch.serialization.add_safe_globals([GroupSettings, ScheduleSettings, LRScaling])
