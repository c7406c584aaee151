"""The simulated day (``bench.simulated_day``) with the budget topic in memory (``bench.shared_day``): a restart
at midday that takes its state back paces the rest of the day as if it had not stopped, and replicas that count
each other's calls keep the reserve through restarts that replicas counting alone spend it in (issue 20, "Tests
and figures"). A quarter of the bench's traffic on a 300-call day, so that it runs in seconds; the figures of the
full days are in docs/performance.md."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from bench.shared_day import MemoryBoard
from bench.simulated_day import (
    MIDDAY,
    REPLICAS,
    ROLLING_UPDATE,
    BudgetPolicy,
    DayFigures,
    Member,
    _Account,
    _planner,
    _run,
    diurnal_arrivals,
    restarts_of,
)
from service.budget import DAY_SECONDS, Allowance, AllowanceKind

CALLS = 300
ARRIVALS = diurnal_arrivals(2, 7, weight=lambda _day, _hour: 0.25)
RESERVE = Allowance(AllowanceKind.DAILY, daily_calls=CALLS, reserve_fraction=0.1).reserve()
MARGIN = REPLICAS - 1
"""The planner's margin: one call per other replica, for their calls under way (decision 0011, issue 22)."""


def second_day(*, replicas: int = 1, restarts: Sequence[float] = (), shared: bool = False, days: int = 2) -> DayFigures:
    """The last of ``days`` days; ``restarts``: seconds after that day's reset when a replica restarts, in turn."""
    board = MemoryBoard()
    policies = [
        BudgetPolicy(
            _planner(CALLS), qps=2.0 / replicas, share=1 / replicas,
            restarts=restarts_of(number, replicas, restarts, days=days),
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
    restored = second_day(restarts=MIDDAY, shared=True)
    relearned = second_day(restarts=MIDDAY)
    assert abs(restored.calls - uninterrupted.calls) <= 1
    p99 = uninterrupted.wait_quantile(0.99)
    assert abs(restored.wait_quantile(0.99) - p99) <= 0.02 * p99
    assert max(restored.waits) <= 1.02 * max(uninterrupted.waits)
    # what the state is worth: a restart that learns the day again drifts further from the uninterrupted day
    assert abs(relearned.wait_quantile(0.99) - p99) > abs(restored.wait_quantile(0.99) - p99)
    assert max(relearned.waits) > max(restored.waits)


def test_replicas_counting_each_others_calls_keep_the_reserve_through_restarts_that_spend_it_without() -> None:
    """On a daily allowance each answer's ``remainTimes`` already counts every replica's calls, and the margin
    keeps a call for each other replica: without restarts, replicas counting alone stop at the reserve plus the
    margin as well (33 here, shared or not). What the budget topic adds is the count at a start: a new process
    that does not take it back assumes the whole allowance left until its first answer, and in the day's last
    stretch spends a call from it. A rolling update and its rollback at 23:50 (8 restarts) take the unshared
    replicas through the reserve (26 of 30 left on this day); sharing, the margin stays whole."""
    alone = second_day(replicas=REPLICAS, restarts=ROLLING_UPDATE, days=1)
    shared = second_day(replicas=REPLICAS, restarts=ROLLING_UPDATE, shared=True, days=1)
    assert alone.lowest_left is not None
    assert shared.lowest_left is not None
    assert shared.lowest_left >= RESERVE + MARGIN, "sharing, a restart spends nothing of the margin"
    assert alone.lowest_left < RESERVE, "counting alone, the restarts go through the reserve (the case sharing fixes)"
    assert shared.calls >= CALLS - RESERVE - MARGIN - 10, "and they spend what the reset would take"
