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
    need at full batches (``needed``); the spare calls are spread over the rest of the budget day along the
    arrival curve (``ArrivalCurve``): they accrue as the curve goes by, one partial call per accrued call.
    Calls not used (nothing was waiting) stay spare and raise the pace for the rest of the day.
  - a pack sends a partial batch when its oldest image is about to reach the max wait: as few calls as the
    latency target allows. A pack with a daily spending limit also paces those calls like a daily allowance.
- **Order**: a batch whose oldest image waited longer than the max wait first (oldest first), then full
  batches, then partial ones by most images (oldest first on a tie).
- When the budget holds an image past the max wait, the decision says so (``budget_limited``) with the wait it
  projects, for a metric and an alert: the budget wins over the max wait.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from service.budget.allowance import Allowance, AllowanceKind
from service.budget.curve import DAY_SECONDS, ArrivalCurve

__all__ = ["BudgetSnapshot", "CallPlanner", "Decision", "QuotaView", "WaitingBatch", "Why"]

WATCH_GAP_SECONDS = 900.0
"""Longer than this between two turns and the planner assumes the service was not watching arrivals."""


@dataclass(frozen=True, slots=True)
class WaitingBatch:
    """A batch in the batcher, as the planner sees it."""

    key: int
    """The batcher's identity of the batch (its sequence number): what the pipeline takes when it is chosen."""
    collection: str
    items: int
    oldest_at: float
    """When its oldest image joined (the batch's creation), on the planner's clock."""
    full: bool
    """Full by items or by bytes: nothing more fits."""


@dataclass(frozen=True, slots=True)
class QuotaView:
    """The account's quota as the pipeline sees it this turn."""

    seconds_until_reset: float
    """Until the next daily reset (``next_reset``), not until the quota gate's next probe."""
    qps: float
    """The QPS this replica may use now (its share of the account's)."""
    exhausted: bool = False
    """The quota gate is closed (10040, ``remainTimes`` 0): nothing goes."""


class Why(StrEnum):
    """Why a batch goes, or why nothing does (a bounded label set for metrics)."""

    FULL = "full"
    OVERDUE = "overdue"
    """A partial batch past the max wait, with a call from the budget."""
    PACED = "paced"
    """A partial batch with a call from the budget's pace (daily allowance)."""
    MAX_WAIT = "max_wait"
    """A pack's partial batch at its latency target."""
    NOTHING_WAITING = "nothing_waiting"
    LINGER = "linger"
    """Only partial batches younger than the linger."""
    BUDGET = "budget"
    """Partial batches wait for the budget's next call."""
    LATENCY_TARGET = "latency_target"
    """A pack's partial batches wait for their max wait (fewer calls)."""
    QPS = "qps"
    """A batch may go, at the next QPS slot."""
    RESERVE_ONLY = "reserve_only"
    """Only the reserve is left: waiting for the reset as if the quota were spent."""
    SPEND_LIMIT = "spend_limit"
    """A pack's daily spending limit is reached: waiting for the reset."""
    QUOTA_EXHAUSTED = "quota_exhausted"


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


class CallPlanner:
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
        """``burst_calls``: how many paced calls may accrue while no partial batch waits (at least one)."""
        if max_wait_seconds < linger_seconds:
            raise ValueError("the max wait cannot be shorter than the linger")
        if burst_calls < 1:
            raise ValueError("burst_calls must be at least 1")
        self._allowance = allowance
        self._max_wait = max_wait_seconds
        self._linger = linger_seconds
        self._curve = curve if curve is not None else ArrivalCurve()
        self._max_items = max_items
        self._burst = burst_calls
        self._reserve = allowance.reserve()
        self._day_cap = allowance.day_cap()
        self._resets_at: float | None = None
        self._seen_at: float | None = None
        self._unplaced_arrivals = 0
        self._spent_today = 0
        self._learned_left: int | None = None
        """Calls left per the last answer of this budget day, less the calls then under way (-1: unlimited)."""
        self._spent_since_learned = 0
        self._last_call_at: float | None = None
        self._tokens = 0.0
        self._paced_at: float | None = None

    # ---- what the pipeline tells the planner -------------------------------------------------------------

    def observe_arrivals(self, now: float, images: int) -> None:
        """New images joined the batcher (not retries): they teach the arrival curve."""
        if self._resets_at is None:
            self._unplaced_arrivals += images  # placed on the curve once a plan says where in the day we are
            return
        self._roll(now)
        self._curve.arrived(self._position(now), images)

    def sent(self, now: float, batch: WaitingBatch) -> None:
        """The batch a decision named was handed to the call step: its first call starts now."""
        self._roll(now)
        self._count_calls(1)
        self._last_call_at = now
        if not batch.full:
            self._tokens = max(0.0, self._tokens - 1)

    def spent(self, now: float, calls: int) -> None:
        """Calls made beyond each batch's first (a call's retries): they cost the budget too."""
        self._roll(now)
        self._count_calls(calls)

    def learned(self, now: float, remain_times: int, calls_in_flight: int = 0) -> None:
        """An answer's ``remainTimes`` (-1: unlimited); ``calls_in_flight``: other calls still under way, whose
        charge the answer may not include yet."""
        self._roll(now)
        self._learned_left = -1 if remain_times < 0 else max(0, remain_times - calls_in_flight)
        self._spent_since_learned = 0

    def _count_calls(self, calls: int) -> None:
        self._spent_today += calls
        self._spent_since_learned += calls

    # ---- the decision -------------------------------------------------------------------------------------

    def plan(self, now: float, waiting: Sequence[WaitingBatch], quota: QuotaView) -> Decision:
        """Which waiting batch goes now, if any. Call it every turn, and again after each ``sent``."""
        self._anchor(now, quota.seconds_until_reset)
        spendable = self._spendable()
        needed = self._needed(waiting)
        spare = spendable - needed
        self._accrue(now, spare)
        budget = self._snapshot(now, spendable, needed, spare)
        until_reset = max(0.0, quota.seconds_until_reset)
        if quota.exhausted or spendable < 1:
            return self._held_until_reset(now, waiting, quota, budget, spendable)

        may_go: list[WaitingBatch] = []
        held: list[WaitingBatch] = []
        for batch in waiting:
            (may_go if self._may_go(now, batch, waiting, quota.qps) else held).append(batch)
        next_slot = 0.0 if self._last_call_at is None else self._last_call_at + 1.0 / quota.qps - now
        projected, limited = self._project(
            now, waiting, qps=quota.qps, next_slot=max(0.0, next_slot), spare=spare, until_reset=until_reset
        )
        if may_go:
            chosen = min(may_go, key=lambda batch: self._rank(now, batch))
            if next_slot > 0:
                return Decision(None, Why.QPS, projected, limited, next_slot, budget)
            return Decision(chosen, self._why_sent(now, chosen), projected, limited, 0.0, budget)
        if not waiting:
            return Decision(None, Why.NOTHING_WAITING, 0.0, False, None, budget)
        wake = min(
            self._ready_in(now, batch, waiting, qps=quota.qps, spare=spare, until_reset=until_reset) for batch in held
        )
        young = all(now - batch.oldest_at < self._linger for batch in held)
        why = Why.LINGER if young else Why.LATENCY_TARGET if self._latency_paced() else Why.BUDGET
        return Decision(None, why, projected, limited, max(wake, next_slot, 0.0), budget)

    def _held_until_reset(
        self, now: float, waiting: Sequence[WaitingBatch], quota: QuotaView, budget: BudgetSnapshot, spendable: float
    ) -> Decision:
        until_reset = max(0.0, quota.seconds_until_reset)
        if quota.exhausted:
            why = Why.QUOTA_EXHAUSTED
        elif self._spent_today >= self._day_cap:
            why = Why.SPEND_LIMIT
        else:
            why = Why.RESERVE_ONLY if budget.calls_left >= 1 else Why.QUOTA_EXHAUSTED
        oldest = max((now - batch.oldest_at for batch in waiting), default=None)
        if oldest is None:
            return Decision(None, why, 0.0, False, until_reset, budget)
        projected = oldest + until_reset
        return Decision(None, why, projected, projected > self._max_wait, until_reset, budget)

    def _rank(self, now: float, batch: WaitingBatch) -> tuple[bool, bool, int, float]:
        overdue = not batch.full and now - batch.oldest_at > self._max_wait
        return (not overdue, not batch.full, -batch.items, batch.oldest_at)

    def _why_sent(self, now: float, batch: WaitingBatch) -> Why:
        if batch.full:
            return Why.FULL
        if now - batch.oldest_at > self._max_wait:
            return Why.OVERDUE
        return Why.MAX_WAIT if self._latency_paced() else Why.PACED

    def _latency_paced(self) -> bool:
        return self._allowance.kind is AllowanceKind.PACK

    def _paced(self) -> bool:
        """Whether partial calls need a call accrued by the pace (a daily allowance, or a pack with a limit)."""
        return self._allowance.kind is AllowanceKind.DAILY or math.isfinite(self._day_cap)

    def _latency_lead(self, waiting: Sequence[WaitingBatch], qps: float) -> float:
        """How early a pack's partial batch goes so that the QPS slots of the batches ahead fit in its max wait."""
        return len(waiting) / qps

    def _may_go(self, now: float, batch: WaitingBatch, waiting: Sequence[WaitingBatch], qps: float) -> bool:
        if batch.full:
            return True
        age = now - batch.oldest_at
        if age < self._linger:
            return False
        if self._latency_paced() and age < self._max_wait - self._latency_lead(waiting, qps):
            return False
        return not self._paced() or self._tokens >= 1

    def _ready_in(
        self,
        now: float,
        batch: WaitingBatch,
        waiting: Sequence[WaitingBatch],
        *,
        qps: float,
        spare: float,
        until_reset: float,
    ) -> float:
        """Seconds until a held partial batch may go, if nothing else changes."""
        age = now - batch.oldest_at
        wait = self._linger - age
        if self._latency_paced():
            wait = max(wait, self._max_wait - self._latency_lead(waiting, qps) - age)
        if self._paced():
            wait = max(wait, self._seconds_until_tokens(now, 1.0, spare, until_reset))
        return max(0.0, wait)

    # ---- the pace -----------------------------------------------------------------------------------------

    def _anchor(self, now: float, seconds_until_reset: float) -> None:
        """Where in the budget day ``now`` is, from the quota's time to the reset; rolls the day over."""
        resets_at = now + max(0.0, seconds_until_reset)
        if self._resets_at is None:
            self._resets_at = resets_at
            self._seen_at = now
            self._paced_at = now
            if self._unplaced_arrivals:
                self._curve.arrived(self._position(now), self._unplaced_arrivals)
                self._unplaced_arrivals = 0
            return
        if resets_at > self._resets_at + DAY_SECONDS / 2:  # the quota's reset moved on: a new budget day
            self._roll(max(now, self._resets_at))
        self._resets_at = resets_at
        self._roll(now)

    def _position(self, now: float) -> float:
        if self._resets_at is None:  # before the first plan: the start of a day
            return 0.0
        return min(DAY_SECONDS, max(0.0, DAY_SECONDS - (self._resets_at - now)))

    def _roll(self, now: float) -> None:
        """Notes the time watched; past the reset, ends the budget day: what was spent and learned is gone."""
        if self._resets_at is None:
            return
        if self._seen_at is not None and 0 <= now - self._seen_at <= WATCH_GAP_SECONDS:
            self._curve.watched(self._position(self._seen_at), self._position(min(now, self._resets_at)))
        self._seen_at = now
        if now < self._resets_at:
            return
        self._curve.end_day()
        while self._resets_at <= now:
            self._resets_at += DAY_SECONDS
        self._seen_at = now
        self._spent_today = 0
        self._learned_left = None
        self._spent_since_learned = 0
        self._tokens = 0.0
        self._paced_at = now

    def _calls_left(self) -> float:
        if self._learned_left is None:
            return float(max(0, self._allowance.daily_calls - self._spent_today))
        if self._learned_left < 0:
            return math.inf
        return float(max(0, self._learned_left - self._spent_since_learned))

    def _spendable(self) -> float:
        return max(0.0, min(self._calls_left() - self._reserve, self._day_cap - self._spent_today))

    def _needed(self, waiting: Sequence[WaitingBatch]) -> float:
        """Calls the images now waiting and the rest of the day's expected ones need, at full batches."""
        images = float(sum(batch.items for batch in waiting))
        if self._resets_at is not None:
            images += self._curve.expected_images(self._position(self._seen_at or 0.0), DAY_SECONDS)
        return images / self._max_items

    def _accrue(self, now: float, spare: float) -> None:
        """Paced calls accrue along the curve: the spare calls (those the rest of the day's images do not need
        at full batches) times the share of the curve's remainder that went by."""
        if self._paced_at is None or not self._paced():
            return
        if math.isinf(spare):
            self._tokens = self._burst
        else:
            done = self._curve.mass(self._position(self._paced_at))
            remaining = 1.0 - done
            passed = self._curve.mass(self._position(now)) - done
            if remaining > 0 and passed > 0 and spare > 0:
                self._tokens = min(self._burst, self._tokens + spare * passed / remaining)
        self._paced_at = now

    def _seconds_until_tokens(self, now: float, tokens: float, spare: float, until_reset: float) -> float:
        """When ``tokens`` paced calls will have accrued at today's spare calls (at the reset, if not before)."""
        missing = tokens - self._tokens
        if missing <= 0:
            return 0.0
        if spare <= 0:
            return until_reset
        if math.isinf(spare):
            return 0.0
        position = self._position(now)
        done = self._curve.mass(position)
        target = done + missing * (1.0 - done) / spare
        if target >= 1.0:
            return until_reset
        return min(until_reset, max(0.0, self._curve.position(target) - position))

    def _project(
        self,
        now: float,
        waiting: Sequence[WaitingBatch],
        *,
        qps: float,
        next_slot: float,
        spare: float,
        until_reset: float,
    ) -> tuple[float, bool]:
        """The longest projected wait of an image now waiting, and whether the budget makes it pass the max
        wait: batches in the order they would go, full ones one QPS slot apart, partial ones each needing
        their own paced call (or their max wait, for a pack)."""
        if not waiting:
            return 0.0, False
        worst, limited = 0.0, False
        partial_turn = 0
        for slot, batch in enumerate(sorted(waiting, key=lambda batch: self._rank(now, batch))):
            age = now - batch.oldest_at
            start = next_slot + slot / qps
            if not batch.full:
                partial_turn += 1
                budget_start = max(0.0, self._linger - age)
                if self._latency_paced():
                    budget_start = max(budget_start, self._max_wait - self._latency_lead(waiting, qps) - age)
                if self._paced():
                    budget_start = max(
                        budget_start, self._seconds_until_tokens(now, float(partial_turn), spare, until_reset)
                    )
                if age + budget_start > self._max_wait:
                    limited = True
                start = max(start, budget_start)
            worst = max(worst, age + start)
        return worst, limited

    def _snapshot(self, now: float, spendable: float, needed: float, spare: float) -> BudgetSnapshot:
        if not self._paced() or math.isinf(spare):
            pace = math.inf
        else:
            position = self._position(now)
            done = self._curve.mass(position)
            ahead = min(DAY_SECONDS, position + 3600.0)
            share = (self._curve.mass(ahead) - done) / (1.0 - done) if done < 1 else 1.0
            pace = max(0.0, spare) * share * 3600.0 / max(1.0, ahead - position)
        return BudgetSnapshot(self._calls_left(), self._reserve, spendable, needed, pace, self._spent_today)
