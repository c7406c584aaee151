"""Which waiting batch may go now: the account's calls spent like money until the reset (issue 13, points 2-3;
the pace by a target wait, issue 22 point 2).

Pure: no I/O, no clock of its own; every call passes ``now`` (seconds on the pipeline's monotonic clock) and
the quota's view of the day. Single-threaded: the poll loop owns it, as it owns the batcher.

The rules:

- **Spendable** = calls left (the last ``remainTimes``, less what was spent since; before the first answer of
  the day, the allowance's ``daily_calls`` less what was spent), capped for a pack by what its daily spending
  limit still allows, less the **reserve**, less a **margin** of one call per other replica
  (``QuotaView.members``, or ``QuotaView.share`` below one), for their calls under way that no answer counted
  yet. Below one spendable call nothing goes until the reset, exactly as if the quota were spent, and the
  decision says why (``Why.RESERVE_ONLY``).
- **Full batches** go as the QPS allows while a spendable call exists.
- **Partial batches** go only after the linger, and only when the budget has a call for them:
  - a daily allowance paces them by a **target wait** (``WaitTarget``): the smallest max wait that this
    replica's calls can carry until the reset, counted per collection (each collection's batches go when full
    or when their oldest image waited the target), for the images waiting and those the arrival curve,
    corrected by what arrived today, still expects. A partial batch goes once its oldest image waited the
    target. The target is searched again every minute: calls not spent lower it, traffic above the forecast
    raises it, so the allowance lasts while the day fits and is spent by the reset. In the day's last minutes
    (``FINISH_SECONDS``, longer if the calls left need longer at the QPS) every partial batch may go, since a
    daily call not spent by the reset is lost.
  - a pack sends a partial batch when its oldest image is about to reach the max wait: as few calls as the
    latency target allows. A pack with a daily spending limit waits the longer of that and the target wait.
- **Order**: among the batches that may go, a partial one whose oldest image waited longer than the max wait
  (or the target, when shorter) first (oldest first), then full batches, then partial ones by most images
  (oldest first on a tie).
- **Replicas**: the calls left are the account's, but each replica sees only its own images; it paces its
  partial batches by its share of what the last answer left, less its own calls since that answer
  (``BudgetDay.spendable_by``): replicas reading counts of different ages still spend the account's calls once.
  The share is by demand when the budget topic tells it (``QuotaView.spend_share``: its need at the account's
  wait over every member's, ``service.budget.demand``, decision 0023), else its fraction of the input
  (``QuotaView.share``). Full batches and the reserve go by the account's whole count, less the margin.
- When the budget holds an image past the max wait, the decision says so (``budget_limited``) with the wait it
  projects, for a metric and an alert: the budget wins over the max wait.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from service.budget.allowance import Allowance, AllowanceKind
from service.budget.curve import DAY_SECONDS, ArrivalCurve
from service.budget.day import BudgetDay
from service.budget.rules import BatchRules, WaitingBatch, Why
from service.budget.saved import restore_state, saved_state
from service.budget.target import RECOMPUTE_SECONDS, WaitTarget

__all__ = ["FINISH_SECONDS", "BudgetSnapshot", "CallPlanner", "Decision", "QuotaView", "WaitingBatch", "Why"]


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
    spend_share: float | None = None
    """This replica's part of the account's spendable calls by demand (``service.budget.demand``, from every
    member's need on the budget topic); None: ``share``, its fraction of the input."""
    members: int = 1
    """With ``spend_share``: the members sharing the account (the margin keeps a call for each other one)."""


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
    target_wait_seconds: float = math.inf
    """The wait partial batches are paced by now: the budget's target (a pack without a limit: its max wait;
    inf: the calls carry only full batches)."""


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
FINISH_SECONDS = 120.0
"""In the day's last stretch every partial batch may go: this long at least, longer if the calls left need it."""


class CallPlanner:
    """Chooses which waiting batch may spend one of the account's calls now, by the rules above.

    What the day has spent and may still spend is the ``BudgetDay``'s, the wait that the calls left carry is
    the ``WaitTarget``'s; this weighs them against the batches themselves (full or not, their age against the
    linger, the target and the max wait, the QPS slots) and says why, for metrics."""

    def __init__(
        self,
        allowance: Allowance,
        *,
        max_wait_seconds: float,
        linger_seconds: float,
        curve: ArrivalCurve | None = None,
        max_items: int = 200,
    ) -> None:
        if max_wait_seconds < linger_seconds:
            raise ValueError("the max wait cannot be shorter than the linger")
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        self._allowance = allowance
        self._rules = BatchRules(
            max_wait_seconds, linger_seconds, max_items, latency_paced=allowance.kind is AllowanceKind.PACK
        )
        curve = curve if curve is not None else ArrivalCurve()
        self._curve = curve
        self._share: float | None = None
        """The share of the input the curve was learned for (``QuotaView.share``)."""
        self._day = BudgetDay(allowance, curve)
        self._target = WaitTarget(curve, max_items=max_items, linger=linger_seconds)
        self._last_call_at: float | None = None

    @property
    def day(self) -> BudgetDay:
        """The budget day: what this replica and (``others_today``) the other replicas spent, what is left."""
        return self._day

    def need(self) -> list[float]:
        return self._target.need()  # the calls the rest of the day would take at each wait (service.budget.demand)

    def may_start(self) -> bool:
        """Whether one more call may start whatever the plan (a drain): not past the day's spending limit."""
        return not self._day.spend_limit_reached

    def saved(self) -> dict[str, object]:
        """What restores this planner's pacing in a new process (``restore``): the curve, the target's counts."""
        return saved_state(self._curve, self._target, self._share)

    def restore(self, state: Mapping[str, object], *, same_day: bool) -> None:
        """Takes back what ``saved`` returned; ``same_day``: saved this budget day (else that day is folded in)."""
        self._share = restore_state(state, self._curve, self._target, same_day=same_day)

    # ---- what the pipeline tells the planner -------------------------------------------------------------

    def observe_arrivals(self, now: float, images: int) -> None:
        """New images joined the batcher (not retries): they teach the arrival curve and today's correction."""
        self._roll(now)
        self._day.arrived(now, images)
        self._target.correction.advance(self._day.position(now))
        self._target.arrived(images)

    def sent(self, now: float, batch: WaitingBatch) -> None:
        """The batch a decision named was handed to the call step: its first call starts now."""
        self._roll(now)
        self._day.count_calls(1)
        self._last_call_at = now
        self._target.sent(batch)

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
        """Past the reset the day ends, and with it today's correction."""
        self._start_day(self._day.roll(now))

    def _start_day(self, started_at: float | None) -> None:
        if started_at is not None:
            self._target.start_day()

    # ---- the decision -------------------------------------------------------------------------------------

    def plan(self, now: float, waiting: Sequence[WaitingBatch], quota: QuotaView) -> Decision:
        """Which waiting batch goes now, if any. Call it every turn, and again after each ``sent``."""
        self._start_day(self._day.anchor(now, quota.seconds_until_reset))
        until_reset = max(0.0, quota.seconds_until_reset)
        self._follow_share(quota.share)
        share, margin = _spend_share(quota)
        spendable = self._day.spendable_less(margin)
        mine = self._day.spendable_by(share, margin)
        position = self._day.position(now)
        self._target.correction.advance(position)
        if self._paced() and self._target.due(now, position, mine):
            self._target.update(now, position, mine, waiting)
        wait = self._wait()
        finishing = self._finishing(position, mine, quota.qps)
        target = self._target if self._paced() else None
        budget = _snapshot(self._day, target, spendable=spendable, waiting=waiting, wait=wait, until_reset=until_reset)
        if quota.exhausted or spendable < 1:
            return self._held_until_reset(now, waiting, quota, budget)

        may_go = self._may_go(now, waiting, quota.qps, wait, finishing=finishing, mine=mine)
        next_slot = 0.0 if self._last_call_at is None else max(0.0, self._last_call_at + 1.0 / quota.qps - now)
        projected, limited = self._project(
            now, waiting, qps=quota.qps, next_slot=next_slot, wait=wait, position=position
        )
        if may_go:
            if next_slot > _SLOT_TOLERANCE:  # a slot due within float error of now is due
                return Decision(None, Why.QPS, projected, limited, next_slot, budget)
            chosen = min(may_go, key=self._rules.ranking(now, wait))
            return Decision(chosen, self._rules.why_sent(now, chosen), projected, limited, 0.0, budget)
        if not waiting:
            return Decision(None, Why.NOTHING_WAITING, 0.0, False, None, budget)
        wake = self._wake(now, waiting, qps=quota.qps, wait=wait, position=position, until_reset=until_reset)
        if self._paced() and mine < 1:  # no call for a partial batch until an answer, a call or a new target
            wake = max(wake, min(RECOMPUTE_SECONDS, until_reset))
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
        """Whether partial calls wait for the target wait (a daily allowance, or a pack with a limit)."""
        return self._allowance.kind is AllowanceKind.DAILY or self._day.has_spend_limit

    def _wait(self) -> float:
        """The wait partial batches are held to now (a pack's: its max wait, longer if its limit needs it)."""
        if not self._paced():
            return self._rules.max_wait
        if not self._curve.knows_today:  # nothing learned, nothing watched yet: no forecast to pace by
            return max(self._rules.max_wait, self._target.wait)
        if self._rules.latency_paced:
            return max(self._rules.max_wait, self._target.wait)
        return self._target.wait

    def _finishing(self, position: float, mine: float, qps: float) -> bool:
        """The day's last stretch, when a daily allowance's calls would otherwise be lost: every partial batch
        may go (long enough for the calls left at the QPS, and at least ``FINISH_SECONDS``)."""
        if self._allowance.kind is not AllowanceKind.DAILY or math.isinf(mine):
            return False
        return position >= DAY_SECONDS - max(FINISH_SECONDS, 2.0 * mine / qps)

    def _threshold(self, batch_count: int, qps: float, wait: float) -> float:
        """The age at which a partial batch may go: the linger, the target wait, a pack's max wait less a QPS
        slot per batch waiting (so that the p99 stays within it)."""
        if self._rules.latency_paced:
            lead = batch_count / qps
            return max(self._rules.linger, self._rules.max_wait - lead, wait - lead if math.isfinite(wait) else wait)
        return max(self._rules.linger, wait)

    def _may_go(
        self, now: float, waiting: Sequence[WaitingBatch], qps: float, wait: float, *, finishing: bool, mine: float
    ) -> list[WaitingBatch]:
        """Full batches, and the partial ones whose oldest image waited the threshold (every one past the
        linger in the day's last stretch), while this replica's part of the calls has one for them."""
        full = [batch for batch in waiting if batch.full]
        if self._paced() and mine < 1:
            return full
        threshold = self._rules.linger if finishing else self._threshold(len(waiting), qps, wait)
        due = [batch for batch in waiting if not batch.full and now - batch.oldest_at >= threshold]
        return full + due

    def _wake(
        self,
        now: float,
        waiting: Sequence[WaitingBatch],
        *,
        qps: float,
        wait: float,
        position: float,
        until_reset: float,
    ) -> float:
        """Seconds until a partial batch may go, if nothing else changes: the oldest reaching its threshold, the
        target searched again, or the day's last stretch."""
        partial = [now - batch.oldest_at for batch in waiting if not batch.full]
        if not partial:
            return until_reset
        threshold = self._threshold(len(waiting), qps, wait)
        times = [max(0.0, threshold - max(partial))] if math.isfinite(threshold) else []
        if self._paced():
            times.append(60.0)  # the target moves as the day goes
        if self._allowance.kind is AllowanceKind.DAILY:
            times.append(max(0.0, DAY_SECONDS - FINISH_SECONDS - position))
        return max(0.0, min(times, default=until_reset))

    # ---- what the budget means for the images waiting ------------------------------------------------------

    def _project(
        self,
        now: float,
        waiting: Sequence[WaitingBatch],
        *,
        qps: float,
        next_slot: float,
        wait: float,
        position: float,
    ) -> tuple[float, bool]:
        """The longest projected wait of an image now waiting, and whether the budget makes it pass the max
        wait: batches in the order they would go, one QPS slot apart, partial ones at their threshold (the
        day's last stretch, if the calls carry only full batches)."""
        if not waiting:
            return 0.0, False
        threshold = self._threshold(len(waiting), qps, wait)
        if math.isinf(threshold):
            finish = max(0.0, DAY_SECONDS - FINISH_SECONDS - position)
        worst, limited = 0.0, False
        for slot, batch in enumerate(sorted(waiting, key=self._rules.ranking(now, wait))):
            age = now - batch.oldest_at
            start = next_slot + slot / qps
            if not batch.full:
                budget_start = max(0.0, threshold - age) if math.isfinite(threshold) else finish
                if age + budget_start > self._rules.max_wait and wait > self._rules.max_wait:
                    limited = True
                start = max(start, budget_start)
            worst = max(worst, age + start)
        return worst, limited


def _spend_share(quota: QuotaView) -> tuple[float, float]:
    """This replica's part of the spendable calls, and the margin for the other replicas' calls under way (one
    call each): by demand when the budget topic tells it, else by its fraction of the input."""
    if quota.spend_share is not None:
        share = min(1.0, max(0.0, quota.spend_share))
        return share, float(max(0, quota.members - 1))
    share = quota.share if 0 < quota.share < 1 else 1.0
    return share, float(max(0, round(1 / share) - 1))


def _snapshot(
    day: BudgetDay,
    target: WaitTarget | None,
    *,
    spendable: float,
    waiting: Sequence[WaitingBatch],
    wait: float,
    until_reset: float,
) -> BudgetSnapshot:
    """The budget this turn, for metrics; ``target`` None: not paced (a pack without a limit)."""
    if target is not None:
        needed = target.needed
        pace = target.partial_calls * 3600.0 / max(60.0, until_reset)
    else:
        needed = float(len(waiting))
        pace = math.inf
    return BudgetSnapshot(day.calls_left, day.reserve, max(0.0, spendable), needed, pace, day.spent_today, wait)
