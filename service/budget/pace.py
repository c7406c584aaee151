"""The spare calls' pace: how fast the calls no full batch needs become free for partial batches.

Pure, like the planner that owns it: every call passes ``now`` on the pipeline's monotonic clock, and where that
falls in the budget day comes from the ``BudgetDay``. A daily call not spent by the reset is lost, but spent too
early it leaves the evening's images waiting, so spare calls accrue along the arrival curve over the rest of the
day instead of being spent as soon as they exist.
"""

from __future__ import annotations

import math

from service.budget.curve import DAY_SECONDS, ArrivalCurve
from service.budget.day import BudgetDay

__all__ = ["FINISH_SECONDS", "SparePace"]

FINISH_SECONDS = 120.0
"""The pace aims to have spent the spare calls this long before the reset; from then on they all may go."""
_FINISH_AT = DAY_SECONDS - FINISH_SECONDS
"""Seconds since the reset when the pace has spent the spare calls."""
_EPSILON = 1e-9


class SparePace:
    """Spare calls accrued and not yet wasted on partial batches, like tokens in a bucket of ``burst_calls``.

    A partial batch costs the share of a call it leaves unused (its waste); the planner lets it go once that
    much has accrued. Only a paced budget (a daily allowance, or a pack with a spending limit) accrues.
    """

    def __init__(self, day: BudgetDay, curve: ArrivalCurve, *, burst_calls: float, max_items: int) -> None:
        """``burst_calls``: how many spare calls may accrue while no partial batch waits (at least one)."""
        self._day = day
        self._curve = curve
        self._burst = burst_calls
        self._max_items = max_items
        self._tokens = 0.0
        """Spare calls accrued and not yet wasted on partial batches."""
        self._paced_at: float | None = None

    def start_day(self, started_at: float | None) -> None:
        """A budget day started at ``started_at`` (None: the day goes on): the last day's spare calls are gone."""
        if started_at is not None:
            self._tokens = 0.0
            self._paced_at = started_at

    def covers(self, waste: float) -> bool:
        """Whether enough spare calls accrued for a partial batch that wastes ``waste`` of a call."""
        return self._tokens >= waste - _EPSILON

    def spend(self, waste: float) -> None:
        """A batch went: what it wasted comes off the spare calls."""
        self._tokens = max(0.0, self._tokens - waste)

    def accrue(self, now: float, spare: float, needed: float, everything: float | None = None) -> None:
        """Spare calls accrue along the curve: the share of its remainder (to the finish) that went by.
        ``everything``: what may go in the day's last minutes (default: ``spare + needed``)."""
        if self._paced_at is None:
            return
        position = self._day.position(now)
        if position >= _FINISH_AT:  # a daily call not spent by the reset is lost
            self._tokens = max(self._tokens, spare + needed if everything is None else everything)
        elif spare <= 0:
            pass
        elif math.isinf(spare):
            self._tokens = self._burst
        elif position >= _FINISH_AT:
            pass  # the day's last minutes: every spendable call may go (below)
        else:
            done = self._curve.mass(self._day.position(self._paced_at))
            remaining = self._curve.mass(_FINISH_AT) - done
            passed = self._curve.mass(position) - done
            if remaining > 0 and passed > 0:
                self._tokens = min(self._burst, self._tokens + spare * passed / remaining)
        self._paced_at = now

    def seconds_until(self, now: float, tokens: float, spendable: float, needed: float, until_reset: float) -> float:
        """When ``tokens`` spare calls will have accrued, if nothing is sent meanwhile (at the reset, if not
        before). With no spare call now, when the expected images left today shrink enough for one."""
        missing = tokens - self._tokens
        if missing <= _EPSILON:
            return 0.0
        position = self._day.position(now)
        finish = _FINISH_AT
        spare = spendable - needed
        if math.isinf(spare):
            return 0.0
        if position >= finish:
            return 0.0 if spendable >= tokens else until_reset
        if spare <= 0:
            return min(finish - position, self._seconds_until_spare(position, spendable, needed, until_reset))
        done = self._curve.mass(position)
        target = done + missing * (self._curve.mass(finish) - done) / spare
        if target >= self._curve.mass(finish):
            return min(until_reset, finish - position)
        return min(until_reset, max(0.0, self._curve.position(target) - position))

    def _seconds_until_spare(self, position: float, spendable: float, needed: float, until_reset: float) -> float:
        """When the images expected for the rest of the day shrink enough to leave a spare call (the reset, if
        the images waiting alone need every call left)."""
        waiting_calls = needed - self._curve.expected_images(position, DAY_SECONDS) / self._max_items
        room = (spendable - waiting_calls) * self._max_items
        if room <= 0:
            return until_reset
        return min(until_reset, max(1.0, self._curve.position_expecting(room) - position))

    def calls_per_hour(self, now: float, spare: float) -> float:
        """The pace at which spare calls accrue over the coming hour, for a metric (unlimited: inf)."""
        if math.isinf(spare):
            return math.inf
        position = self._day.position(now)
        finish = _FINISH_AT
        done = self._curve.mass(position)
        ahead = min(finish, position + 3600.0)
        left = self._curve.mass(finish) - done
        share = (self._curve.mass(ahead) - done) / left if left > 0 and ahead > position else 1.0
        return max(0.0, spare) * share * 3600.0 / max(1.0, ahead - position)
