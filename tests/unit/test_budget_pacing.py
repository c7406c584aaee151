"""The pace of a daily allowance, checked on whole days of a trickle (issue 22, point 3).

The properties of ``test_budget_planner.py`` hold for a planner that does not pace at all (they check the
reserve, the QPS, the order and the linger). These check the pace itself, on days where the calls are scarce
for partial batches (each collection's images would take far more calls at the linger than the account has) but
the day fits at full batches: the calls spent by any moment of the day stay near the share of the day gone by,
and replicas that share one account, each reading the calls left only from the answers to its own calls, spend
the account's calls once and never its reserve. Three wrong planners (one that spends 3x too fast, one that
ignores its share, one that does not pace) are written here and the properties catch each of them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.budget import DAY_SECONDS, Allowance, AllowanceKind, CallPlanner, Decision, QuotaView, WaitingBatch, Why

MAX_ITEMS = 50
LINGER = 2.0
MAX_WAIT = 600.0
QPS = 2.0


class Planner(Protocol):
    def plan(self, now: float, waiting: Sequence[WaitingBatch], quota: QuotaView) -> Decision: ...

    def sent(self, now: float, batch: WaitingBatch) -> None: ...

    def learned(self, now: float, remain_times: int, calls_in_flight: int = 0) -> None: ...

    def observe_arrivals(self, now: float, images: int) -> None: ...


Make = Callable[[Allowance], Planner]


def right(allowance: Allowance) -> Planner:
    return CallPlanner(allowance, max_wait_seconds=MAX_WAIT, linger_seconds=LINGER, max_items=MAX_ITEMS)


class _Wrapped:
    """The planner itself, told something else about the quota."""

    def __init__(self, allowance: Allowance) -> None:
        self._inner = right(allowance)

    def sent(self, now: float, batch: WaitingBatch) -> None:
        self._inner.sent(now, batch)

    def learned(self, now: float, remain_times: int, calls_in_flight: int = 0) -> None:
        self._inner.learned(now, remain_times, calls_in_flight)

    def observe_arrivals(self, now: float, images: int) -> None:
        self._inner.observe_arrivals(now, images)


class ThreeTimesTooFast(_Wrapped):
    """Paces the day as if a third of it were left whenever it looks: it spends about 3x too fast."""

    def plan(self, now: float, waiting: Sequence[WaitingBatch], quota: QuotaView) -> Decision:
        return self._inner.plan(now, waiting, replace(quota, seconds_until_reset=quota.seconds_until_reset / 3))


class IgnoresItsShare(_Wrapped):
    """Paces by the account's whole budget, as if it were the only replica."""

    def plan(self, now: float, waiting: Sequence[WaitingBatch], quota: QuotaView) -> Decision:
        return self._inner.plan(now, waiting, replace(quota, share=1.0))


class NoPacing:
    """Full batches, then partial ones after the linger, while a call above the reserve is left."""

    def __init__(self, allowance: Allowance) -> None:
        self._reserve = allowance.reserve()
        self._left = allowance.daily_calls
        self._last: float | None = None
        self._inner = right(allowance)

    def sent(self, now: float, batch: WaitingBatch) -> None:
        self._last = now

    def learned(self, now: float, remain_times: int, calls_in_flight: int = 0) -> None:
        self._left = remain_times - calls_in_flight

    def observe_arrivals(self, now: float, images: int) -> None:
        pass

    def plan(self, now: float, waiting: Sequence[WaitingBatch], quota: QuotaView) -> Decision:
        decision = self._inner.plan(now, [], quota)
        due = [batch for batch in waiting if batch.full or now - batch.oldest_at >= LINGER]
        slot = self._last is None or now - self._last >= 1 / quota.qps
        if due and slot and self._left - self._reserve >= 1:
            return replace(decision, send=min(due, key=lambda batch: batch.oldest_at), why=Why.FULL)
        return replace(decision, send=None, next_check_seconds=LINGER)


@dataclass(frozen=True)
class Day:
    calls: int
    collections: int
    replicas: int
    gap: float
    """Seconds between events; an event brings ``images`` to the next collection, round the replicas."""
    images: int
    seed: int


@dataclass
class Spending:
    sends: list[float]
    """When each of the account's calls was made."""
    lowest_left: int
    spendable: int


def spend_a_day(day: Day, make: Make) -> Spending:
    """One budget day of the trickle through ``day.replicas`` planners on one account (the reset at the end of
    it). Each replica batches its own events (one open batch per collection) and learns the calls left only from
    the answers to its own calls."""
    allowance = Allowance(AllowanceKind.DAILY, daily_calls=day.calls, reserve_fraction=0.1)
    planners = [make(allowance) for _ in range(day.replicas)]
    batches: list[dict[int, WaitingBatch]] = [{} for _ in planners]
    open_by: list[dict[str, int]] = [{} for _ in planners]
    rng = random.Random(day.seed)
    left, key, now, event = day.calls, 0, 0.0, 0
    sends: list[float] = []
    lowest = left
    next_event = rng.random() * day.gap
    wakes: list[float] = [0.0 for _ in planners]
    while now < DAY_SECONDS - 1e-6:
        while next_event <= now:
            replica, collection = (event // day.collections) % day.replicas, f"c{event % day.collections}"
            event += 1
            opened = open_by[replica].get(collection)
            if opened is None:
                key += 1
                opened = key
                batches[replica][key] = WaitingBatch(key, collection, 0, next_event, False)
                open_by[replica][collection] = key
            batch = batches[replica][opened]
            items = batch.items + day.images
            batches[replica][opened] = replace(batch, items=min(items, MAX_ITEMS), full=items >= MAX_ITEMS)
            if items >= MAX_ITEMS:
                del open_by[replica][collection]
            planners[replica].observe_arrivals(now, day.images)
            next_event += day.gap * (0.5 + rng.random())
        for number, planner in enumerate(planners):
            quota = QuotaView(DAY_SECONDS - now, QPS / day.replicas, exhausted=left <= 0, share=1 / day.replicas)
            while (decision := planner.plan(now, list(batches[number].values()), quota)).send is not None:
                sent = decision.send
                del batches[number][sent.key]
                if open_by[number].get(sent.collection) == sent.key:
                    del open_by[number][sent.collection]
                left -= 1
                lowest = min(lowest, left)
                sends.append(now)
                planner.sent(now, sent)
                planner.learned(now, left)
            check = decision.next_check_seconds
            wakes[number] = now + max(1e-3, check) if check is not None else math.inf
        now = min(next_event, DAY_SECONDS, now + 600.0, *wakes)
    return Spending(sends, lowest, day.calls - allowance.reserve())


def days() -> st.SearchStrategy[Day]:
    """Days that fit at full batches (with room to spare) but not at the linger: the pace decides."""

    @st.composite
    def build(draw: st.DrawFn) -> Day:
        collections = draw(st.integers(1, 4))
        gap = draw(st.sampled_from([300.0, 600.0]))
        images = draw(st.integers(1, 10))
        events = DAY_SECONDS / gap
        full_calls = math.ceil(events * images / MAX_ITEMS) + collections
        calls = draw(st.integers(2 * full_calls + 40, 4 * full_calls + 80))
        calls = min(calls, int(events * 0.6))  # each event its own call would need more
        calls = max(calls, math.ceil((2 * full_calls + 20) / 0.9))
        return Day(calls, collections, draw(st.sampled_from([1, 2, 4])), gap, images, draw(st.integers(0, 1000)))

    return build()


def check_paced(spending: Spending) -> None:
    """By any moment of the day, the account spent about the share of its spendable calls that the day has
    gone by (a trickle as steady as this one), at most half as much again and a few calls more."""
    slack = max(4.0, 0.05 * spending.spendable)
    for index, at in enumerate(spending.sends):
        assert index + 1 <= 1.5 * spending.spendable * at / DAY_SECONDS + slack, (
            f"call {index + 1} of {spending.spendable} spendable at {at / 3600:.1f} h"
        )


def check_reserve(spending: Spending, day: Day) -> None:
    reserve = Allowance(AllowanceKind.DAILY, daily_calls=day.calls, reserve_fraction=0.1).reserve()
    assert spending.lowest_left >= reserve


def check_spent(spending: Spending) -> None:
    """What would be lost at the reset is spent: at most a few calls left above the reserve."""
    assert len(spending.sends) >= spending.spendable - max(3, 0.02 * spending.spendable)


PACING = settings(max_examples=6, deadline=None)


@PACING
@given(days())
def test_the_account_spends_its_calls_as_the_day_goes(day: Day) -> None:
    check_paced(spend_a_day(day, right))


@PACING
@given(days())
def test_replicas_never_touch_the_reserve_and_spend_what_the_reset_would_take(day: Day) -> None:
    spending = spend_a_day(day, right)
    check_reserve(spending, day)
    check_spent(spending)


WRONG_DAY = Day(calls=100, collections=4, replicas=1, gap=120.0, images=2, seed=7)


@pytest.mark.parametrize(
    ("make", "day"),
    [
        pytest.param(ThreeTimesTooFast, WRONG_DAY, id="3x too fast"),
        pytest.param(IgnoresItsShare, replace(WRONG_DAY, replicas=4), id="ignores its share"),
        pytest.param(NoPacing, WRONG_DAY, id="no pacing"),
    ],
)
def test_the_properties_catch_a_wrong_planner(make: Make, day: Day) -> None:
    check_paced(spend_a_day(day, right))  # the same day passes with the planner itself
    with pytest.raises(AssertionError):
        check_paced(spend_a_day(day, make))
