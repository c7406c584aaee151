"""Each replica's part of the spendable calls follows its demand (issue 22, point 1; decision 0023).

``demand_fraction`` alone: a member needing 90 % of the calls at the account's wait gets about 90 %, not 1/N;
every member's part adds up to 1; a member needing nothing keeps a floor. Then a whole day of two replicas on
one account, one batching 9 collections and the other 1 (each reading the other's need a second late, as on the
budget topic): the first spends about 9 calls in 10, and a planner held to 1/N (the need ignored) fails the same
check.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from hypothesis import given, settings
from hypothesis import strategies as st

from service.budget import DAY_SECONDS, Allowance, AllowanceKind, CallPlanner, QuotaView, WaitingBatch
from service.budget.demand import FLOOR, NEED_WAITS, NeedSmoother, demand_fraction
from service.budget.shared import SharedPlanner, SharedSpend

WIDTH = len(NEED_WAITS)


def falling(scale: float) -> list[float]:
    """A need that falls with the wait, as a forecast's calls do, ``scale`` times a reference one."""
    return [scale * (300.0 / (1 + index) + 20.0) for index in range(WIDTH)]


def test_a_member_needing_nine_tenths_of_the_calls_gets_nine_tenths() -> None:
    busy, idle = falling(9.0), falling(1.0)
    for spendable in (50.0, 500.0, 5_000.0):
        assert math.isclose(demand_fraction(busy, [idle], spendable), 0.9, abs_tol=1e-9)
        assert math.isclose(demand_fraction(idle, [busy], spendable), 0.1, abs_tol=1e-9)


def test_equal_needs_share_evenly_and_alone_takes_everything() -> None:
    need = falling(1.0)
    assert math.isclose(demand_fraction(need, [need, need, need], 900.0), 0.25)
    assert demand_fraction(need, [], 900.0) == 1.0


def test_the_share_is_taken_at_the_accounts_wait() -> None:
    """At a short wait the small collection's calls weigh as much as the big one's; at full batches only the
    images count: which one applies depends on the calls the account has."""
    big = [100.0] * (WIDTH - 1) + [90.0]  # busy: nearly every call a full batch
    small = [100.0] + [100.0 / (2 + index) for index in range(WIDTH - 2)] + [10.0]
    assert math.isclose(demand_fraction(big, [small], 10_000.0), 0.5)
    assert math.isclose(demand_fraction(big, [small], 100.0), 0.9)


def test_a_member_needing_nothing_keeps_a_floor() -> None:
    nothing = [0.0] * WIDTH
    assert math.isclose(demand_fraction(nothing, [falling(1.0)], 900.0), FLOOR / (1 + FLOOR))
    assert demand_fraction(nothing, [nothing], 900.0) == 0.5


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.floats(0, 1_000), min_size=WIDTH, max_size=WIDTH), min_size=2, max_size=6),
    st.floats(0, 5_000),
)
def test_every_members_part_adds_up_to_one(needs: list[list[float]], spendable: float) -> None:
    needs = [sorted(need, reverse=True) for need in needs]  # calls fall as the wait grows
    parts = [demand_fraction(need, needs[:index] + needs[index + 1 :], spendable) for index, need in enumerate(needs)]
    assert math.isclose(sum(parts), 1.0, rel_tol=1e-9)
    assert all(part >= min(FLOOR, 0.5 / len(needs)) / (1 + len(needs) * FLOOR) for part in parts)


def test_a_smoothed_need_moves_a_little_with_a_burst_and_starts_over_each_day() -> None:
    smoother = NeedSmoother(600.0)
    assert smoother.update(0.0, [100.0]) == [100.0]
    assert 100.0 < smoother.update(60.0, [200.0])[0] < 115.0
    smoother.start_day()
    assert smoother.update(120.0, [10.0]) == [10.0]


# ---- a day of two replicas, one owning 9 collections, the other 1 -----------------------------------------------

MAX_ITEMS = 50
DELAY = 1.0


@dataclass
class Board:
    """The budget topic's needs in memory: each member reads the others' a second after they were published."""

    now: float = 0.0
    published: dict[str, list[tuple[float, list[float]]]] = field(default_factory=dict)


class Member:
    def __init__(self, board: Board, name: str) -> None:
        self._board, self._name = board, name

    def others(self) -> int:
        return 0  # every replica learns the calls left from the answers here

    def may_start(self, started: int) -> bool:
        return True

    def started(self, started: int, state: object) -> None:
        pass

    def restored(self) -> tuple[int, dict[str, object] | None, bool]:
        return 0, None, False

    def need(self, calls: Sequence[float]) -> None:
        published = self._board.published.setdefault(self._name, [])
        published[:] = [*published[-3:], (self._board.now, list(calls))]

    def needs(self) -> list[Sequence[float]]:
        seen: list[Sequence[float]] = []
        for member, needs in self._board.published.items():
            visible = [need for at, need in needs if at <= self._board.now - DELAY]
            if member != self._name and visible:
                seen.append(visible[-1])
        return seen


class IgnoresDemand(SharedPlanner):
    """Reads the others' needs but paces by 1/N of the calls, as before decision 0023."""

    def _by_demand(self, spend: SharedSpend, quota: QuotaView) -> QuotaView:
        return replace(super()._by_demand(spend, quota), spend_share=None)


def owners_day(make: type[SharedPlanner], seed: int = 5) -> list[int]:
    """One budget day of 300 calls (10 % reserve) for two replicas: events every 60 s on average, 2 images each,
    to 10 equally busy collections, 9 of them batched by replica 0 and 1 by replica 1. Returns each one's calls."""
    allowance = Allowance(AllowanceKind.DAILY, daily_calls=300, reserve_fraction=0.1)
    board = Board()
    planners = [
        make(CallPlanner(allowance, max_wait_seconds=600.0, linger_seconds=2.0, max_items=MAX_ITEMS),
             Member(board, f"m{number}"))
        for number in range(2)
    ]  # fmt: skip
    waiting: list[dict[str, WaitingBatch]] = [{}, {}]
    calls, left, key = [0, 0], 300, 0
    rng = random.Random(seed)
    now, next_event = 0.0, 0.0
    wakes = [0.0, 0.0]
    while now < DAY_SECONDS - 1e-6:
        board.now = now
        while next_event <= now:
            collection = rng.randrange(10)
            owner = 0 if collection < 9 else 1
            batch = waiting[owner].get(f"c{collection}")
            key += 1
            items = 2 + (batch.items if batch else 0)
            oldest = batch.oldest_at if batch else next_event
            waiting[owner][f"c{collection}"] = WaitingBatch(
                batch.key if batch else key, f"c{collection}", items, oldest, items >= MAX_ITEMS
            )
            planners[owner].observe_arrivals(now, 2)
            next_event += rng.expovariate(1 / 60.0)
        for number, planner in enumerate(planners):
            quota = QuotaView(DAY_SECONDS - now, 1.0, exhausted=left <= 0, share=0.5)
            while (decision := planner.plan(now, list(waiting[number].values()), quota)).send is not None:
                del waiting[number][decision.send.collection]
                left -= 1
                calls[number] += 1
                planner.sent(now, decision.send)
                planner.learned(now, left)
            check = decision.next_check_seconds
            wakes[number] = now + max(1e-3, check) if check is not None else math.inf
        now = min(next_event, DAY_SECONDS, now + 60.0, *wakes)
    return calls


def check_by_demand(calls: list[int]) -> None:
    """The replica batching 9 of the 10 collections makes about 9 of every 10 calls."""
    assert calls[0] >= 0.8 * sum(calls), f"calls by replica: {calls}"


def test_the_replica_owning_most_of_the_demand_spends_most_of_the_calls() -> None:
    calls = owners_day(SharedPlanner)
    check_by_demand(calls)
    assert sum(calls) >= 260, "the day's spendable calls are spent"


def test_the_check_catches_a_planner_that_ignores_demand() -> None:
    try:
        check_by_demand(owners_day(IgnoresDemand))
    except AssertionError:
        return
    raise AssertionError("a planner held to 1/N passed the check")
