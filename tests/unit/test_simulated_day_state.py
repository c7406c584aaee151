"""The simulated day (``bench.simulated_day``) with the budget topic in memory (``bench.shared_day``): a restart
at midday that takes its state back paces the rest of the day as if it had not stopped, and replicas that count
each other's calls never touch the reserve (issue 20, "Tests and figures"). A quarter of the bench's traffic on a
300-call day, so that it runs in seconds; the figures of the full days are in docs/performance.md."""

from __future__ import annotations

import pytest

from bench.shared_day import MemoryBoard
from bench.simulated_day import (
    BudgetPolicy,
    DayFigures,
    Member,
    _Account,
    _planner,
    _run,
    diurnal_arrivals,
)
from service.budget import DAY_SECONDS, Allowance, AllowanceKind

CALLS = 300
ARRIVALS = diurnal_arrivals(2, 7, weight=lambda _day, _hour: 0.25)
RESERVE = Allowance(AllowanceKind.DAILY, daily_calls=CALLS, reserve_fraction=0.1).reserve()


def second_day(*, replicas: int = 1, restart: bool = False, shared: bool = False, days: int = 2) -> DayFigures:
    board = MemoryBoard()
    restart_at = (days - 1) * DAY_SECONDS + DAY_SECONDS / 2 if restart else None
    policies = [
        BudgetPolicy(
            _planner(CALLS), qps=2.0 / replicas, share=1 / replicas, restart_at=restart_at,
            member=Member(board, f"imgsweep-{number}") if shared else None,
        )
        for number in range(replicas)
    ]  # fmt: skip
    arrivals = [arrival for arrival in ARRIVALS if arrival.at < days * DAY_SECONDS]
    figures = _run(
        arrivals, policies, _Account(CALLS, daily=True), days=days, label="", spendable=CALLS - RESERVE, reserve=RESERVE
    )
    return figures[-1]


@pytest.fixture(scope="module")
def uninterrupted() -> DayFigures:
    return second_day()


def test_a_restart_that_takes_its_state_back_paces_as_if_it_had_not_stopped(uninterrupted: DayFigures) -> None:
    restored = second_day(restart=True, shared=True)
    relearned = second_day(restart=True)
    assert abs(restored.calls - uninterrupted.calls) <= 1
    p99 = uninterrupted.wait_quantile(0.99)
    assert abs(restored.wait_quantile(0.99) - p99) <= 0.02 * p99
    assert max(restored.waits) <= 1.02 * max(uninterrupted.waits)
    # what the state is worth: a restart that learns the day again drifts further from the uninterrupted day
    assert abs(relearned.wait_quantile(0.99) - p99) > abs(restored.wait_quantile(0.99) - p99)
    assert max(relearned.waits) > max(restored.waits)


def test_replicas_counting_each_others_calls_never_touch_the_reserve() -> None:
    day = second_day(replicas=4, shared=True, days=1)
    assert day.lowest_left is not None
    assert day.lowest_left >= RESERVE
    assert day.calls >= CALLS - RESERVE - 10, "and they spend what the reset would take"
