"""Which waiting batch may go now: the account's calls spent like money until the reset (issue 13, points 2-3).

Pure: no I/O, no clock of its own; every call passes ``now`` (seconds on the pipeline's monotonic clock) and
the quota's view of the day. Single-threaded: the poll loop owns it, as it owns the batcher.

The rules:

- **Spendable** = calls left (the last ``remainTimes``, less what was spent since; before the first answer of
  the day, the allowance's ``daily_calls`` less what was spent), capped for a pack by what its daily spending
  limit still allows, less the **reserve**. Below one spendable call nothing goes until the reset, exactly as
  if the quota were spent, and the decision says why (``Why.RESERVE_ONLY``).
- **Full batches** go as the QPS allows while a spendable call exists.
- **Partial batches** go only after the linger, and only when the budget has a call for them:
  - a daily allowance first keeps the calls that the images waiting and the rest of the day's expected ones
    would need at full batches (``needed``). The rest are **spare**: what partial calls may waste. A partial
    batch of n images wastes 1 - n/200 of a call (its images were counted in ``needed``), so spare calls
    accrue along the arrival curve (``ArrivalCurve``) over the rest of the budget day, and a partial batch
    goes when its waste has accrued. What nothing used (no partial batch was waiting) stays spare and
    raises the pace for the rest of the day; in the day's last ``FINISH_SECONDS`` every spendable call is free
    to go, since a daily call not spent by the reset is lost.
  - a pack sends a partial batch when its oldest image is about to reach the max wait: as few calls as the
    latency target allows. A pack with a daily spending limit also paces those calls like a daily allowance.
- **Order**: among the batches that may go, a partial one whose oldest image waited longer than the max wait
  first (oldest first), then full batches, then partial ones by most images (oldest first on a tie). Full
  batches always may go; partial ones get the budget's calls strictly in that order, so a cheaper (fuller)
  batch never takes the call a batch past the max wait is waiting for.
- **Replicas**: the calls left are the account's, but each replica expects only its own partitions' images;
  it paces its partial batches by its share of the spendable calls (``QuotaView.share``), so replicas together
  spend the spare calls once. Full batches and the reserve go by the account's whole count.
- When the budget holds an image past the max wait, the decision says so (``budget_limited``) with the wait it
  projects, for a metric and an alert: the budget wins over the max wait.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from service.budget.allowance import Allowance, AllowanceKind
from service.budget.curve import ArrivalCurve
from service.budget.day import BudgetDay
from service.budget.pace import SparePace
from service.budget.rules import BatchRules, WaitingBatch, Why

__all__ = ["BudgetSnapshot", "CallPlanner", "Decision", "QuotaView", "WaitingBatch", "Why"]


@dataclass(frozen=True, slots=True)
class QuotaView:
    """The account's quota as the pipeline sees it this turn."""

    seconds_until_reset: float
    """Until the next daily reset (``next_reset``), not until the quota gate's next probe."""
    qps: float
    """The QPS this replica may use now (its share of the account's)."""
    exhausted: bool = False
    """The quota gate is closed (10040, ``remainTimes`` 0): nothing goes."""
    share: float = 1.0
    """This replica's part of the account's spare calls (its fraction of the input partitions; 1 alone). The
    calls left are the account's (``remainTimes``), but the images this replica expects are only its own: each
    of several replicas pacing partial batches by every spare call would spend them that many times over."""


@dataclass(frozen=True, slots=True)
class BudgetSnapshot:
    """The budget this turn, for metrics (``math.inf`` when unlimited)."""

    calls_left: float
    reserve: int
    spendable: float
    needed: float
    """Calls the images waiting and the rest of the day's expected ones need at full batches: above
    ``spendable``, today's volume will not fit today's allowance (an alert)."""
    partial_calls_per_hour: float
    """The pace at which the budget gives partial batches calls right now (a pack without a limit: inf)."""
    spent_today: int


@dataclass(frozen=True, slots=True)
class Decision:
    send: WaitingBatch | None
    """The batch to hand to the call step now; None: nothing goes this turn."""
    why: Why
    projected_wait_seconds: float
    """The longest wait an image now waiting is projected to have, oldest image of each batch (0: none)."""
    budget_limited: bool
    """The budget holds an image past the max wait (the budget wins): a metric and an alert."""
    next_check_seconds: float | None
    """Nothing changes before this unless something arrives, is sent or is learned (None: only then)."""
    budget: BudgetSnapshot


_SLOT_TOLERANCE = 1e-9
"""Seconds: times a spacing apart are compared through sums of floats (3598.0 + 2.0 against 3599.9999999999995)."""


class CallPlanner:
    """Chooses which waiting batch may spend one of the account's calls now, by the rules above.

    What the day has spent and may still spend is the ``BudgetDay``'s, how fast spare calls free up for partial
    batches is the ``SparePace``'s; this weighs them against the batches themselves (full or not, their age
    against the linger and the max wait, the QPS slots) and says why, for metrics.
    """

    def __init__(
        self,
        allowance: Allowance,
        *,
        max_wait_seconds: float,
        linger_seconds: float,
        curve: ArrivalCurve | None = None,
        max_items: int = 200,
        burst_calls: float = 1.0,
    ) -> None:
        """``burst_calls``: how many spare calls may accrue while no partial batch waits (at least one)."""
        if max_wait_seconds < linger_seconds:
            raise ValueError("the max wait cannot be shorter than the linger")
        if burst_calls < 1 or max_items < 1:
            raise ValueError("burst_calls and max_items must be at least 1")
        self._allowance = allowance
        self._rules = BatchRules(
            max_wait_seconds, linger_seconds, max_items, latency_paced=allowance.kind is AllowanceKind.PACK
        )
        curve = curve if curve is not None else ArrivalCurve()
        self._curve = curve
        self._share: float | None = None
        """The share of the input the curve was learned for (``QuotaView.share``)."""
        self._day = BudgetDay(allowance, curve)
        self._pace = SparePace(self._day, curve, burst_calls=burst_calls, max_items=max_items)
        self._last_call_at: float | None = None

    # ---- what the pipeline tells the planner -------------------------------------------------------------

    def observe_arrivals(self, now: float, images: int) -> None:
        """New images joined the batcher (not retries): they teach the arrival curve."""
        self._roll(now)
        self._day.arrived(now, images)

    def sent(self, now: float, batch: WaitingBatch) -> None:
        """The batch a decision named was handed to the call step: its first call starts now."""
        self._roll(now)
        self._day.count_calls(1)
        self._last_call_at = now
        self._pace.spend(self._rules.waste(batch))

    def spent(self, now: float, calls: int) -> None:
        """Calls made beyond each batch's first (a call's retries): they cost the budget too."""
        self._roll(now)
        self._day.count_calls(calls)

    def learned(self, now: float, remain_times: int, calls_in_flight: int = 0) -> None:
        """An answer's ``remainTimes`` (-1: unlimited); ``calls_in_flight``: other calls still under way, whose
        charge the answer may not include yet."""
        self._roll(now)
        self._day.learned(remain_times, calls_in_flight)

    def _roll(self, now: float) -> None:
        """Past the reset the day ends, and with it the spare calls accrued for it."""
        self._pace.start_day(self._day.roll(now))

    # ---- the decision -------------------------------------------------------------------------------------

    def plan(self, now: float, waiting: Sequence[WaitingBatch], quota: QuotaView) -> Decision:
        """Which waiting batch goes now, if any. Call it every turn, and again after each ``sent``."""
        self._pace.start_day(self._day.anchor(now, quota.seconds_until_reset))
        until_reset = max(0.0, quota.seconds_until_reset)
        self._follow_share(quota.share)
        spendable = self._day.spendable
        mine = spendable * quota.share if quota.share < 1 and not math.isinf(spendable) else spendable
        needed = self._needed(waiting)
        spare = mine - needed
        if self._paced():
            self._pace.accrue(now, spare, needed, everything=spendable)  # the last minutes: the account's all
        budget = self._snapshot(now, spendable, needed, spare)
        if quota.exhausted or spendable < 1:
            return self._held_until_reset(now, waiting, quota, budget)

        may_go = self._may_go(now, waiting, quota.qps)
        next_slot = 0.0 if self._last_call_at is None else max(0.0, self._last_call_at + 1.0 / quota.qps - now)
        projected, limited = self._project(
            now, waiting, qps=quota.qps, next_slot=next_slot, spendable=mine, until_reset=until_reset
        )
        if may_go:
            if next_slot > _SLOT_TOLERANCE:  # a slot due within float error of now is due
                return Decision(None, Why.QPS, projected, limited, next_slot, budget)
            chosen = min(may_go, key=self._rules.ranking(now))
            return Decision(chosen, self._rules.why_sent(now, chosen), projected, limited, 0.0, budget)
        if not waiting:
            return Decision(None, Why.NOTHING_WAITING, 0.0, False, None, budget)
        wake = self._wake(now, waiting, qps=quota.qps, spendable=mine, until_reset=until_reset)
        young = all(now - batch.oldest_at < self._rules.linger for batch in waiting)
        why = Why.LINGER if young else Why.LATENCY_TARGET if self._rules.latency_paced else Why.BUDGET
        return Decision(None, why, projected, limited, max(wake, next_slot), budget)

    def _follow_share(self, share: float) -> None:
        """When a rebalance changes this replica's share of the input, what it learned to expect changes with it
        (delists spread evenly over partitions): otherwise a replica that learned alone would, once halved,
        expect every image of the account against half of its calls."""
        if share <= 0:
            return
        if self._share is not None and share != self._share:
            self._curve.scale(share / self._share)
        self._share = share

    def _held_until_reset(
        self, now: float, waiting: Sequence[WaitingBatch], quota: QuotaView, budget: BudgetSnapshot
    ) -> Decision:
        """Nothing may be spent before the reset: exhausted, only the reserve left, or the day's limit reached."""
        until_reset = max(0.0, quota.seconds_until_reset)
        if quota.exhausted:
            why = Why.QUOTA_EXHAUSTED
        elif self._day.spend_limit_reached:
            why = Why.SPEND_LIMIT
        else:
            why = Why.RESERVE_ONLY if budget.calls_left >= 1 else Why.QUOTA_EXHAUSTED
        oldest = max((now - batch.oldest_at for batch in waiting), default=None)
        if oldest is None:
            return Decision(None, why, 0.0, False, until_reset, budget)
        projected = oldest + until_reset
        return Decision(None, why, projected, projected > self._rules.max_wait, until_reset, budget)

    def _paced(self) -> bool:
        """Whether partial calls need spare calls accrued (a daily allowance, or a pack with a limit)."""
        return self._allowance.kind is AllowanceKind.DAILY or self._day.has_spend_limit

    def _may_go(self, now: float, waiting: Sequence[WaitingBatch], qps: float) -> list[WaitingBatch]:
        """Full batches, and the partial ones the budget gives a call now. A paced budget serves partial
        batches strictly in rank order: the first waits for its waste to accrue and nothing cheaper passes it,
        so a small batch past the max wait is not starved by fuller ones."""
        full = [batch for batch in waiting if batch.full]
        rules = self._rules
        due = [batch for batch in waiting if rules.partial_due(now, batch, waiting, qps)]
        due.sort(key=rules.ranking(now))
        if not self._paced():
            return full + due
        if due and self._pace.covers(self._rules.waste(due[0])):
            return [*full, due[0]]
        return full

    def _wake(
        self, now: float, waiting: Sequence[WaitingBatch], *, qps: float, spendable: float, until_reset: float
    ) -> float:
        """Seconds until a partial batch may go, if nothing else changes: the first in rank order when its waste
        has accrued, or sooner when another one becomes due (it may rank first)."""
        times: list[float] = []
        due: list[WaitingBatch] = []
        for batch in waiting:
            if batch.full:
                continue
            if self._rules.partial_due(now, batch, waiting, qps):
                due.append(batch)
                continue
            age = now - batch.oldest_at
            until_due = self._rules.linger - age
            if self._rules.latency_paced:
                until_due = max(until_due, self._rules.max_wait - self._rules.latency_lead(waiting, qps) - age)
            times.append(until_due)
        if due and self._paced():
            first = min(due, key=self._rules.ranking(now))
            needed = self._needed(waiting)
            times.append(self._pace.seconds_until(now, self._rules.waste(first), spendable, needed, until_reset))
        return max(0.0, min(times, default=until_reset))

    # ---- what the budget means for the images waiting ------------------------------------------------------

    def _needed(self, waiting: Sequence[WaitingBatch]) -> float:
        """Calls the images now waiting and the rest of the day's expected ones need at full batches."""
        images = float(sum(batch.items for batch in waiting)) + self._day.expected_images_left()
        return images / self._rules.max_items

    def _project(
        self,
        now: float,
        waiting: Sequence[WaitingBatch],
        *,
        qps: float,
        next_slot: float,
        spendable: float,
        until_reset: float,
    ) -> tuple[float, bool]:
        """The longest projected wait of an image now waiting, and whether the budget makes it pass the max
        wait: batches in the order they would go, one QPS slot apart, partial ones each needing their waste
        in spare calls (or their max wait, for a pack)."""
        if not waiting:
            return 0.0, False
        needed = self._needed(waiting)
        worst, limited = 0.0, False
        waste = 0.0
        for slot, batch in enumerate(sorted(waiting, key=self._rules.ranking(now))):
            age = now - batch.oldest_at
            start = next_slot + slot / qps
            if not batch.full:
                waste += self._rules.waste(batch)
                budget_start = max(0.0, self._rules.linger - age)
                if self._rules.latency_paced:
                    lead = self._rules.latency_lead(waiting, qps)
                    budget_start = max(budget_start, self._rules.max_wait - lead - age)
                if self._paced():
                    budget_start = max(
                        budget_start, self._pace.seconds_until(now, waste, spendable, needed, until_reset)
                    )
                if age + budget_start > self._rules.max_wait:
                    limited = True
                start = max(start, budget_start)
            worst = max(worst, age + start)
        return worst, limited

    def _snapshot(self, now: float, spendable: float, needed: float, spare: float) -> BudgetSnapshot:
        pace = self._pace.calls_per_hour(now, spare) if self._paced() else math.inf
        day = self._day
        return BudgetSnapshot(day.calls_left, day.reserve, spendable, needed, pace, day.spent_today)
