"""`make sweep ARGS="--space configs/sweeps/search.yaml --trials 24"`: an Optuna study over a search
space, each trial a `lit-mnist fit` run.

    lit-mnist sweep --space configs/sweeps/search.yaml --trials 24 [--workers 2] [--storage URL]
                    [--study NAME] [--seed N] [--config FILE ...] [any lit-mnist fit flag ...]

Each trial is a normal run in logs/sweeps/<study>/trial_<n>/ (config.yaml, checkpoints, curves,
metrics.json, output.log) that never sees the test set; pruned trials stop early and keep their
curves. The study is stored in logs/sweeps/<study>/study.db (SQLite) unless --storage names
another database that Optuna's RDB storage takes (postgresql+psycopg2://user:password@host/db):
workers on several machines share one study by running the same command against it.

Running the command again continues the study until --trials trials have finished (complete or
pruned): finished trials are not redone, a trial whose worker was killed is marked failed after
a minute without heartbeat and its parameters are tried again. Ctrl-C or SIGTERM marks the
running trials failed. At the end the best trial's checkpoint is tested once on the official test
set, and logs/sweeps/<study>/ gets trials.md, best.yaml (a config for lit-mnist fit --config) and
PNG plots of the study.
"""

import argparse
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import optuna

from lit_mnist.callbacks.pruning import pruned_at
from lit_mnist.errors import UserError
from lit_mnist.tools import fail, parser_for
from lit_mnist.tools.progress import Progress
from lit_mnist.tools.sweep.report import write_report
from lit_mnist.tools.sweep.space import Space, load_space, missing_keys, to_flags

SWEEPS = Path("logs") / "sweeps"
# a worker silent this long (--grace) is dead: its trial is marked failed and its parameters tried
# again; a live worker's trial says it is alive every grace / 3 seconds
GRACE_SECONDS = 60
MAX_FAILURES_IN_A_ROW = 3  # trials of one command that fail one after another: the sweep stops


class TrialFailed(Exception):
    """A trial's run ended without a result (a crash, a divergence, an interruption)."""


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    options, fit_args = parse(sys.argv[1:] if argv is None else argv, prog)
    try:
        space = load_space(options.space)
        check_keys(space, fit_args)
    except UserError as err:
        fail(str(err))
    sweep(space, fit_args, options.study or options.space.stem, options)


def sweep(space: Space, fit_args: list[str], name: str, options) -> optuna.Study | None:
    """Runs (or continues) study `name` over `space` until it has `options.trials` finished trials
    (a grid: all its points), tests the best trial or every trial as the space says, and writes
    the report; exit 1 when trials failed and the study is short of its count."""
    folder = SWEEPS / name
    url = options.storage or f"sqlite:///{folder / 'study.db'}"
    if options.report:
        report(url, name, folder, space)
        return None
    trials = options.trials
    if space.sampler == "grid":
        points = len(space.grid_points())
        if trials is not None and trials > points:
            fail(f"--trials {trials} is more than the grid's {points} points")
        trials = trials or points
    elif trials is None:
        fail("--trials is needed: how many finished trials the study ends with")
    if not options.storage:
        folder.mkdir(parents=True, exist_ok=True)
    study = open_study(url, name, space, options.grace)
    runner = Sweep(study, space, fit_args, folder, options.workers, url, options.grace)
    try:
        runner.run(trials, options.seed)
    except KeyboardInterrupt:
        write_report(study, folder, space)
        fail("interrupted: the running trials are marked failed; run the same command to go on")
    if space.test == "best":
        test_best(study, space, folder)
    for path in write_report(study, folder, space):
        print(f"wrote {path}")
    finished = runner.finished()
    if finished < trials:
        print(
            f"error: study {name} has {finished} of {trials} finished trials "
            f"({runner.counts()['FAIL']} failed, see output.log in their folders): "
            "run the same command again to run the missing ones",
            file=sys.stderr,
        )
        sys.exit(1)
    return study


def grid_sweep(
    space: Space, fit_args: list[str], study: str | None, prefix: str, workers: int
) -> optuna.Study:
    """A grid space's sweep as a command of its own (`lit-mnist seeds`, `compare`): a new study
    `<prefix>-<time>` each time unless `study` names one to go on with."""
    try:
        check_keys(space, fit_args)
    except UserError as err:
        fail(str(err))
    name = study or f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"
    if study is None and (SWEEPS / name).exists():
        fail(f"{SWEEPS / name} exists already: wait a second and run again")
    print(f"study {name}: {SWEEPS / name}", flush=True)
    options = argparse.Namespace(
        trials=None, workers=workers, storage=None, seed=None, report=False, grace=GRACE_SECONDS
    )
    return sweep(space, fit_args, name, options)


def add_grid_options(parser: argparse.ArgumentParser, prefix: str) -> None:
    """--workers and --study for a grid command."""
    parser.add_argument("--workers", type=int, default=1, help="runs at a time on this machine")
    parser.add_argument(
        "--study", help=f"go on with this study (its runs missing or failed); default: a new {prefix}-<time>"
    )


def parse(argv: list[str], prog: str | None):
    parser = parser_for(prog, __doc__)
    parser.add_argument("--space", type=Path, required=True, help="the search space (configs/sweeps/*.yaml)")
    parser.add_argument(
        "--trials", type=int, help="finished trials the study ends with (a grid's default: all its points)"
    )
    parser.add_argument(
        "--report", action="store_true", help="write the study's report now (it may be running) and stop"
    )
    parser.add_argument("--workers", type=int, default=1, help="trials at a time on this machine")
    parser.add_argument("--storage", help="an Optuna RDB storage URL (default: SQLite in the study folder)")
    parser.add_argument("--study", help="the study's name (default: the space file's name)")
    parser.add_argument("--seed", type=int, help="the sampler's seed (default: a new one per command)")
    parser.add_argument(
        "--grace",
        type=int,
        default=GRACE_SECONDS,
        help=f"seconds without a heartbeat after which a trial's worker is taken for dead and the trial "
        f"run again (default {GRACE_SECONDS})",
    )
    options, fit_args = parser.parse_known_args(argv)
    while fit_args[:1] in (["--"], ["fit"]):  # `lit-mnist sweep --space s.yaml --trials 4 -- fit ...`
        fit_args = fit_args[1:]
    if options.grace < 3:
        fail(f"--grace must be at least 3 seconds, got {options.grace}")
    if (options.trials is not None and options.trials < 1) or options.workers < 1:
        fail(f"--trials and --workers must be at least 1, got {options.trials} and {options.workers}")
    for flag in ("--ckpt_path", "--trainer.logger"):
        if any(a == flag or a.startswith(f"{flag}=") for a in fit_args):
            fail(f"{flag} is set by the sweep for each trial; leave it out")
    return options, fit_args


def report(url: str, name: str, folder: Path, space: Space) -> None:
    """The report of a study that exists, written while it runs or after; nothing else changes."""

    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        fail(f"no study {name}: {url.removeprefix('sqlite:///')} does not exist")
    try:
        study = optuna.load_study(study_name=name, storage=url)
    except KeyError:
        fail(f"no study {name} in {url}")
    for path in write_report(study, folder, space):
        print(f"wrote {path}")


def check_keys(space: Space, fit_args: list[str]) -> None:
    """Every key of the space must be a key of the fit config the trials start from."""
    from jsonargparse import ArgumentError

    from lit_mnist.cli import MNISTCLI
    from lit_mnist.data import SPEC, preset_spec

    seed_log = logging.getLogger("lightning.fabric.utilities.seed")
    level = seed_log.level
    try:
        # a check, not a run: Lightning's notes on args beside sys.argv and on the seed are not news
        seed_log.setLevel(logging.WARNING)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            # any spec: the check builds the classes without reading the data
            with preset_spec(SPEC):
                cli = MNISTCLI(
                    args=trial_flags(space, fit_args), run=False, parser_kwargs={"exit_on_error": False}
                )
    except ArgumentError as err:
        raise UserError(f"the fit flags do not parse: {str(err).splitlines()[0]}") from None
    finally:
        seed_log.setLevel(level)
    missing = missing_keys(space, cli.config.as_dict())
    if missing:
        keys = ", ".join(missing)
        raise UserError(f"{keys}: not a key of the fit config (see lit-mnist fit --print_config)")


def trial_flags(space: Space, fit_args: list[str]) -> list[str]:
    """A trial's fit flags before its params: the --config files, the space's flags, then the
    command's other flags. So the space's flags (`--trainer.max_epochs=3`) win over the configs
    and the command's own flags win over the space's."""
    configs, others = [], []
    words = iter(fit_args)
    for word in words:
        if word in ("--config", "-c"):
            configs += [word, next(words, "")]
        elif word.startswith(("--config=", "-c=")):
            configs.append(word)
        else:
            others.append(word)
    return [*configs, *space.flags, *others]


def open_storage(url: str, grace: int = GRACE_SECONDS):
    """Optuna's RDB storage at `url`, with the heartbeat that finds killed workers; one line when
    it cannot be opened."""
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    # Optuna's heartbeat is marked experimental: its note would come with every command and, as the
    # workers call fail_stale_trials before each trial, with every trial
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    for attempt in range(3):
        try:
            return RDBStorage(
                url,
                heartbeat_interval=max(1, grace // 3),
                grace_period=grace,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=2),
            )
        except Exception as err:  # sqlalchemy's many kinds: a bad URL, a missing driver, no server
            # workers started together race to create the tables: the loser finds them next time
            if attempt == 2 or not isinstance(err, IntegrityError | ProgrammingError):
                reason = str(err).splitlines()[0] if str(err) else type(err).__name__
                fail(f"--storage {url} cannot be opened: {reason}")
            time.sleep(1 + attempt)
    raise AssertionError("unreachable")


def open_study(url: str, name: str, space: Space, grace: int = GRACE_SECONDS):
    """The study `name` in the storage at `url`, created on first use; one line when the storage
    cannot be reached or holds a study of that name over another space or direction."""

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=name, storage=open_storage(url, grace), direction=space.direction,
        sampler=space.make_sampler(None), pruner=space.make_pruner(), load_if_exists=True,
    )  # fmt: skip
    known = study.user_attrs.get("space")
    if known is None:
        study.set_user_attr("space", space.fingerprint())
    elif known != space.fingerprint() or study.direction.name.lower() != space.direction:
        fail(f"study {name} in {url} was made with another space or direction; name a new one with --study")
    return study


def worker_seeds(seed: int | None, trials_before: int, workers: int) -> list[int]:
    """A sampler seed per worker, all different. From --seed they follow from it and the number of
    trials the study had when the command started, so a rerun does not draw the first run's
    points again; without --seed they are new each time."""
    import numpy as np

    entropy = None if seed is None else [seed, trials_before]
    return [int(s) for s in np.random.SeedSequence(entropy).generate_state(workers)]


def device_env(worker: int, environ: dict[str, str], gpus: int) -> dict[str, str]:
    """The environment of a worker's trials: on a machine with GPUs, one GPU per worker (worker i
    gets the i-th visible one, round robin), so trials never share a device unless there are more
    workers than GPUs; unchanged without GPUs."""
    if gpus < 1:
        return environ
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    devices = [d.strip() for d in visible.split(",") if d.strip()] if visible else []
    devices = devices or [str(i) for i in range(gpus)]
    return {**environ, "CUDA_VISIBLE_DEVICES": devices[worker % len(devices)]}


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


class Sweep:
    """Runs trials as `lit-mnist fit` processes, one at a time in each of `workers` threads (each
    with its own sampler), until the study has `trials` finished ones."""

    def __init__(
        self, study, space: Space, fit_args: list[str], folder: Path, workers: int, url: str, grace: int
    ):
        self.study, self.space, self.fit_args, self.folder = study, space, fit_args, folder
        self.workers, self.url, self.grace = workers, url, grace
        self.running: dict[int, subprocess.Popen] = {}
        self.stopping = False
        self.ended = 0  # workers whose loop has ended
        self.failures = 0  # in a row: a run that fails every time stops the sweep
        self.lock = threading.Lock()
        self.asking, self.holding, self.waited = threading.Lock(), set(), False
        # one GPU per worker, unless the flags choose the devices
        chosen = ("--trainer.devices", "--trainer.accelerator")
        self.own_gpus = not any(a.startswith(chosen) for a in fit_args)

    def _surplus(self, trial) -> bool:
        """Whether the finished trials and those started before this one already make the study's
        count: the cap holds across workers and machines. Older trials go first, so of two
        commands that ask at once only the later trial stands back."""
        from optuna.trial import TrialState

        counted = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        ahead = [t for t in self.study.get_trials(deepcopy=False, states=counted) if t.number < trial.number]
        return len(ahead) >= self.trials

    def counts(self) -> dict:
        """The study's trials by state name (COMPLETE, PRUNED, RUNNING, WAITING, FAIL)."""
        states = [t.state.name for t in self.study.get_trials(deepcopy=False)]
        return {name: states.count(name) for name in ("COMPLETE", "PRUNED", "RUNNING", "WAITING", "FAIL")}

    def finished(self) -> int:
        counts = self.counts()
        return counts["COMPLETE"] + counts["PRUNED"]

    def queue_grid(self) -> None:
        """A grid's points that no trial has finished, runs or waits for, queued in order; a point
        whose trial failed or was interrupted is queued again."""
        from optuna.trial import TrialState

        live = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
        taken = [
            {**trial.system_attrs.get("fixed_params", {}), **trial.params}
            for trial in self.study.get_trials(deepcopy=False, states=live)
        ]
        for point in self.space.grid_points():
            if point not in taken:
                self.study.enqueue_trial(point)

    def run(self, trials: int, seed: int | None = None) -> None:

        self.trials = trials
        remaining = trials - self.finished()
        if remaining <= 0:
            print(f"study {self.study.study_name} has {self.finished()} finished trials already")
            return
        if self.space.sampler == "grid":
            self.queue_grid()
        self.progress = Progress(remaining)
        seeds = worker_seeds(seed, len(self.study.get_trials(deepcopy=False)), self.workers)
        gpus = _gpu_count() if self.own_gpus else 0
        errors: list[BaseException] = []
        threads = []
        for worker, worker_seed in enumerate(seeds):
            study = optuna.load_study(
                study_name=self.study.study_name, storage=self.study._storage,
                sampler=self.space.make_sampler(worker_seed), pruner=self.space.make_pruner(),
            )  # fmt: skip
            env = device_env(worker, dict(os.environ), gpus)
            thread = threading.Thread(target=self._work, args=(study, env, errors), daemon=True)
            threads.append(thread)
        previous = {sig: signal.signal(sig, self._interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
        # The waits are sleeps on a count the workers keep, not Thread.join: a signal that
        # interrupts join() makes Python (3.11, 3.12) take the running thread for finished.
        self.ended = 0
        try:
            for thread in threads:
                thread.start()
            while self.ended < len(threads):
                time.sleep(0.2)  # a signal's handler runs between the sleeps
        except KeyboardInterrupt:
            deadline = time.monotonic() + 60
            while self.ended < len(threads) and time.monotonic() < deadline:
                time.sleep(0.2)  # each worker marks its trial failed
            raise
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if errors:
            raise errors[0]

    def _work(self, study, env: dict, errors: list) -> None:
        """One worker: a trial at a time until the study has its trials (or a grid has no point
        left). The count is read and the trial created under one lock, so the workers of a
        command never start a trial too many; commands on other machines may, and such a trial
        stands back (`_surplus`)."""
        try:
            while not self.stopping and self.failures < MAX_FAILURES_IN_A_ROW:
                self.asking.acquire()
                self.holding.add(threading.get_ident())
                try:
                    step = self._next_step(study)
                    if step == "run":  # the objective lets go of the lock once its trial exists
                        study.optimize(
                            lambda trial: self.objective(trial, env), n_trials=1, catch=(TrialFailed,),
                            callbacks=[self._report_progress], gc_after_trial=False,
                        )  # fmt: skip
                finally:
                    self._stop_asking()
                if step == "done":
                    return
                if step == "wait":
                    time.sleep(max(0.5, self.grace / 12))
        except BaseException as err:  # reaches the main thread, which raises it
            errors.append(err)
            self.stopping = True
        finally:
            with self.lock:
                self.ended += 1

    def _next_step(self, study) -> str:
        """ "run" a trial, "wait" for the trials that would complete the study to finish elsewhere
        (one may belong to a killed worker: failed and queued again after the grace period), or
        "done"."""
        from optuna.storages import fail_stale_trials

        fail_stale_trials(study)
        counts = self.counts()
        finished = counts["COMPLETE"] + counts["PRUNED"]
        if finished >= self.trials:
            return "done"
        if finished + counts["RUNNING"] >= self.trials and not counts["WAITING"]:
            elsewhere = counts["RUNNING"] - len(self.running)
            if elsewhere > 0 and not self.waited:
                print(
                    f"waiting for {elsewhere} trial(s) running in another command; a killed "
                    f"worker's trial is run again after {self.grace} s without heartbeat",
                    flush=True,
                )
                self.waited = True
            return "wait"
        if self.space.sampler == "grid" and not counts["WAITING"]:
            return "done"  # every point has run; a rerun queues the failed ones again
        return "run"

    def _stop_asking(self) -> None:
        """Lets go of the lock that `_work` took, if this thread still holds it."""
        if threading.get_ident() in self.holding:
            self.holding.discard(threading.get_ident())
            self.asking.release()

    def _interrupt(self, signum, frame) -> None:
        """Ctrl-C or SIGTERM: the trials' processes are stopped and their trials end as failed (the
        objective sees `stopping`; a stopped fit may still exit with status 0). Optuna marks a trial
        failed on KeyboardInterrupt, not on the SystemExit a stopped Lightning run ends with."""
        self.stopping = True
        with self.lock:
            for process in self.running.values():
                if process.poll() is None:
                    process.terminate()
        raise KeyboardInterrupt

    def objective(self, trial, env: dict) -> float:
        self._stop_asking()  # the trial exists: the next worker may count it

        unqueued = self.space.sampler == "grid" and not _queued(trial)
        if self._surplus(trial) or unqueued:
            trial.study.stop()
            trial.set_user_attr("surplus", True)
            raise TrialFailed(f"trial {trial.number} not run: the study has its {self.trials} trials")
        params = self.space.suggest(trial)
        run_dir = self.folder / f"trial_{trial.number}"
        trial.set_user_attr("run_dir", str(run_dir))
        run_dir.mkdir(parents=True, exist_ok=True)
        code = self._fit(trial, params, run_dir, env)
        if self.stopping:
            trial.study.stop()
            raise TrialFailed(f"trial {trial.number} was interrupted")
        metrics_file = run_dir / "metrics.json"
        if code != 0 or not metrics_file.is_file():
            raise TrialFailed(f"trial {trial.number} failed (exit {code}); see {run_dir / 'output.log'}")
        metrics = json.loads(metrics_file.read_text())
        trial.set_user_attr("epochs", metrics.get("epochs"))
        tests = {key: value for key, value in metrics.items() if key.startswith("test/")}
        if any(value is not None for value in tests.values()):
            trial.set_user_attr("test", tests)
        if pruned_at(run_dir) is not None:
            raise optuna.TrialPruned()
        if metrics.get(self.space.metric) is None:
            raise TrialFailed(f"trial {trial.number}: metrics.json has no {self.space.metric}")
        return float(metrics[self.space.metric])

    def _fit(self, trial, params: dict, run_dir: Path, env: dict) -> int:
        """One `lit-mnist fit` for the trial, its output in run_dir/output.log; the exit status."""
        threads = [] if any(a.startswith("--threads") for a in self.fit_args) else [
            f"--threads={max(1, (os.cpu_count() or 1) // self.workers)}"
        ]  # fmt: skip
        test = ["--test_after_fit=false"] if self.space.test == "best" else []
        command = [
            sys.executable, "-m", "lit_mnist", "fit",
            *trial_flags(self.space, self.fit_args), *to_flags(params),
            f"--trainer.logger.init_args.save_dir={self.folder.parent}",
            f"--trainer.logger.init_args.name={self.folder.name}",
            f"--trainer.logger.init_args.version={run_dir.name}",
            *test, *threads,
        ]  # fmt: skip
        if self.space.pruner != "none":  # the metric to the pruner each epoch
            command += [
                "--trainer.callbacks+=lit_mnist.callbacks.pruning.OptunaPruning",
                f"--trainer.callbacks.storage={self.url}",
                f"--trainer.callbacks.study={self.study.study_name}",
                f"--trainer.callbacks.trial={storage_id(trial)}",
                f"--trainer.callbacks.monitor={self.space.metric}",
                f"--trainer.callbacks.pruner={self.space.pruner}",
            ]  # fmt: skip
        gpu = env.get("CUDA_VISIBLE_DEVICES")
        device = f"CUDA_VISIBLE_DEVICES={gpu} " if gpu != os.environ.get("CUDA_VISIBLE_DEVICES") else ""
        with (run_dir / "output.log").open("w") as log:
            log.write(device + shlex.join(["lit-mnist", *command[3:]]) + "\n")
            log.flush()
            with self.lock:
                if self.stopping:
                    return -1
                process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
                self.running[trial.number] = process
            code = process.wait()
        with self.lock:
            self.running.pop(trial.number, None)
        return code

    def _report_progress(self, study, trial) -> None:
        from optuna.trial import TrialState

        if trial.user_attrs.get("surplus") or self.stopping:
            return
        with self.lock:
            self.failures = self.failures + 1 if trial.state == TrialState.FAIL else 0
        value = trial.value if trial.state == TrialState.COMPLETE else None
        outcome = f"{self.space.metric}={value:.4f}" if value is not None else trial.state.name.lower()
        try:
            best = f"best {study.best_value:.4f} (trial {study.best_trial.number})"
        except ValueError:  # no complete trial yet
            best = "no best yet"
        with self.lock:
            self.progress.done(f"trial {trial.number} {outcome}, {best}")


def _queued(trial) -> bool:
    """Whether the trial was queued with its params (a grid's point) rather than drawn."""
    (frozen,) = [t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number]
    return "fixed_params" in frozen.system_attrs


def storage_id(trial) -> int:
    """The trial's key in the storage, by which another process reports to the same trial. Optuna
    has no public accessor for it (the trial number is not the key once a storage holds several
    studies)."""
    return trial._trial_id


def test_best(study, space: Space, folder: Path) -> None:
    """The best trial's best checkpoint on the official test set, once per best trial; the result
    goes to test.json in the study folder and into the study."""
    try:
        best = study.best_trial
    except ValueError:
        return
    if study.user_attrs.get("test", {}).get("trial") == best.number:
        return
    from lit_mnist.cli import MNISTCLI
    from lit_mnist.tools.runs import best_checkpoint

    run_dir = Path(best.user_attrs["run_dir"])
    if not run_dir.is_dir():  # a trial of another machine's worker
        print(f"best trial {best.number} ran elsewhere ({run_dir}): test it there with lit-mnist test")
        return
    checkpoint = best_checkpoint(run_dir)
    args = ["test", "--config", str(run_dir / "config.yaml"), "--ckpt_path", str(checkpoint)]
    cli = MNISTCLI(args=[*args, "--trainer.logger=false", "--trainer.enable_progress_bar=false"])
    metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items() if k.startswith("test/")}
    result = {"trial": best.number, "checkpoint": str(checkpoint), space.metric: best.value, **metrics}
    (folder / "test.json").write_text(json.dumps(result, indent=2) + "\n")
    study.set_user_attr("test", result)
    print(f"best trial {best.number}: {space.metric}={best.value:.4f}, " + ", ".join(
        f"{k}={v:.4f}" for k, v in metrics.items()
    ))  # fmt: skip
