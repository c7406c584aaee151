"""The budget day shared by replicas and kept across restarts: every member's spending, resolved the same way by
all of them (issue 20, point 2; docs/decisions/0021-budget-state-on-kafka.md).

Pure: no Kafka, no clock. The edge (``service.pipeline.budget_state``) writes this replica's records to the budget
topic and feeds every record it reads, in the topic's order, to ``AccountDay``.

- A **member** is a replica (its static group instance id, else its process id). Its record for an account says,
  for one budget day (``day``: the epoch second of the reset that ends it, the same on every replica), how many
  calls it started (``spent``) and how many it asks to be counted for (``claimed``, at least ``spent``).
- **A call is claimed before it starts** when the account has a daily cap (a pack's spending limit): the member
  writes a record claiming one more call and starts the call only once it has read its own record back and the
  record was granted. One partition orders every claim of every member, so every replica resolves them alike:
  in that order, a claim is granted when the day's counted calls (every member's, a dead member's too) plus it
  stay within the cap. So the cap holds for the account as a whole, and a SIGKILL loses nothing: a call is counted
  before it starts. What a retry of a call costs is counted after it (``spent``), always.
- Without a cap there is nothing to grant: records count the calls after they started (the margin is the calls of
  the last second before a SIGKILL, and only until the API's next ``remainTimes``).
- Each member also publishes its **need** (the calls the rest of its day would take at each wait of a ladder,
  smoothed) about once a minute, and its part of the spendable calls is its need over every live member's at the
  account's wait (``service.budget.demand``, docs/decisions/0023): the replica owning the busiest collections
  gets the calls they need, not a fixed ``1/N``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from service.budget.demand import NEED_SECONDS, NeedSmoother, demand_fraction
from service.budget.planner import CallPlanner, Decision, QuotaView
from service.budget.rules import WaitingBatch

__all__ = ["CLAIM_CHECK_SECONDS", "AccountDay", "Lease", "SharedPlanner", "SharedSpend", "SpendRecord"]

CLAIM_CHECK_SECONDS = 0.01
"""While a claim waits to be read back, the batch step looks again this soon (a claim takes a round trip)."""


@dataclass(frozen=True, slots=True)
class SpendRecord:
    """One member's spending of one budget day, as written on the budget topic (cumulative: a later record of the
    same member and day replaces the earlier, so a record written twice counts once)."""

    member: str
    day: int
    spent: int
    """Calls it started this day (retries included)."""
    claimed: int
    """Calls it asks to be counted for: ``spent`` and the ones it is about to start."""


class AccountDay:
    """One account's budget days as every member's records say, resolved in the topic's order.

    Every replica reads the same records in the same order, so every one counts the same calls for each member:
    a member's count is its calls started, and its claim on top when that claim fitted the cap when it was made.
    """

    def __init__(self, cap: float) -> None:
        self._cap = cap
        self._days: dict[int, dict[str, int]] = {}

    def heard(self, record: SpendRecord) -> bool:
        """A record, in the topic's order; returns whether its claim was granted (a record without a claim above
        what it spent: True)."""
        counted = self._days.setdefault(record.day, {})
        before = counted.get(record.member, 0)
        base = max(before, record.spent)
        if record.claimed > base and sum(counted.values()) - before + record.claimed <= self._cap:
            counted[record.member] = record.claimed
            return True
        counted[record.member] = base
        return record.claimed <= base

    def counted(self, day: int, member: str) -> int:
        return self._days.get(day, {}).get(member, 0)

    def total(self, day: int) -> int:
        """The account's calls of ``day``: every member's, those of members gone too."""
        return sum(self._days.get(day, {}).values())

    def members(self, day: int) -> int:
        return len(self._days.get(day, {}))

    def forget_before(self, day: int) -> None:
        """Past days count no more (their reset passed)."""
        for old in [known for known in self._days if known < day]:
            del self._days[old]


class Lease:
    """This member's side of the claims: whether a call may start, and the claim to write when none may."""

    def __init__(self, member: str, cap: float) -> None:
        self.member = member
        self.cap = cap
        self._asked: tuple[int, int] | None = None
        """(day, claimed) of the claim written and not yet read back."""

    @property
    def limited(self) -> bool:
        return math.isfinite(self.cap)

    @property
    def waiting(self) -> bool:
        """A claim is written and not yet read back."""
        return self._asked is not None

    def may_start(self, days: AccountDay, day: int, started: int) -> bool:
        """Whether one more call may start now: always without a cap; with one, while this member's granted claims
        exceed what it started."""
        return not self.limited or started < days.counted(day, self.member)

    def claim(self, days: AccountDay, day: int, started: int) -> SpendRecord | None:
        """The record claiming one more call; None while a claim waits, or when the cap leaves none today."""
        if self._asked is not None and self._asked[0] == day:
            return None
        counted = days.counted(day, self.member)
        base = max(started, counted)
        if days.total(day) - counted + base + 1 > self.cap:
            return None
        self._asked = (day, base + 1)
        return SpendRecord(self.member, day, started, base + 1)

    def read_back(self, record: SpendRecord) -> None:
        """A record of this member, read back: the claim waiting is answered (granted or not, ``AccountDay`` says)."""
        if self._asked is not None and record.member == self.member and (record.day, record.claimed) >= self._asked:
            self._asked = None

    def lost(self) -> None:
        """The claim's record could not be written: ask again (the same cumulative claim, so it counts once)."""
        self._asked = None


class SharedSpend(Protocol):
    """One account's budget records on the budget topic, as the planner's wrapper sees them (the Kafka edge)."""

    def others(self) -> int:
        """Calls of today counted for the other members (gone ones too)."""

    def may_start(self, started: int) -> bool:
        """Whether one more call may start; when not, a claim is written (never blocks)."""

    def started(self, started: int, state: Callable[[], dict[str, object]]) -> None:
        """This member's calls started today (and its planner's state, read when a record is written)."""

    def restored(self) -> tuple[int, dict[str, object] | None, bool]:
        """What this member left: its calls counted today, its planner's state, whether that state is today's."""

    def need(self, calls: Sequence[float]) -> None:
        """This member's need (calls at each wait of ``NEED_WAITS``), published for the others."""

    def needs(self) -> list[Sequence[float]]:
        """The other live members' latest needs of today, as published (a member gone publishes none)."""


class SharedPlanner:
    """The call planner of one account, counting every replica's calls of the day and saving its own state.

    The same interface as ``CallPlanner`` (what the batch step calls), plus ``may_start``: whether one more call
    may start now whatever the plan (draining passes the plan, never the cap). ``spend`` None: alone, as before.
    """

    def __init__(self, planner: CallPlanner, spend: SharedSpend | None) -> None:
        self._planner = planner
        self._spend = spend
        self._smoother = NeedSmoother()
        self._need: list[float] | None = None
        self._need_at = -math.inf
        self._fraction: tuple[list[Sequence[float]], float, float] = ([], -1.0, 1.0)
        """The last share computed, and what it was computed from: the needs (own first), the spendable calls."""
        self._position = 0.0
        """Where in the budget day the last need was looked at (less now: a new day)."""
        if spend is not None:
            counted, state, today = spend.restored()
            planner.day.spent_today, planner.day.others_today = counted, spend.others()
            if state is not None:
                planner.restore(state, same_day=today)

    @property
    def planner(self) -> CallPlanner:
        return self._planner

    def _told(self) -> None:
        if self._spend is not None:
            self._spend.started(self._planner.day.spent_today, self._planner.saved)

    def observe_arrivals(self, now: float, images: int) -> None:
        self._planner.observe_arrivals(now, images)

    def sent(self, now: float, batch: WaitingBatch) -> None:
        self._planner.sent(now, batch)
        self._told()

    def spent(self, now: float, calls: int) -> None:
        self._planner.spent(now, calls)
        self._told()

    def learned(self, now: float, remain_times: int, calls_in_flight: int = 0) -> None:
        self._planner.learned(now, remain_times, calls_in_flight)

    def may_start(self) -> bool:
        day = self._planner.day
        if self._spend is not None:
            day.others_today = self._spend.others()
        if day.spend_limit_reached:
            return False
        return self._spend is None or self._spend.may_start(day.spent_today)

    def plan(self, now: float, waiting: Sequence[WaitingBatch], quota: QuotaView) -> Decision:
        """The planner's decision, counting the other members' calls; a batch it names waits (a few ms) while
        this member's claim of its call is on its way."""
        if self._spend is None:
            return self._planner.plan(now, waiting, quota)
        self._planner.day.others_today = self._spend.others()
        decision = self._planner.plan(now, waiting, self._by_demand(self._spend, quota))
        self._publish_need(self._spend, now)
        self._told()
        if decision.send is not None and not self._spend.may_start(self._planner.day.spent_today):
            return replace(decision, send=None, next_check_seconds=CLAIM_CHECK_SECONDS)
        return decision

    def _by_demand(self, spend: SharedSpend, quota: QuotaView) -> QuotaView:
        """The quota with this member's part of the spendable calls by demand: its need read against the other
        members' (``service.budget.demand``). Without another member's need (alone, or the others publish none) or
        before its own first need, the quota as it came: the input's share."""
        others = spend.needs()
        if not others or self._need is None:
            return quota
        spendable = self._planner.day.spendable
        made_of = [self._need, *others]
        whole = math.floor(spendable) if math.isfinite(spendable) else spendable
        known, known_whole, fraction = self._fraction
        # the needs are the same objects until one is published or heard again: a new share only then
        if (
            whole != known_whole
            or len(known) != len(made_of)
            or any(a is not b for a, b in zip(known, made_of, strict=True))
        ):
            fraction = demand_fraction(self._need, others, spendable)
            self._fraction = (made_of, whole, fraction)
        return replace(quota, spend_share=fraction, members=len(made_of))

    def _publish_need(self, spend: SharedSpend, now: float) -> None:
        """This member's need, smoothed (starting over with each budget day), published about once a minute."""
        position = self._planner.day.position(now)
        if position < self._position:  # the reset passed
            self._smoother.start_day()
            self._need_at = -math.inf
        self._position = position
        if now - self._need_at >= NEED_SECONDS or now < self._need_at:
            self._need_at = now
            self._need = self._smoother.update(now, self._planner.need())
            spend.need(self._need)
