"""lit-mnist sweep on the synthetic digits: trials are real `lit-mnist fit` runs in their own
folders, the study continues when the command is run again, an interrupted trial is marked failed,
and pruning stops a run early with its curves kept."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import lightning as L
import optuna
import pytest

from conftest import ROOT, SMALL, run_cli
from lit_mnist.callbacks.pruning import OptunaPruning, make_pruner, pruned_at
from lit_mnist.cli import MNISTCLI
from lit_mnist.data import SPEC, MNISTDataModule, preset_spec
from lit_mnist.loggers import CSVLogger
from lit_mnist.model import MNISTClassifier
from lit_mnist.nets import ConvNet
from lit_mnist.tools.sweep.run import check_keys
from lit_mnist.tools.sweep.space import load_space, to_flags

SPACE = """
metric: val/acc_best
sampler: random
pruner: none
flags: ["--trainer.max_epochs=2", "--model.net.init_args.channels=[4, 8]", "--model.net.init_args.hidden=16"]
params:
  model.optimizer.init_args.lr: {float: [1.0e-3, 1.0e-2], log: true}
  data.batch_size: {choice: [25, 50]}
  model.scheduler:
    choice: [null, {class_path: torch.optim.lr_scheduler.ExponentialLR, init_args: {gamma: 0.9}}]
"""


def sweep_args(tmp_path: Path, data: Path, *extra: str) -> list[str]:
    space = tmp_path / "tiny.yaml"
    space.write_text(SPACE)
    return [
        "sweep", "--space", str(space), "--seed", "0",
        "--config", str(ROOT / "configs/default.yaml"), f"--data.data_dir={data}",
        "--trainer.precision=32-true", *SMALL, *extra,
    ]  # fmt: skip


def states(study_db: Path) -> list[str]:
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{study_db}")
    return sorted(t.state.name for t in study.trials)


def test_a_study_runs_its_trials_as_runs_and_continues(fake_mnist, tmp_path):
    out = run_cli(*sweep_args(tmp_path, fake_mnist, "--trials", "3", "--workers", "2"), cwd=tmp_path).stdout
    study = tmp_path / "logs" / "sweeps" / "tiny"
    assert "[3/3] trial " in out and "best trial " in out
    assert states(study / "study.db") == ["COMPLETE"] * 3
    for n in range(3):
        metrics = json.loads((study / f"trial_{n}" / "metrics.json").read_text())
        assert metrics["epochs"] == 2 and "test/acc" not in metrics  # trials never see the test set
        assert (study / f"trial_{n}" / "config.yaml").is_file()
    assert (study / "trials.md").is_file() and (study / "best.yaml").is_file()
    # each trial's config holds what was drawn for it (the draws of parallel workers vary)
    trials = optuna.load_study(study_name="tiny", storage=f"sqlite:///{study / 'study.db'}").trials
    with_scheduler = [t.number for t in trials if t.params["model.scheduler"] is not None]
    for n in range(3):
        assert ("ExponentialLR" in (study / f"trial_{n}" / "config.yaml").read_text()) == (
            n in with_scheduler
        )
    tested = json.loads((study / "test.json").read_text())
    assert 0 <= tested["test/acc"] <= 1 and tested["trial"] in range(3)

    (study / "trials.md").unlink()
    reported = run_cli(*sweep_args(tmp_path, fake_mnist, "--report"), cwd=tmp_path).stdout
    assert "wrote logs/sweeps/tiny/trials.md" in reported and "trial_3" not in reported
    assert (study / "trials.md").read_text().count("| COMPLETE |") == 3

    again = run_cli(*sweep_args(tmp_path, fake_mnist, "--trials", "4"), cwd=tmp_path).stdout
    assert "[1/1] trial 3" in again
    assert states(study / "study.db") == ["COMPLETE"] * 4
    assert sorted(p.name for p in study.glob("trial_*")) == [f"trial_{n}" for n in range(4)]
    assert dashboard_trials(study / "study.db", "tiny") == ["Complete"] * 4


def dashboard_trials(study_db: Path, name: str) -> list[str]:
    """Starts optuna-dashboard on a study's storage, as docs/sweeps.md says, and reads the study's
    page and its trials' states over HTTP on localhost."""
    if os.environ.get("LIT_MNIST_REQUIRE_DATA") != "1":
        pytest.importorskip("optuna_dashboard", reason="the dashboard extra is not installed")
    with socket.socket() as free:  # a port nobody uses
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    command = [str(Path(sys.executable).parent / "optuna-dashboard"), f"sqlite:///{study_db}"]
    server = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):  # it listens within a few seconds
            try:
                studies = json.loads(urllib.request.urlopen(f"{base}/api/studies", timeout=5).read())
                break
            except OSError:
                assert server.poll() is None, f"optuna-dashboard stopped: {server.stderr.read()}"
                time.sleep(0.1)
        else:
            raise AssertionError("optuna-dashboard did not answer within 30 s")
        page = urllib.request.urlopen(f"{base}/dashboard", timeout=5).read().decode()
        assert "<title>Optuna Dashboard</title>" in page
        [found] = [s for s in studies["study_summaries"] if s["study_name"] == name]
        study = f"{base}/api/studies/{found['study_id']}"
        detail = json.loads(urllib.request.urlopen(study, timeout=5).read())
        return [trial["state"] for trial in detail["trials"]]
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_bad_input_is_one_line_and_writes_nothing(fake_mnist, tmp_path):
    args = sweep_args(tmp_path, fake_mnist, "--trials", "2")
    (tmp_path / "tiny.yaml").write_text(SPACE.replace("data.batch_size", "data.batch_sise"))
    result = run_cli(*args, cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: data.batch_sise: not a key")
    assert not (tmp_path / "logs").exists()
    report = run_cli(*sweep_args(tmp_path, fake_mnist, "--report"), cwd=tmp_path, check=False)
    assert report.returncode == 2
    assert report.stderr.strip().splitlines()[-1].startswith("error: no study tiny")
    assert not (tmp_path / "logs").exists()


def test_sigterm_marks_the_running_trial_failed_and_a_rerun_finishes(fake_mnist, tmp_path):
    args = sweep_args(tmp_path, fake_mnist, "--trials", "2")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    sweep = subprocess.Popen([sys.executable, "-m", "lit_mnist", *args], cwd=tmp_path, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    log = tmp_path / "logs" / "sweeps" / "tiny" / "trial_0" / "output.log"
    deadline = time.monotonic() + 120
    while not log.is_file() and time.monotonic() < deadline:  # the trial's fit has started
        time.sleep(0.2)
    sweep.send_signal(signal.SIGTERM)
    _, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 2 and "interrupted" in err.strip().splitlines()[-1]
    study = tmp_path / "logs" / "sweeps" / "tiny"
    assert states(study / "study.db") == ["FAIL"]

    run_cli(*sweep_args(tmp_path, fake_mnist, "--trials", "2"), cwd=tmp_path)
    assert states(study / "study.db") == ["COMPLETE", "COMPLETE", "FAIL"]


def test_pruning_stops_the_run_and_keeps_its_curves(fake_mnist, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    # five finished trials far ahead after every epoch: the median pruner stops a weaker one
    x = optuna.distributions.FloatDistribution(0, 1)
    curve = dict.fromkeys(range(5), 0.99)
    for _ in range(5):
        finished = optuna.trial.create_trial(
            params={"x": 0.5}, distributions={"x": x}, value=0.99, intermediate_values=curve
        )
        study.add_trial(finished)
    trial = study.ask()
    pruning = OptunaPruning(storage, "s", trial._trial_id, monitor="val/acc", pruner="median")
    data = MNISTDataModule(data_dir=str(fake_mnist), val_size=50, batch_size=50, eval_batch_size=50)
    model = MNISTClassifier(data.spec, net=lambda spec: ConvNet(spec, channels=(4, 8), hidden=16))
    trainer = L.Trainer(max_epochs=5, logger=CSVLogger(str(tmp_path), name="run"), callbacks=[pruning],
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(model, data)
    run_dir = tmp_path / "run" / "version_0"
    assert trainer.current_epoch == 2  # the first epoch is spared, the second judged
    assert pruned_at(run_dir)["epoch"] == 1
    assert study.trials[-1].intermediate_values.keys() == {0, 1}
    assert (run_dir / "metrics.csv").is_file()

    # the same weak trial with a budget of two epochs: judged at its last validation, it is not
    # stopped, as that would save nothing and lose its result
    last = study.ask()
    pruning = OptunaPruning(storage, "s", last._trial_id, monitor="val/acc", pruner="median")
    trainer = L.Trainer(max_epochs=2, logger=CSVLogger(str(tmp_path), name="last"), callbacks=[pruning],
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(model, data)
    assert trainer.current_epoch == 2 and pruned_at(tmp_path / "last" / "version_0") is None
    assert study.trials[-1].intermediate_values.keys() == {0, 1}
    assert make_pruner("median").prune(study, study.trials[-1])  # the pruner did say so


def test_an_object_choice_reaches_the_fit_config_whole():
    scheduler = {"class_path": "torch.optim.lr_scheduler.ExponentialLR", "init_args": {"gamma": 0.9}}
    flags = to_flags({"model.scheduler": scheduler, "data.batch_size": 25})
    with preset_spec(SPEC):  # no data read: only the config is looked at
        cli = MNISTCLI(args=["--config", str(ROOT / "configs/default.yaml"), *flags], run=False)
    assert cli.config.model.scheduler.class_path == scheduler["class_path"]
    assert cli.config.model.scheduler.init_args.gamma == 0.9 and cli.config.data.init_args.batch_size == 25


@pytest.mark.parametrize("space", sorted((ROOT / "configs" / "sweeps").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_spaces_load_and_name_fit_config_keys(space):
    check_keys(load_space(space), ["--config", str(ROOT / "configs/default.yaml")])


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    """A real PostgreSQL 16 started for these tests (the pgserver package), as an Optuna URL."""
    if os.environ.get("LIT_MNIST_REQUIRE_DATA") != "1":
        pytest.importorskip("pgserver", reason="the test extra's pgserver is not installed")
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("postgres"), cleanup_mode="stop")
    yield server.get_uri().replace("postgresql://", "postgresql+psycopg2://", 1)
    server.cleanup()


def test_two_commands_share_a_study_in_postgresql_and_keep_its_count(fake_mnist, tmp_path, postgres):
    args = sweep_args(tmp_path, fake_mnist, "--trials", "4", "--storage", postgres)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "lit_mnist", *args],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], [o.strip().splitlines()[-1] for o in outputs]
    study = optuna.load_study(study_name="tiny", storage=postgres)
    finished = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(finished) == 4  # the cap holds across the two commands
    folders = [Path(t.user_attrs["run_dir"]).name for t in finished]
    assert len(set(folders)) == 4 and all((tmp_path / t.user_attrs["run_dir"]).is_dir() for t in finished)
    assert not (tmp_path / "logs" / "sweeps" / "tiny" / "study.db").exists()


def test_each_worker_gets_its_own_sampler_seed():
    from lit_mnist.tools.sweep.run import worker_seeds

    seeds = worker_seeds(0, trials_before=0, workers=4)
    assert len(set(seeds)) == 4
    assert worker_seeds(0, 0, 4) == seeds  # --seed makes a command repeatable
    assert set(worker_seeds(0, 7, 4)).isdisjoint(seeds)  # a rerun does not draw the first run's points
    assert worker_seeds(None, 0, 2) != worker_seeds(None, 0, 2)  # without --seed: new each time
    # two workers seeded apart propose different points; seeded alike, the same
    space = load_space(ROOT / "configs" / "sweeps" / "search.yaml")
    drawn = []
    for seed in (seeds[0], seeds[1], seeds[0]):
        study = optuna.create_study(sampler=space.make_sampler(seed))
        drawn.append(space.suggest(study.ask()))
    assert drawn[0] != drawn[1] and drawn[0] == drawn[2]


def test_each_worker_gets_its_own_gpu_when_there_are_gpus():
    from lit_mnist.tools.sweep.run import device_env

    env = {"PATH": "/bin"}
    assert device_env(0, env, gpus=0) == env  # a CPU machine: nothing changes
    assert [device_env(w, env, gpus=2)["CUDA_VISIBLE_DEVICES"] for w in range(3)] == ["0", "1", "0"]
    visible = {**env, "CUDA_VISIBLE_DEVICES": "3,5"}  # the machine's own choice is kept
    assert [device_env(w, visible, gpus=2)["CUDA_VISIBLE_DEVICES"] for w in range(2)] == ["3", "5"]
    assert device_env(1, env, gpus=2)["PATH"] == "/bin"


def test_a_study_name_taken_by_another_space_or_direction_is_refused(fake_mnist, tmp_path):
    from lit_mnist.tools.sweep.run import open_study

    study_dir = tmp_path / "logs" / "sweeps" / "tiny"
    study_dir.mkdir(parents=True)
    (tmp_path / "tiny.yaml").write_text(SPACE)
    open_study(f"sqlite:///{study_dir / 'study.db'}", "tiny", load_space(tmp_path / "tiny.yaml"))
    before = sorted(p.name for p in study_dir.iterdir())
    for old, new in (
        ("[25, 50]", "[25, 100]"),
        ("metric: val/acc_best", "metric: val/acc_best\ndirection: minimize"),
    ):
        args = sweep_args(tmp_path, fake_mnist, "--trials", "1")
        (tmp_path / "tiny.yaml").write_text(SPACE.replace(old, new))
        result = run_cli(*args, cwd=tmp_path, check=False)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines()[-1] == (
            "error: study tiny in sqlite:///logs/sweeps/tiny/study.db was made with another space or "
            "direction; name a new one with --study"
        )
        assert sorted(p.name for p in study_dir.iterdir()) == before
        assert states(study_dir / "study.db") == []


def test_a_killed_sweep_is_rerun_and_finishes_with_the_count(fake_mnist, tmp_path):
    """kill -9 of the command and its trial (a power cut): the rerun waits for the dead trial's
    heartbeat to go stale, runs its params again and ends with exactly --trials finished trials."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    # a heartbeat every 10 s: the rerun most likely starts while the dead trial still looks alive
    args = sweep_args(tmp_path, fake_mnist, "--trials", "1", "--grace", "30")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    command = [sys.executable, "-m", "lit_mnist", *args]
    sweep = subprocess.Popen(command, cwd=tmp_path, start_new_session=True, **quiet)
    log = tmp_path / "logs" / "sweeps" / "tiny" / "trial_0" / "output.log"
    deadline = time.monotonic() + 120
    while not log.is_file() and time.monotonic() < deadline:  # the trial's fit is starting
        time.sleep(0.1)
    os.killpg(sweep.pid, signal.SIGKILL)
    sweep.wait()
    study_db = tmp_path / "logs" / "sweeps" / "tiny" / "study.db"
    assert states(study_db) == ["RUNNING"]  # nobody said it died

    run_cli(*args, cwd=tmp_path)
    assert states(study_db) == ["COMPLETE", "FAIL"]
    trials = optuna.load_study(study_name="tiny", storage=f"sqlite:///{study_db}").trials
    (retried,) = [t for t in trials if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == 0]
    assert retried.params == trials[0].params and retried.state.name == "COMPLETE"
    assert json.loads((tmp_path / retried.user_attrs["run_dir"] / "metrics.json").read_text())["epochs"] == 2
