"""The search space file of `lit-mnist sweep`: every mistake in one line, what a trial draws, the fit
flags and the best config it becomes."""

import warnings

import optuna
import pytest
import yaml

from conftest import ROOT, run_cli
from lit_mnist.errors import UserError
from lit_mnist.tools.sweep.space import Param, Space, best_config, load_space, missing_keys, to_flags

EXAMPLE = """
metric: val/acc_best
direction: maximize
sampler: tpe
pruner: median
flags: ["--trainer.max_epochs=3"]
params:
  model.optimizer.init_args.lr: {float: [1e-4, 1.0e-2], log: true}
  model.net.init_args.dropout: {float: [0.0, 0.5], step: 0.1}
  data.batch_size: {int: [32, 256], log: true}
  model.optimizer: {choice: [torch.optim.Adam, torch.optim.SGD]}
  seed_everything: {choice: [0, 1, 2]}
  model.net.init_args.channels: {choice: [[16, 32], [32, 64]]}
"""
X = "params: {x: {float: [0, 1]}}"


@pytest.fixture(autouse=True)
def quiet_optuna():
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def write(tmp_path, text: str):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def test_the_example_loads_with_every_kind(tmp_path):
    space = load_space(write(tmp_path, EXAMPLE))
    lr, dropout, batch, optimizer, seed, channels = space.params
    # `1e-4` (no dot) is a string to PyYAML: still read as the number meant
    assert lr == Param("model.optimizer.init_args.lr", "float", 1e-4, 1e-2, log=True)
    assert dropout == Param("model.net.init_args.dropout", "float", 0.0, 0.5, step=0.1)
    assert batch == Param("data.batch_size", "int", 32, 256, log=True)
    assert optimizer.choices == ("torch.optim.Adam", "torch.optim.SGD")
    assert seed.choices == (0, 1, 2) and channels.choices == ([16, 32], [32, 64])
    assert space.flags == ("--trainer.max_epochs=3",)


def test_defaults(tmp_path):
    space = load_space(write(tmp_path, X))
    assert (space.metric, space.direction, space.sampler, space.pruner, space.flags) == (
        "val/acc_best",
        "maximize",
        "tpe",
        "median",
        (),
    )


ERRORS = [
    ("- a\n- b\n", "a search space is a mapping with a params: key, found a list"),
    ("", "a search space is a mapping with a params: key, found an empty file"),
    ("params: [unclosed\n", "not a YAML file (line 2:"),
    (
        "samplr: tpe\n" + X,
        "samplr: unknown key (the keys are metric, direction, sampler, pruner, test, flags, params)",
    ),
    ("metric: val/acc\n", "params: missing or empty"),
    ("params: {}\n", "params: missing or empty"),
    ("params: {x: [0, 1]}", "params.x: expected a mapping like {float: [low, high]}, got [0, 1]"),
    ("params: {--x: {float: [0, 1]}}", "params.--x: a key is a fit flag without its dashes"),
    ("params: {x: {log: true}}", "params.x: give exactly one of float, int, choice; found none"),
    (
        "params: {x: {float: [0, 1], int: [0, 1]}}",
        "params.x: give exactly one of float, int, choice; found 2",
    ),
    (
        "params: {x: {float: [0, 1], logg: true}}",
        "params.x: unknown option 'logg' for float (its options are log",
    ),
    (
        "params: {x: {choice: [1], step: 1}}",
        "params.x: unknown option 'step' for choice (it takes no options)",
    ),
    ("params: {x: {choice: []}}", "params.x: the choice list is empty"),
    (
        "params: {x: {choice: a}}",
        "params.x: choice takes a list of values or a mapping of names to values, got 'a'",
    ),
    ("params: {x: {choice: {}}}", "params.x: the choice list is empty"),
    ("params: {x: {float: [0]}}", "params.x: float takes [low, high], got [0]"),
    ("params: {x: {float: [1, 0]}}", "params.x: low 1.0 is above high 0.0"),
    ("params: {x: {float: [0, 1], log: true}}", "params.x: a log range needs low > 0, got 0.0"),
    ("params: {x: {float: [0.1, 1], log: true, step: 0.1}}", "params.x: log and step do not go together"),
    ("params: {x: {float: [0.1, 1], log: maybe}}", "params.x: log must be true or false, got 'maybe'"),
    ("params: {x: {int: [0, 10], step: 0}}", "params.x: step must be > 0, got 0"),
    ("params: {x: {float: [0, 1], step: -0.1}}", "params.x: step must be > 0, got -0.1"),
    (
        "params: {x: {float: [0, 1], step: 0.3}}",
        "params.x: high - low (1.0 - 0.0) is not a multiple of step 0.3",
    ),
    ("params: {x: {float: [zero, 1]}}", "params.x: low must be a number, got 'zero'"),
    ("params: {x: {int: [1, ten]}}", "params.x: high must be a number, got 'ten'"),
    ("params: {x: {int: [0.5, 3]}}", "params.x: low of an int range must be a whole number, got 0.5"),
    ("metric: 3\n" + X, "metric: must be a key of metrics.json such as val/acc_best, got 3"),
    ("direction: up\n" + X, "direction: must be one of maximize, minimize, got 'up'"),
    ("test: all\n" + X, "test: must be one of best, each, got 'all'"),
    ("sampler: cmaes\n" + X, "sampler: must be one of tpe, random, grid, got 'cmaes'"),
    ("pruner: asha\n" + X, "pruner: must be one of median, hyperband, none, got 'asha'"),
    (
        "flags: --trainer.max_epochs=3\n" + X,
        "flags: must be a list of fit flags such as --trainer.max_epochs=3",
    ),
    ("flags: [trainer.max_epochs=3]\n" + X, "flags: must be a list of fit flags"),
    (
        "sampler: grid\n" + X,
        "params.x: with sampler grid, a range needs a step (not log), or list its values in a choice",
    ),
    (
        "sampler: grid\nparams: {x: {int: [1, 8], log: true}}",
        "params.x: with sampler grid, a range needs a step",
    ),
]


@pytest.mark.parametrize(("text", "problem"), ERRORS, ids=[problem for _, problem in ERRORS])
def test_each_mistake_is_one_line_naming_file_key_and_problem(tmp_path, text, problem):
    path = write(tmp_path, text)
    with pytest.raises(UserError) as raised:
        load_space(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: {problem}"), message
    assert "\n" not in message


def test_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(UserError, match=r"^\S+/nothing\.yaml: no such search space file$"):
        load_space(tmp_path / "nothing.yaml")


def test_suggest_draws_every_param_within_its_range(tmp_path):
    space = load_space(write(tmp_path, EXAMPLE))
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(
        storage=storage, sampler=space.make_sampler(seed=0), pruner=space.make_pruner()
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a list among the choices is no warning, even in a database
        for _ in range(5):
            trial = study.ask()
            values = space.suggest(trial)
            study.tell(trial, 0.5)
            assert space.values(trial.params) == values
            # Optuna holds a list as its text
            assert trial.params["model.net.init_args.channels"] in ("[16, 32]", "[32, 64]")
            assert 1e-4 <= values["model.optimizer.init_args.lr"] <= 1e-2
            assert round(values["model.net.init_args.dropout"] * 10) in range(6)
            assert isinstance(values["data.batch_size"], int) and 32 <= values["data.batch_size"] <= 256
            assert values["model.net.init_args.channels"] in ([16, 32], [32, 64])


def test_samplers_and_pruners():
    space = Space({"x": {"float": [0, 1]}})
    assert isinstance(space.make_sampler(1), optuna.samplers.TPESampler)
    assert isinstance(space.make_pruner(), optuna.pruners.MedianPruner)
    random = Space({"x": {"float": [0, 1]}}, sampler="random", pruner="hyperband")
    assert isinstance(random.make_sampler(1), optuna.samplers.RandomSampler)
    assert isinstance(random.make_pruner(), optuna.pruners.HyperbandPruner)
    assert isinstance(Space({"x": {"choice": [1]}}, pruner="none").make_pruner(), optuna.pruners.NopPruner)


def test_a_grid_walks_steps_exactly_and_its_points_are_every_combination_in_order():
    space = Space(
        {
            "a": {"float": [0.0, 0.5], "step": 0.1},
            "b": {"int": [1, 9], "step": 4},
            "c": {"choice": ["x", [1, 2]]},
        },
        sampler="grid",
    )
    grid = space.grid()
    assert grid == {"a": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5], "b": [1, 5, 9], "c": ["x", "[1, 2]"]}
    points = space.grid_points()
    assert len(points) == len({tuple(p.values()) for p in points}) == 36
    assert points[:3] == [
        {"a": 0.0, "b": 1, "c": "x"},
        {"a": 0.0, "b": 1, "c": "[1, 2]"},
        {"a": 0.0, "b": 5, "c": "x"},
    ]
    assert points[-1] == {"a": 0.5, "b": 9, "c": "[1, 2]"}
    # queued with its params, a point is what the trial suggests
    study = optuna.create_study(sampler=space.make_sampler(seed=0))
    study.enqueue_trial(points[7])
    study.optimize(lambda trial: space.suggest(trial)["b"], n_trials=1)
    assert study.trials[0].params == points[7]


def test_named_choices_are_held_by_name_and_stand_for_their_values():
    space = Space({"model.scheduler": {"choice": {"none": None, "step": {"class_path": "StepLR"}}}})
    (param,) = space.params
    assert param.labels() == ["none", "step"]
    assert space.values({"model.scheduler": "step"}) == {"model.scheduler": {"class_path": "StepLR"}}
    assert space.values({"model.scheduler": "none"}) == {"model.scheduler": None}
    study = optuna.create_study(sampler=space.make_sampler(seed=0))
    study.optimize(lambda trial: str(space.suggest(trial)).count("S"), n_trials=6)
    assert {t.params["model.scheduler"] for t in study.trials} <= {"none", "step"}


def test_the_fingerprint_changes_with_the_space_not_with_key_order_or_sampler():
    lr = {"float": [1e-4, 1e-2], "log": True}
    batch = {"int": [32, 256]}
    base = Space({"lr": lr, "batch": batch})
    assert Space({"batch": batch, "lr": lr}, sampler="random").fingerprint() == base.fingerprint()
    assert Space({"lr": {**lr, "float": [1e-5, 1e-2]}, "batch": batch}).fingerprint() != base.fingerprint()
    assert Space({"lr": lr, "batch": batch}, direction="minimize").fingerprint() != base.fingerprint()
    assert Space({"lr": lr, "batch": batch}, metric="val/acc").fingerprint() != base.fingerprint()


def test_to_flags_writes_values_fit_reads_back_and_a_class_before_its_arguments():
    values = {
        "model.optimizer.init_args.lr": 1e-05,
        "model.optimizer": "torch.optim.SGD",
        "trainer.enable_progress_bar": False,
        "model.scheduler": None,
        "model.net.init_args.channels": [16, 32],
        "trainer.limits": {"a": 1},
        "data.name": "true",
        "data.ratio": 0.1 + 0.2,
    }
    flags = to_flags(values)
    assert flags == [
        "--model.optimizer=torch.optim.SGD",
        "--trainer.enable_progress_bar=false",
        "--model.scheduler=null",
        "--trainer.limits={a: 1}",
        "--data.name='true'",
        "--data.ratio=0.30000000000000004",
        "--model.optimizer.init_args.lr=1.0e-05",
        "--model.net.init_args.channels=[16, 32]",
    ]
    read_back = {flag[2:].split("=", 1)[0]: yaml.safe_load(flag.split("=", 1)[1]) for flag in flags}
    assert read_back == values


FIT_CONFIG = {
    "seed_everything": 0,
    "model": {
        "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.001, "weight_decay": 0.0}},
        "net": {"class_path": "lit_mnist.nets.ConvNet", "init_args": {"dropout": 0.0}},
        "scheduler": None,
    },
    "data": {"batch_size": 64},
}


def test_missing_keys_are_the_params_a_fit_config_lacks():
    space = Space(
        {
            "seed_everything": {"choice": [0, 1]},
            "model.optimizer": {"choice": ["torch.optim.Adam", "torch.optim.SGD"]},
            "model.optimizer.init_args.momentum": {"float": [0, 0.9]},  # SGD's, set after its class
            "model.net.init_args.dropout": {"float": [0, 0.5]},
            "model.net.init_args.dropuot": {"float": [0, 0.5]},
            "model.scheduler.init_args.gamma": {"float": [0.1, 0.9]},
            "data.batch_size.x": {"int": [1, 2]},
            "data.batchsize": {"int": [32, 64]},
        }
    )
    assert missing_keys(space, FIT_CONFIG) == [
        "model.net.init_args.dropuot",
        "model.scheduler.init_args.gamma",
        "data.batch_size.x",
        "data.batchsize",
    ]


def test_best_config_nests_keys_and_a_class_with_arguments_gets_a_class_path():
    alone = best_config({"model.optimizer": "torch.optim.SGD", "data.batch_size": 128})
    assert alone == {"model": {"optimizer": "torch.optim.SGD"}, "data": {"batch_size": 128}}
    with_arguments = best_config(
        {"model.optimizer.init_args.lr": 0.05, "model.optimizer": "torch.optim.SGD", "seed_everything": 2}
    )
    assert with_arguments == {
        "model": {"optimizer": {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.05}}},
        "seed_everything": 2,
    }


def test_fit_reads_the_best_config_over_the_default_recipe(tmp_path):
    best = {
        "model.optimizer": "torch.optim.SGD",
        "model.optimizer.init_args.lr": 0.0123,
        "model.optimizer.init_args.momentum": 0.9,  # Adam (the default's) takes none
        "model.net.init_args.dropout": 0.30000000000000004,
        "model.net.init_args.channels": [16, 32],
        "data.batch_size": 100,
        "seed_everything": 7,
    }
    (tmp_path / "best.yaml").write_text(yaml.safe_dump(best_config(best)))
    result = run_cli(
        "fit", "--config", str(ROOT / "configs/default.yaml"), "--config", "best.yaml", "--print_config",
        cwd=tmp_path,
    )  # fmt: skip
    printed = yaml.safe_load(result.stdout)
    optimizer, net = printed["model"]["optimizer"], printed["model"]["net"]["init_args"]
    assert optimizer["class_path"] == "torch.optim.SGD"
    assert (optimizer["init_args"]["lr"], optimizer["init_args"]["momentum"]) == (0.0123, 0.9)
    assert (net["dropout"], net["channels"]) == (0.30000000000000004, [16, 32])
    assert (printed["data"]["init_args"]["batch_size"], printed["seed_everything"]) == (100, 7)


def test_a_trial_gets_the_configs_then_the_space_flags_then_the_command_flags():
    from lit_mnist.tools.sweep.run import trial_flags

    space = Space({"x": {"choice": [1]}}, flags=("--trainer.max_epochs=3",))
    fit_args = [
        "--config",
        "a.yaml",
        "--trainer.max_epochs=1",
        "--config=b.yaml",
        "-c",
        "c.yaml",
        "--data.batch_size=8",
    ]
    assert trial_flags(space, fit_args) == [
        "--config", "a.yaml", "--config=b.yaml", "-c", "c.yaml", "--trainer.max_epochs=3",
        "--trainer.max_epochs=1", "--data.batch_size=8",
    ]  # fmt: skip
