"""auto_precision: the fastest of the candidates, timed, cached per machine + torch + net."""

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from torch import nn

from lit_mnist import precision
from lit_mnist.data import SPEC
from lit_mnist.nets import ConvNet

SHAPE = (8, 1, 28, 28)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "lit-mnist" / "precision.json"


def small_net():
    return ConvNet(SPEC, channels=[4, 8], hidden=16)


def test_times_every_candidate_on_the_real_net(cache):
    timings, failed = precision.time_steps(small_net(), SHAPE, 10, torch.device("cpu"), precision.candidates(
        torch.device("cpu"), None, None))  # fmt: skip
    assert set(timings) == {"32-true", "32-true+cl", "bf16-mixed", "bf16-mixed+cl"} and failed == {}
    assert all(ms > 0 for ms in timings.values())


class HalfFails(nn.Module):
    """A net that runs in float32 and raises under autocast, as oneDNN's LSTM does in bf16 on
    some CPUs."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(28 * 28, 10)

    def forward(self, x):
        if torch.is_autocast_enabled(x.device.type):
            raise RuntimeError("could not create a primitive descriptor for the LSTM forward\nmore")
        return self.linear(x.flatten(1))


def test_a_candidate_the_net_cannot_run_is_left_out_and_said(cache):
    choice = precision.choose(HalfFails(), SHAPE, 10, torch.device("cpu"))
    assert choice.precision == "32-true" and set(choice.timings) == {"32-true", "32-true+cl"}
    assert set(choice.failed) == {"bf16-mixed", "bf16-mixed+cl"}
    line = choice.describe()
    assert "bf16-mixed failed here (could not create a primitive descriptor for the LSTM forward)" in line
    again = precision.choose(HalfFails(), SHAPE, 10, torch.device("cpu"))
    assert again.cached and again.failed == choice.failed  # the cache keeps why


def test_a_net_that_runs_in_no_candidate_raises_its_error(cache):
    with pytest.raises(RuntimeError, match="primitive descriptor"):
        precision.choose(HalfFails(), SHAPE, 10, torch.device("cpu"), precisions=["bf16-mixed"])


@pytest.mark.parametrize("fastest", ["32-true", "bf16-mixed+cl", "32-true+cl"])
def test_picks_the_fastest_and_caches_it(cache, monkeypatch, fastest):
    calls = []

    def fake(net, shape, num_classes, device, options):
        calls.append(options)
        return {
            precision._name(p, cl): (1.0 if precision._name(p, cl) == fastest else 2.0) for p, cl in options
        }, {}

    monkeypatch.setattr(precision, "time_steps", fake)
    first = precision.choose(small_net(), SHAPE, 10, torch.device("cpu"))
    assert precision._name(first.precision, first.channels_last) == fastest and not first.cached
    assert len(calls) == 1 and cache.is_file()
    line = first.describe()
    assert line.startswith(f"auto_precision: {fastest.replace('+cl', ' channels-last')}, the fastest")
    assert "measured now" in line and "2.0" in line

    again = precision.choose(small_net(), SHAPE, 10, torch.device("cpu"))
    assert len(calls) == 1  # read from the cache, not timed again
    assert (again.precision, again.channels_last, again.cached) == (
        first.precision,
        first.channels_last,
        True,
    )
    assert "measured earlier on this machine" in again.describe()

    # another net, batch shape or candidate set is another entry
    precision.choose(ConvNet(SPEC, channels=[4, 8], hidden=32), SHAPE, 10, torch.device("cpu"))
    precision.choose(small_net(), (16, 1, 28, 28), 10, torch.device("cpu"))
    precision.choose(small_net(), SHAPE, 10, torch.device("cpu"), precisions=["32-true"])
    assert len(calls) == 4 and calls[-1] == [("32-true", False), ("32-true", True)]
    assert len(json.loads(cache.read_text())) == 4


def test_evaluation_does_not_measure(cache, monkeypatch):
    monkeypatch.setattr(precision, "time_steps", lambda *a: pytest.fail("timed"))
    assert precision.choose(small_net(), SHAPE, 10, torch.device("cpu"), measure=False) is None


def test_unreadable_or_unwritable_cache_only_costs_a_measurement(cache, monkeypatch):
    cache.parent.mkdir(parents=True)
    cache.write_text("{not json")
    choice = precision.choose(small_net(), SHAPE, 10, torch.device("cpu"))
    assert choice.timings and not choice.cached
    monkeypatch.setenv("XDG_CACHE_HOME", "/proc/not-writable")
    assert precision.choose(small_net(), SHAPE, 10, torch.device("cpu")).timings


def test_runs_starting_together_time_once(cache, monkeypatch):
    """A sweep's workers start at once: one times the steps, the others wait and read its answer."""
    calls = []

    def slow(net, shape, num_classes, device, options):
        calls.append(1)
        time.sleep(0.5)
        return {precision._name(p, cl): 1.0 + i for i, (p, cl) in enumerate(options)}, {}

    monkeypatch.setattr(precision, "time_steps", slow)
    with ThreadPoolExecutor(3) as pool:
        choices = list(
            pool.map(lambda _: precision.choose(small_net(), SHAPE, 10, torch.device("cpu")), range(3))
        )
    assert len(calls) == 1
    assert sorted(c.cached for c in choices) == [False, True, True]
    assert len({(c.precision, c.channels_last) for c in choices}) == 1
