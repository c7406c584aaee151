"""The wait the calls left can carry: the smallest max wait that fits what may still be spent today (issue 22).

Pure, like the planner that owns it: every call passes a position in the budget day (seconds since the reset).

The best a budget can do for a day's arrivals, with hindsight, is one max wait ``W`` for every collection: each
collection's batch goes when it is full or when its oldest image waited ``W``, and ``W`` is the smallest that the
day's calls allow (the bench computes it, greedily per collection). ``WaitTarget`` aims at that ``W`` without
hindsight, and again as the day goes: it counts the calls each collection would make before the reset at a
given wait (a batch per fill or per wait, whichever comes first, at the collection's expected rate), adds one call
per batch waiting that would go before the reset, and searches the smallest wait whose calls fit. Recomputed
every minute, it corrects itself: calls not spent lower it, calls spent faster than foreseen raise it.

The expected rate is the arrival curve's (learned from past days) times today's correction: the images seen
over the last hours against what the curve expected for them, exponentially weighted so that a burst moves it
a little and a lasting change (traffic doubling after noon) moves it within an hour or two. A collection's part
of the rate is its part of the images seen (sent or waiting), so a thousand small collections each count the
calls their own partial batches will cost, not ``images / 200`` as if they could share a call.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from service.budget.curve import DAY_SECONDS, ArrivalCurve, finite_non_negative
from service.budget.demand import NEED_WAITS
from service.budget.rules import WaitingBatch

__all__ = ["RECOMPUTE_SECONDS", "TodayCorrection", "WaitTarget"]

HEDGE = 0.8
"""The rest of the day is planned for this much more traffic than the forecast (or for what the correction
sees, if more): a change the correction has not seen yet (traffic doubling after noon) then finds calls kept
for it. The part of the day it covers shrinks as the day goes, so by the evening the calls it kept are spent.
Halved, or none, when the hedged images would not fit the calls left even at full batches (a tight day)."""
RECOMPUTE_SECONDS = 60.0
"""The target is searched again at most this often (and at once when a budget day starts)."""
_SEARCH_STEPS = 32
_LONGEST = 2 * DAY_SECONDS
"""Waits beyond this are "only full batches": the calls do not carry the partial ones."""


class TodayCorrection:
    """Today's arrivals against the curve's forecast for the same stretch, exponentially weighted in time.

    ``ratio`` multiplies the rest of the day's forecast. Arrivals are counted by stretches of
    ``STRETCH_SECONDS``, each at most ``CLIP`` times what the curve expected for it: a burst (a shop delisting
    a catalogue at once) moves the ratio a little, a lasting change (traffic doubling after noon) within an hour
    or two. Only once a day was learned: before that the forecast is today's own busiest rate so far."""

    STRETCH_SECONDS = 300.0
    CLIP = 3.0

    def __init__(
        self, curve: ArrivalCurve, *, time_constant: float = 3_600.0, bounds: tuple[float, float] = (0.25, 4.0)
    ) -> None:
        self._curve = curve
        self._tau = time_constant
        self._low, self._high = bounds
        self._seen = 0.0
        self._expected = 0.0
        self._stretch_images = 0.0
        self._stretch_expected = 0.0
        self._stretch_at: float | None = None
        self._at: float | None = None

    def start_day(self) -> None:
        """A new budget day: positions start again from 0 (what was seen stays, fading as before)."""
        self._at = None
        self._stretch_at = None

    def advance(self, position: float) -> None:
        """Time went by to ``position``: the stretch's forecast adds; a stretch ended folds into the ratio."""
        if self._at is None or position < self._at:
            self._at = position
            self._stretch_at = position
            return
        elapsed = position - self._at
        if elapsed <= 0:
            return
        self._stretch_expected += self._curve.rate(self._at + elapsed / 2) * elapsed
        self._at = position
        if self._stretch_at is not None and position - self._stretch_at >= self.STRETCH_SECONDS:
            fade = math.exp(-(position - self._stretch_at) / self._tau)
            seen = min(self._stretch_images, self.CLIP * self._stretch_expected)
            self._seen = self._seen * fade + seen
            self._expected = self._expected * fade + self._stretch_expected
            self._stretch_images, self._stretch_expected, self._stretch_at = 0.0, 0.0, position

    def arrived(self, images: int) -> None:
        self._stretch_images += images

    def saved(self) -> tuple[float, float]:
        """What was seen and expected, weighted (``restore``); the stretch under way starts again."""
        return self._seen, self._expected

    def restore(self, seen: float, expected: float) -> None:
        self._seen, self._expected = seen, expected
        self._at = self._stretch_at = None

    @property
    def ratio(self) -> float:
        """Today's rate over the forecast's; 1 until a quarter of an hour's forecast is behind it."""
        if not self._curve.learned_any or self._at is None:
            return 1.0
        floor = 0.25 * self._tau * max(1e-9, self._curve.rate(self._at))
        if self._expected < floor:
            return 1.0
        return min(self._high, max(self._low, self._seen / self._expected))


class WaitTarget:
    """The smallest wait that the calls left today can carry, for each collection's partial batches."""

    def __init__(self, curve: ArrivalCurve, *, max_items: int, linger: float) -> None:
        self._curve = curve
        self.correction = TodayCorrection(curve)
        self._max_items = max_items
        self._linger = linger
        self._images: dict[str, float] = {}
        """Images seen per collection (sent batches), halved at each reset: each collection's part of the rate."""
        self._images_per_event = 1.0
        self._events = 0
        self._computed_at: float | None = None
        self._budget = -1.0
        self.wait = math.inf
        """The target: partial batches go once their oldest image waited this long (inf: only full ones)."""
        self.needed = 0.0
        """Calls the images waiting and the rest of the day's expected ones need at full batches, per collection."""
        self.partial_calls = 0.0
        """Calls the target gives partial batches over the rest of the day (for a metric)."""
        self._forecast: tuple[list[tuple[float, int]], float, int, list[float]] | None = None
        """What the last search counted (``need``): the collection groups, the position, full batches waiting,
        the partial ones' ages."""

    def start_day(self) -> None:
        self.correction.start_day()
        self._images = {name: images / 2 for name, images in self._images.items() if images >= 1}
        self._computed_at = None

    def saved(self) -> dict[str, object]:
        """Each collection's images, images per event and today's correction (``restore``)."""
        seen, expected = self.correction.saved()
        return {"images": dict(self._images), "per_event": self._images_per_event, "events": self._events,
                "seen": seen, "expected": expected}  # fmt: skip

    def restore(self, state: Mapping[str, Any]) -> None:
        """Takes back what ``saved`` returned; the target is searched again at the next plan."""
        images = {str(name): finite_non_negative(count) for name, count in dict(state["images"]).items()}
        per_event, events = finite_non_negative(state["per_event"]), int(finite_non_negative(state["events"]))
        self.correction.restore(finite_non_negative(state["seen"]), finite_non_negative(state["expected"]))
        self._images, self._images_per_event, self._events = images, per_event, events
        self._computed_at = None

    def arrived(self, images: int) -> None:
        self.correction.arrived(images)
        self._events += 1
        weight = max(0.02, 1 / self._events)
        self._images_per_event += weight * (images - self._images_per_event)

    def sent(self, batch: WaitingBatch) -> None:
        self._images[batch.collection] = self._images.get(batch.collection, 0.0) + batch.items

    def due(self, now: float, position: float, budget: float) -> bool:
        """Whether the target is to be searched again: a minute went by, a day started, or the budget moved by
        more than this replica's own calls (another spender, an answer)."""
        return (
            self._computed_at is None
            or now - self._computed_at >= RECOMPUTE_SECONDS
            or now < self._computed_at
            or abs(budget - self._budget) > 1.5
        )

    def update(self, now: float, position: float, budget: float, waiting: Sequence[WaitingBatch]) -> None:
        """Searches the smallest wait whose calls before the reset fit ``budget`` (this replica's calls)."""
        self._computed_at = now
        left = max(0.0, DAY_SECONDS - position)
        groups = self._groups(waiting)
        full_waiting = sum(1 for batch in waiting if batch.full)
        partial_ages = sorted(now - batch.oldest_at for batch in waiting if not batch.full)
        expected = self._terms(groups, self._segments(position, 0.0))
        at_full = _future_calls(math.inf, expected)
        self.needed = full_waiting + len(partial_ages) + at_full
        # the hedge never makes a day that fits at full batches look as if it did not: it only keeps spare calls
        for hedge in (HEDGE, HEDGE / 2, 0.0):
            if hedge > 0:
                terms = self._terms(groups, self._segments(position, hedge))
                hedged_full = _future_calls(math.inf, terms)
            else:
                terms, hedged_full = expected, at_full
            if full_waiting + len(partial_ages) + hedged_full <= budget:
                break
        self._forecast = (groups, position, full_waiting, partial_ages)

        def calls(wait: float) -> float:
            future = _future_calls(wait, terms)
            ready = len(partial_ages) - _count_below(partial_ages, wait - left)
            return future + full_waiting + ready

        self._budget = budget
        if budget < 1:
            self.wait = math.inf
        elif calls(self._linger) <= budget:
            self.wait = self._linger
        elif calls(_LONGEST) > budget:
            self.wait = math.inf
        else:
            low, high = math.log(max(self._linger, 1.0)), math.log(_LONGEST)
            for _ in range(_SEARCH_STEPS):
                middle = (low + high) / 2
                if calls(math.exp(middle)) <= budget:
                    high = middle
                else:
                    low = middle
            self.wait = max(self._linger, math.exp(high))
        at_wait = calls(self.wait) if math.isfinite(self.wait) else self.needed
        self.partial_calls = max(0.0, at_wait - full_waiting - hedged_full)

    def need(self) -> list[float]:
        """The calls the rest of the day would take at each wait of ``NEED_WAITS``, as the last search counted
        them (the images waiting, and those the corrected forecast expects, per collection), always with the whole
        ``HEDGE``: what this replica asks of the account's calls (``service.budget.demand``). Every member hedges
        alike, so their needs weigh alike; unhedged, a member whose own budget is tight (planning without the
        hedge) would ask as much as one keeping calls for a change, and the account's wait would differ between
        them (the simulated day's one owner per collection: p99 409 s hedged by each member's own tier, 388 s with
        the whole hedge, against 376 s for one replica). Computed only when asked."""
        if self._forecast is None:
            return [0.0] * len(NEED_WAITS)
        groups, position, full_waiting, partial_ages = self._forecast
        terms = self._terms(groups, self._segments(position, HEDGE))
        left = max(0.0, DAY_SECONDS - position)
        return [
            _future_calls(wait, terms) + full_waiting + len(partial_ages) - _count_below(partial_ages, wait - left)
            for wait in NEED_WAITS
        ]

    def _groups(self, waiting: Iterable[WaitingBatch]) -> list[tuple[float, int]]:
        """Collections as (part of the rate, how many with about that part): a thousand small collections
        cost a few groups, not a thousand terms, in the search."""
        images = dict(self._images)
        for batch in waiting:
            images[batch.collection] = images.get(batch.collection, 0.0) + batch.items
        total = sum(images.values())
        if total <= 0:
            return []
        buckets: dict[int, tuple[float, int]] = {}
        for count in images.values():
            share = count / total
            if share <= 0:
                continue
            key = round(4 * math.log2(share))
            summed, members = buckets.get(key, (0.0, 0))
            buckets[key] = (summed + share, members + 1)
        return [(summed / members, members) for summed, members in buckets.values()]

    def _segments(self, position: float, hedge: float) -> list[tuple[float, float, float]]:
        """(start, end, expected images per second) over the rest of the day, today's correction applied, and
        planned for ``1 + hedge`` times the forecast (or what the correction sees, if more)."""
        seen = self.correction.ratio
        ratio = max(seen, 1 + hedge) if seen >= 1 else seen * (1 + hedge)
        width = DAY_SECONDS / 24
        segments: list[tuple[float, float, float]] = []
        start = max(0.0, position)
        while start < DAY_SECONDS - 1e-9:
            end = min(DAY_SECONDS, (math.floor(start / width + 1e-9) + 1) * width)
            segments.append((start, end, self._curve.expected_images(start, end) / (end - start) * ratio))
            start = end
        return segments

    def _terms(
        self, groups: Sequence[tuple[float, int]], segments: Sequence[tuple[float, float, float]]
    ) -> list[tuple[int, float, float, float, float]]:
        """What ``_future_calls`` needs of each collection group in each segment that does not depend on the
        wait, computed once per search instead of once per step: (members, start, end, time to fill a batch,
        time between events)."""
        per_event = max(1.0, self._images_per_event)
        room = max(0.0, self._max_items - per_event)
        terms: list[tuple[int, float, float, float, float]] = []
        for start, end, rate in segments:
            if rate <= 0:
                continue
            for share, members in groups:
                images = rate * share
                terms.append((members, start, end, room / images, per_event / images))
        return terms


def _future_calls(wait: float, terms: Sequence[tuple[int, float, float, float, float]]) -> float:
    """Calls the images still to come make before the reset at ``wait``: per collection, a batch opens with an
    event and goes when full or ``wait`` later, whichever is first; one that would go after the reset is
    tomorrow's. ``terms``: ``WaitTarget._terms``."""
    total = 0.0
    for members, start, end, fill, between in terms:
        open_for = wait if wait < fill else fill
        cycle = between + open_for
        last = DAY_SECONDS - open_for
        length = (end if end < last else last) - start
        if length > 0:
            total += members * length / cycle
    return total


def _count_below(ordered: Sequence[float], bound: float) -> int:
    """How many of the sorted ``ordered`` are below ``bound``."""
    low, high = 0, len(ordered)
    while low < high:
        middle = (low + high) // 2
        if ordered[middle] < bound:
            low = middle + 1
        else:
            high = middle
    return low
