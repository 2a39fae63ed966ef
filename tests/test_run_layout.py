"""run.py's process-to-core plan: which core each role gets, with and without --cpus."""

from __future__ import annotations

import os

import pytest

import run

VENUES = ["binance", "okx", "gate"]


@pytest.fixture
def cores(monkeypatch):
    def set_cores(n: int) -> None:
        monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(n)))
    return set_cores


def test_explicit_cpus_feeds_first_strategy_last(cores):
    cores(6)
    lay = run.plan_layout(VENUES, [2, 3, 4])
    assert lay.strategy_cpu == 4
    assert lay.feed_groups == [(2, ["binance", "gate"]), (3, ["okx"])]
    assert lay.low_priority_cpus == {0, 1, 5}  # persist/monitor on the cores left over


def test_two_cores_default_shares_low_priority_with_feed(cores):
    cores(2)
    lay = run.plan_layout(VENUES, None)
    assert lay.strategy_cpu == 1
    assert lay.feed_groups == [(0, VENUES)]
    assert lay.low_priority_cpus == {0}  # never the strategy's core


def test_default_leaves_first_core_to_the_os(cores):
    cores(5)
    lay = run.plan_layout(VENUES, None)
    assert lay.strategy_cpu == 4
    assert [c for c, _ in lay.feed_groups] == [1, 2, 3]
    assert lay.low_priority_cpus == {0}


def test_one_core_pins_nothing(cores):
    cores(1)
    lay = run.plan_layout(VENUES, None)
    assert lay.strategy_cpu is None and lay.feed_groups == [(None, VENUES)]


@pytest.mark.parametrize("text, needle", [("2,2", "twice"), ("a,b", "comma-separated"), ("0", "at least two"),
                                          ("0,9", "cannot use")])
def test_bad_cpus_is_a_usage_error(cores, text, needle):
    cores(4)
    with pytest.raises(run.UsageError, match=needle):
        run.parse_cpus(text)
