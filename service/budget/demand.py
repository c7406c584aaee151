"""Each replica's part of the account's spendable calls, by what each one has to send (issue 22, point 1;
docs/decisions/0023-budget-share-by-demand.md).

Pure: no Kafka, no clock. The edge (``service.pipeline.budget_state``) carries each member's **need** on the budget
topic; ``SharedPlanner`` turns its own need and the others' into its share.

A fixed share (a replica's fraction of the input's partitions) is right while every replica sees a slice of every
collection. Once each collection has one owner (the router, decision 0022), demand is lopsided: the replica owning
the busiest collections would be held to a quarter of the calls while an idle one keeps a quarter it cannot use.
The best a budget can do, with hindsight, is one max wait ``W`` for every collection (``WaitTarget``), so the
share that reaches it is each replica's calls at that ``W`` over every replica's:

- A member's **need** is the calls the rest of its day would take (its images waiting and those its arrival curve,
  corrected by today's arrivals, still expects, counted per collection it batches) at each wait of ``NEED_WAITS``:
  a falling curve of calls against the wait.
- Every member reads every need: their sum against the account's spendable calls gives the account's wait ``W``
  (between two waits of the ladder, by linear interpolation of the calls), and its share is its own need at ``W``
  over the sum at ``W``. Every member computes every share from the same needs, so the shares add up to 1.
- A **floor** keeps a member from being starved (a new one, one that owned nothing an hour ago); the shares are
  scaled back so that they still add up to 1.
- Each member smooths its need before publishing it (``NeedSmoother``, exponentially over ``SMOOTH_SECONDS``), so a
  burst or a batch sent does not make the shares swing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

__all__ = [
    "FLOOR",
    "NEED_EXPIRY_SECONDS",
    "NEED_SECONDS",
    "NEED_WAITS",
    "SMOOTH_SECONDS",
    "NeedSmoother",
    "demand_fraction",
]

NEED_WAITS: Final = (2.0, 5.0, 15.0, 30.0, 60.0, 120.0, 240.0, 450.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
                     21600.0, math.inf)  # fmt: skip
"""The waits a need is given at (seconds; ``inf``: full batches only). The account's wait falls between two of them."""
NEED_SECONDS: Final = 60.0
"""A member's need is computed and published this often (the planner's target is searched as often)."""
NEED_EXPIRY_SECONDS: Final = 300.0
"""A need published longer ago than this is a dead member's (a live one publishes every ``NEED_SECONDS``): it no
longer holds a share."""
SMOOTH_SECONDS: Final = 600.0
"""The time constant of a need's smoothing: a burst moves it a little, a lasting change within a quarter hour."""
FLOOR: Final = 0.02
"""No member's share is below this (or half of an even split, when smaller): a new member, or one whose need is
not heard yet, still has calls for its first batches."""


class NeedSmoother:
    """A member's need, smoothed exponentially in time before it is published (the first one, and the first after
    needing nothing, as it is: a member that starts or learns its forecast is not held at nothing for a while)."""

    def __init__(self, time_constant: float = SMOOTH_SECONDS) -> None:
        self._tau = time_constant
        self._need: list[float] | None = None
        self._at = 0.0

    def update(self, now: float, need: Sequence[float]) -> list[float]:
        """The need computed at ``now``; returns the smoothed one."""
        if self._need is None or len(self._need) != len(need) or now < self._at or not any(self._need):
            self._need = list(need)
        else:
            weight = 1.0 - math.exp(-(now - self._at) / self._tau)
            self._need = [old + weight * (new - old) for old, new in zip(self._need, need, strict=True)]
        self._at = now
        return list(self._need)

    def start_day(self) -> None:
        """A new budget day: the rest of the day is a whole day again, the need starts over."""
        self._need = None


def _at_wait(needs: Sequence[Sequence[float]], spendable: float) -> list[float]:
    """Each need at the account's wait: the smallest wait of the ladder (interpolated) whose calls, summed over
    every member, fit ``spendable``; the last (full batches only) when none does."""
    totals = [sum(column) for column in zip(*needs, strict=True)]
    for index, total in enumerate(totals):
        if total <= spendable:
            if index == 0 or totals[index - 1] <= total:
                return [need[index] for need in needs]
            part = (totals[index - 1] - spendable) / (totals[index - 1] - total)
            return [need[index - 1] + part * (need[index] - need[index - 1]) for need in needs]
    return [need[-1] for need in needs]


def demand_fraction(own: Sequence[float], others: Sequence[Sequence[float]], spendable: float) -> float:
    """This member's part of the account's spendable calls: its need at the account's wait over every member's,
    floored (``FLOOR``) and scaled so that every member's part adds up to 1. ``own`` and each of ``others``: calls
    at each wait of ``NEED_WAITS`` (others of another length are ignored); no other member: 1."""
    width = len(NEED_WAITS)
    known = [list(need) for need in others if len(need) == width]
    if not known:
        return 1.0
    mine = list(own) if len(own) == width else [0.0] * width
    needs = [mine, *known]
    at_wait = [max(0.0, need) for need in _at_wait(needs, spendable)]
    total = sum(at_wait)
    even = 1.0 / len(needs)
    floor = min(FLOOR, even / 2)
    raw = [need / total if total > 0 else even for need in at_wait]
    floored = [max(floor, part) for part in raw]
    return floored[0] / sum(floored)
