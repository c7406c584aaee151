"""The budget day: where between two resets the pipeline is, and what that day has spent and learned.

Pure, like the planner that owns it: every call passes ``now`` on the pipeline's monotonic clock. The quota says
how long until the reset; this turns it into a position in the day (for the arrival curve) and forgets the day's
spending at the reset, so the planner only asks what may still be spent today.
"""

from __future__ import annotations

import math

from service.budget.allowance import Allowance, AllowanceKind
from service.budget.curve import DAY_SECONDS, ArrivalCurve

__all__ = ["WATCH_GAP_SECONDS", "BudgetDay"]

WATCH_GAP_SECONDS = 900.0
"""Longer than this between two turns and the planner assumes the service was not watching arrivals."""


class BudgetDay:
    """The day's accounting: calls spent today, the calls left the API last reported, and what may be spent.

    It also teaches the arrival curve, because only the day knows where in the day an arrival or a watched
    stretch falls. Methods that may start a new budget day return when it started, so that whoever paces
    spending by the day (``SparePace``) starts over with it.
    """

    def __init__(self, allowance: Allowance, curve: ArrivalCurve) -> None:
        self._allowance = allowance
        self._curve = curve
        self.reserve = allowance.reserve()
        """Calls never spent, left to the shop."""
        self._day_cap = allowance.day_cap()
        self._resets_at: float | None = None
        self._seen_at: float | None = None
        self._unplaced_arrivals = 0
        self.spent_today = 0
        """This replica's calls of the budget day (restored on start from what it wrote on the budget topic)."""
        self.others_today = 0
        """The other replicas' calls of the budget day, as the budget topic counts them (gone ones too)."""
        self._learned_left: int | None = None
        """Calls left per the last answer of this budget day, less the calls then under way (-1: unlimited)."""
        self._spent_since_learned = 0
        """Calls spent since the last answer (before any: since the start, or the reset of a daily allowance)."""

    # ---- what happened --------------------------------------------------------------------------------------

    def arrived(self, now: float, images: int) -> None:
        """New images joined the batcher: on the curve where the day is (before the first anchor, held back)."""
        if self._resets_at is None:
            self._unplaced_arrivals += images  # placed on the curve once a plan says where in the day we are
            return
        self._curve.arrived(self.position(now), images)

    def count_calls(self, calls: int) -> None:
        self.spent_today += calls
        self._spent_since_learned += calls

    def learned(self, remain_times: int, calls_in_flight: int) -> None:
        """An answer's ``remainTimes`` (-1: unlimited) replaces what was known, less the calls still under way."""
        self._learned_left = -1 if remain_times < 0 else max(0, remain_times - calls_in_flight)
        self._spent_since_learned = 0

    # ---- where in the day -----------------------------------------------------------------------------------

    def anchor(self, now: float, seconds_until_reset: float) -> float | None:
        """Where in the budget day ``now`` is, from the quota's time to the reset; rolls the day over.

        Returns when a budget day started (the first anchor, or a reset passed), None if the day goes on."""
        resets_at = now + max(0.0, seconds_until_reset)
        if self._resets_at is None:
            self._resets_at = resets_at
            self._seen_at = now
            if self._unplaced_arrivals:
                self._curve.arrived(self.position(now), self._unplaced_arrivals)
                self._unplaced_arrivals = 0
            return now
        started: float | None = None
        if resets_at > self._resets_at + DAY_SECONDS / 2:  # the quota's reset moved on: a new budget day
            started = self.roll(max(now, self._resets_at))
        self._resets_at = resets_at
        rolled = self.roll(now)
        return rolled if rolled is not None else started

    def roll(self, now: float) -> float | None:
        """Notes the time watched; past the reset, ends the budget day: what was spent and learned is gone.

        Returns ``now`` when it ended the day (a new one starts), None otherwise."""
        if self._resets_at is None:
            return None
        if self._seen_at is not None and 0 <= now - self._seen_at <= WATCH_GAP_SECONDS:
            self._curve.watched(self.position(self._seen_at), self.position(min(now, self._resets_at)))
        self._seen_at = now
        if now < self._resets_at:
            return None
        self._curve.end_day()
        while self._resets_at <= now:
            self._resets_at += DAY_SECONDS
        self.spent_today = 0
        self.others_today = 0
        if self._allowance.kind is AllowanceKind.DAILY:  # a pack's calls do not come back at the reset
            self._learned_left = None
            self._spent_since_learned = 0
        return now

    def position(self, now: float) -> float:
        """Seconds since the last reset."""
        if self._resets_at is None:  # before the first plan: the start of a day
            return 0.0
        return min(DAY_SECONDS, max(0.0, DAY_SECONDS - (self._resets_at - now)))

    def expected_images_left(self) -> float:
        """Images the curve expects from the last turn to the reset (none before the first anchor)."""
        if self._resets_at is None:
            return 0.0
        return self._curve.expected_images(self.position(self._seen_at or 0.0), DAY_SECONDS)

    # ---- what may be spent ----------------------------------------------------------------------------------

    @property
    def has_spend_limit(self) -> bool:
        """Whether imgsweep may spend only part of the day's calls (a pack's daily spending limit)."""
        return math.isfinite(self._day_cap)

    @property
    def account_spent(self) -> int:
        """The account's calls of the budget day: this replica's and the others'."""
        return self.spent_today + self.others_today

    @property
    def spend_limit_reached(self) -> bool:
        return self.account_spent >= self._day_cap

    @property
    def calls_left(self) -> float:
        """The last answer's calls left, less those this replica spent since; before any answer, the allowance's
        ``daily_calls`` less the account's calls of the day (every replica's, and what a restart restored)."""
        if self._learned_left is None:
            known, spent = self._allowance.daily_calls, self.account_spent
        else:
            known, spent = self._learned_left, self._spent_since_learned
        if known < 0:
            return math.inf
        return float(max(0, known - spent))

    def spendable_by(self, share: float, margin: float) -> float:
        """This replica's part of the calls: ``share`` of what the last answer left above the reserve and
        ``margin`` (other replicas' calls under way), less what this replica spent since that answer, so that
        replicas spending from counts of different ages still spend the account's calls once, not once each.
        Alone (share 1, margin 0) it is ``spendable``."""
        known = self._allowance.daily_calls if self._learned_left is None else self._learned_left
        if known < 0:
            return math.inf
        own = self._spent_since_learned
        if self._learned_left is None:  # before an answer: the day's allowance less every replica's calls
            known, own = known - self.others_today, self.spent_today
        by_count = share * (known - self.reserve - margin) - own
        return max(0.0, min(by_count, share * (self._day_cap - self.account_spent)))

    @property
    def spendable(self) -> float:
        """Calls left less the reserve, capped by what the day's spending limit still allows."""
        return self.spendable_less(0.0)

    def spendable_less(self, margin: float) -> float:
        """``spendable``, the calls left less ``margin`` too (other replicas' calls under way, which no answer
        counted yet); the day's cap needs no margin, as every replica's calls count there before they start."""
        return max(0.0, min(self.calls_left - self.reserve - margin, self._day_cap - self.account_spent))
