"""The search space of `lit-mnist sweep --space FILE`: which fit keys to search, over which values,
toward which metric, with which Optuna sampler and pruner.

    metric: val/acc_best        # a key of each trial's metrics.json
    direction: maximize         # maximize | minimize
    sampler: tpe                # tpe | random | grid
    pruner: median              # median | hyperband | none
    test: best                  # best: only the best trial's checkpoint is tested, at the end
                                # each: every trial tests its best checkpoint (seeds, comparisons)
    flags: ["--trainer.max_epochs=3"]   # fit flags every trial gets
    params:
      model.optimizer.init_args.lr: {float: [1.0e-4, 1.0e-2], log: true}
      model.net.init_args.dropout: {float: [0.0, 0.5], step: 0.1}
      data.batch_size: {int: [32, 256], log: true}
      model.optimizer: {choice: [torch.optim.Adam, torch.optim.SGD]}
      model.scheduler:            # named choices: the names stand for the values in the study
        choice:
          none: null
          step: {class_path: torch.optim.lr_scheduler.StepLR, init_args: {step_size: 1}}

A param key is a `lit-mnist fit` flag without its dashes; a range is {float|int: [low, high]} with
an optional `log: true` or `step: s`; {choice: [...]} is a list of values, {choice: {name: value}}
the same with a name for each value.
"""

import itertools
import json
import math
from contextlib import suppress
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path

import optuna
import yaml

from lit_mnist.callbacks.pruning import PRUNERS, make_pruner
from lit_mnist.errors import UserError

KINDS = ("float", "int", "choice")
RANGE_OPTIONS = ("log", "step")
DIRECTIONS = ("maximize", "minimize")
SAMPLERS = ("tpe", "random", "grid")
TESTS = ("best", "each")
TOP_KEYS = ("metric", "direction", "sampler", "pruner", "test", "flags", "params")


class SpaceError(ValueError):
    """A search space Optuna cannot search, naming the key at fault as the space file spells it."""

    def __init__(self, key: str, problem: str) -> None:
        self.key, self.problem = key, problem
        super().__init__(f"{key}: {problem}")


@dataclass(frozen=True)
class Param:
    """One searched key: a float or int range (log-scaled or stepped), or a list of choices.

    Optuna keeps a choice that is a list or a dict (a net's channels) as its text, `[16, 32]`: its
    databases hold numbers, strings, booleans and None, and it warns on every use of anything else.
    A trial's params hold that text; `value_of` turns it back into the value. Choices with `names`
    are held by their names."""

    key: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise self._error(f"the kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind == "choice":
            if not self.choices:
                raise self._error("the choice list is empty")
            object.__setattr__(self, "choices", tuple(self.choices))
            object.__setattr__(self, "names", tuple(self.names))
            if self.names and len(self.names) != len(self.choices):
                raise self._error("give a name to every choice or to none")
            if any(not isinstance(name, str) or not name for name in self.names):
                raise self._error(f"a choice's name is a word, got {self.names}")
        else:
            self._check_range()

    def _error(self, problem: str) -> SpaceError:
        return SpaceError(f"params.{self.key}", problem)

    def _check_range(self) -> None:
        for name in ("low", "high", "step"):
            object.__setattr__(self, name, self._number(name, getattr(self, name)))
        if self.low > self.high:
            raise self._error(f"low {self.low} is above high {self.high}")
        if not isinstance(self.log, bool):
            raise self._error(f"log must be true or false, got {self.log!r}")
        if self.log and self.step is not None:
            raise self._error("log and step do not go together: give one of them")
        if self.log and self.low <= 0:
            raise self._error(f"a log range needs low > 0, got {self.low}")
        if self.step is not None:
            self._check_step()

    def _number(self, name: str, value):
        """A bound or step as the kind's type; PyYAML reads `1e-4` (no dot) as a string."""
        if value is None and name == "step":
            return None
        if isinstance(value, str) and self.kind == "float":
            with suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self._error(f"{name} must be a number, got {value!r}")
        if self.kind == "int":
            if value != int(value):
                raise self._error(f"{name} of an int range must be a whole number, got {value}")
            return int(value)
        return float(value)

    def _check_step(self) -> None:
        if self.step <= 0:
            raise self._error(f"step must be > 0, got {self.step}")
        steps = (self.high - self.low) / self.step
        # Optuna would quietly lower high to the last step below it
        if abs(steps - round(steps)) > 1e-9 * max(1.0, steps):
            raise self._error(f"high - low ({self.high} - {self.low}) is not a multiple of step {self.step}")

    def suggest(self, trial: optuna.Trial):
        """The trial's value for this key, drawn by the study's sampler."""
        if self.kind == "float":
            value = trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)
            return self.value_of(value)
        if self.kind == "int":
            return trial.suggest_int(self.key, self.low, self.high, log=self.log, step=self.step or 1)
        return self.value_of(trial.suggest_categorical(self.key, self.labels()))

    def labels(self) -> list:
        """The choices as Optuna holds them."""
        if self.names:
            return list(self.names)
        return [choice if _is_scalar(choice) else flag_value(choice) for choice in self.choices]

    def value_of(self, label):
        """The value a trial's param stands for: a choice's value, or a stepped float on its step
        as written (0.15, where Optuna holds 0.15000000000000002)."""
        if self.kind == "choice":
            return self.choices[self.labels().index(label)]
        if self.kind == "float" and self.step is not None:
            return self._step_value(round((label - self.low) / self.step))
        return label

    def _step_value(self, i: int) -> float:
        """low + i * step in decimal, so 0.1 * 3 is the 0.3 a user wrote and not 0.30000000000000004."""
        return float(Decimal(repr(self.low)) + i * Decimal(repr(self.step)))

    def grid_values(self) -> list:
        """Every value a grid search tries: the choices, or low, low + step, ..., high."""
        if self.kind == "choice":
            return self.labels()
        if self.log or (self.kind == "float" and self.step is None):
            raise self._error(
                "with sampler grid, a range needs a step (not log), or list its values in a choice"
            )
        if self.kind == "int":
            return list(range(self.low, self.high + 1, self.step or 1))
        return [self._step_value(i) for i in range(round((self.high - self.low) / self.step) + 1)]

    def spec(self) -> dict:
        """Everything but the key, for comparing two spaces."""
        return {name: value for name, value in asdict(self).items() if name != "key"}


def parse_param(key, spec) -> Param:
    """A Param from its entry under `params:` in a space file."""
    name = f"params.{key}"
    if not isinstance(key, str) or not key or key.startswith("-"):
        raise SpaceError(name, "a key is a fit flag without its dashes, e.g. model.optimizer.init_args.lr")
    if not isinstance(spec, dict):
        raise SpaceError(name, f"expected a mapping like {{float: [low, high]}}, got {spec!r}")
    kinds = [kind for kind in KINDS if kind in spec]
    if len(kinds) != 1:
        found = f"{len(kinds)} ({', '.join(kinds)})" if kinds else "none"
        raise SpaceError(name, f"give exactly one of {', '.join(KINDS)}; found {found}")
    kind = kinds[0]
    allowed = RANGE_OPTIONS if kind != "choice" else ()
    unknown = [option for option in spec if option != kind and option not in allowed]
    if unknown:
        options = f"its options are {', '.join(allowed)}" if allowed else "it takes no options"
        raise SpaceError(name, f"unknown option {unknown[0]!r} for {kind} ({options})")
    values = spec[kind]
    if kind == "choice":
        if isinstance(values, dict):
            return Param(key, kind, choices=tuple(values.values()), names=tuple(str(n) for n in values))
        if not isinstance(values, list):
            raise SpaceError(
                name, f"choice takes a list of values or a mapping of names to values, got {values!r}"
            )
        return Param(key, kind, choices=tuple(values))
    if not isinstance(values, list) or len(values) != 2:
        raise SpaceError(name, f"{kind} takes [low, high], got {values!r}")
    return Param(key, kind, low=values[0], high=values[1], log=spec.get("log", False), step=spec.get("step"))


@dataclass(frozen=True)
class Space:
    """What a sweep searches, and how. `params` is a tuple of Param, or a mapping from keys to
    their entries as written in a space file."""

    params: tuple[Param, ...] | dict
    metric: str = "val/acc_best"
    direction: str = "maximize"
    sampler: str = "tpe"
    pruner: str = "median"
    test: str = "best"
    flags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", _params(self.params))
        object.__setattr__(self, "flags", _flags(self.flags))
        if not isinstance(self.metric, str) or not self.metric:
            raise SpaceError(
                "metric", f"must be a key of metrics.json such as val/acc_best, got {self.metric!r}"
            )
        checked = (("direction", DIRECTIONS), ("sampler", SAMPLERS), ("pruner", PRUNERS), ("test", TESTS))
        for name, allowed in checked:
            if getattr(self, name) not in allowed:
                raise SpaceError(name, f"must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.sampler == "grid":
            self.grid()  # a range that has no grid is told now, not at the first trial

    def suggest(self, trial: optuna.Trial) -> dict:
        """The trial's value for every param, by key."""
        return {param.key: param.suggest(trial) for param in self.params}

    def values(self, params: dict) -> dict:
        """A trial's params (or a study's best_params) as the values its run was given."""
        by_key = {param.key: param for param in self.params}
        return {key: by_key[key].value_of(label) if key in by_key else label for key, label in params.items()}

    def grid(self) -> dict[str, list]:
        """Every param's values as Optuna holds them."""
        return {param.key: param.grid_values() for param in self.params}

    def grid_points(self) -> list[dict]:
        """Every combination of the grid's values, the first param's values varying slowest: the
        params of the trials a grid search runs, in the order it runs them."""
        grid = self.grid()
        return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]

    def make_sampler(self, seed: int | None) -> optuna.samplers.BaseSampler:
        """The Optuna sampler named by `sampler`; give each worker of a study its own seed, as two
        samplers seeded alike propose the same points. TPE assumes a running trial's result is bad
        (constant liar), so parallel workers do not crowd one point. A grid's trials are queued
        in the study with their params (`grid_points`): its sampler draws nothing."""
        if self.sampler == "tpe":
            return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
        return optuna.samplers.RandomSampler(seed=seed)

    def make_pruner(self) -> optuna.pruners.BasePruner:
        """The Optuna pruner named by `pruner` (the trials' OptunaPruning builds the same)."""
        return make_pruner(self.pruner)

    def fingerprint(self) -> str:
        """The params and the goal as one line of JSON: the same space gives the same text, in any
        key order, so a study can refuse to go on under another space."""
        params = {param.key: param.spec() for param in self.params}
        return json.dumps(
            {"metric": self.metric, "direction": self.direction, "params": params},
            sort_keys=True,
            separators=(",", ":"),
        )


def _params(params) -> tuple[Param, ...]:
    if isinstance(params, dict):
        params = tuple(parse_param(key, spec) for key, spec in params.items())
    if not params or not isinstance(params, tuple | list):
        raise SpaceError("params", "missing or empty: name at least one fit key to search")
    keys = [param.key for param in params]
    repeated = next((key for key in keys if keys.count(key) > 1), None)
    if repeated:
        raise SpaceError(f"params.{repeated}", "given twice")
    return tuple(params)


def _flags(flags) -> tuple[str, ...]:
    if not isinstance(flags, list | tuple) or not all(
        isinstance(f, str) and f.startswith("--") for f in flags
    ):
        raise SpaceError(
            "flags", f"must be a list of fit flags such as --trainer.max_epochs=3, got {flags!r}"
        )
    return tuple(flags)


def load_space(path: str | Path) -> Space:
    """The Space in a YAML file; any mistake in it is a UserError of one line naming the file and key."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such search space file")
    try:
        raw = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not a YAML file ({_first_line(err)})") from None
    if not isinstance(raw, dict):
        found = "an empty file" if raw is None else f"a {type(raw).__name__}"
        raise UserError(f"{path}: a search space is a mapping with a params: key, found {found}")
    unknown = [key for key in raw if key not in TOP_KEYS]
    if unknown:
        raise UserError(f"{path}: {unknown[0]}: unknown key (the keys are {', '.join(TOP_KEYS)})")
    try:
        return Space(**{**raw, "params": raw.get("params")})
    except SpaceError as err:
        raise UserError(f"{path}: {err}") from None


def _first_line(err: Exception) -> str:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return f"line {mark.line + 1}: {problem}" if mark else problem


def _is_scalar(value) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def flag_value(value) -> str:
    """A value as `lit-mnist fit` reads it back: YAML flow text, so floats round-trip (1.0e-05),
    bools are true/false, None is null, and a string that reads as another type is quoted."""
    text = yaml.safe_dump(value, default_flow_style=True, width=math.inf)
    return text.removesuffix("...\n").strip()


def to_flags(values: dict) -> list[str]:
    """`--key=value` per param. A key comes before the keys below it: a class chosen by
    `--model.optimizer=torch.optim.SGD` must be set before its `--model.optimizer.init_args.momentum`,
    which the class before it may not take."""
    keys = sorted(values, key=lambda key: key.count("."))
    return [f"--{key}={flag_value(values[key])}" for key in keys]


def missing_keys(space: Space, config: dict) -> list[str]:
    """The param keys a fit config (nested dicts, as `config.as_dict()` gives) does not have. Below a
    key the space itself sets (a class choice), a key is not checked: the chosen class decides."""
    keys = [param.key for param in space.params]
    return [key for key in keys if not _has_key(config, _checked_part(key, keys))]


def _checked_part(key: str, keys: list[str]) -> str:
    parents = [other for other in keys if key.startswith(other + ".")]
    return max(parents, key=len) if parents else key


def _has_key(config: dict, key: str) -> bool:
    node = config
    for part in key.split("."):
        if isinstance(node, dict) and part not in node and isinstance(node.get("init_args"), dict):
            node = node["init_args"]  # a chosen class's argument, as --data.batch_size names it
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def best_config(params: dict) -> dict:
    """Values by key (`Space.values` of a trial's params) as a config file for `lit-mnist fit
    --config`: dotted keys nested. A class choice is a plain string (`optimizer: torch.optim.SGD`)
    unless keys below it are set too, then it is `optimizer: {class_path: ..., init_args: {...}}`."""
    config: dict = {}
    for key in sorted(params, key=lambda key: key.count(".")):
        *parents, leaf = key.split(".")
        node = config
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                child = node[part] = {"class_path": child}
            node = child
        node[leaf] = params[key]
    return config
