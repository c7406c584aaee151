"""The day's expected arrivals (ad-tech budget pacing's "opportunity curve"), learned from what was seen.

A budget day runs from one quota reset to the next; a position in it is seconds since the last reset. The
curve keeps an arrival rate per bin (an hour by default), learned at the end of each day by exponential
smoothing from the images seen and the time the service was watching in that bin. A bin never watched keeps
what it knew; before anything is known the curve is flat (calls spread evenly). A share of a flat curve is
always mixed in, so a bin learned as empty still gets calls for what arrives there after all.

The planner uses the curve twice. ``expected_images`` (the learned rates themselves) says how many calls the
rest of the day's images will need at full batches: those calls are kept, so a busy evening is not starved by
calls spent at a quiet hour. ``mass(x)`` is the share of the remaining *spare* calls to spend before position
``x``; its shape is the rate to the power ``exponent``. The default 0 spreads spare calls evenly in time:
the longest wait of a partial batch is the time between its collection's calls, whatever the arrival rate, and
in the simulated day (``bench/simulated_day.py``) an even spread gave the lowest p99 and max wait, √rate
(0.5) about the same mean and a worse tail, the rate itself (1) a tail twice as long.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Mapping, Sequence

__all__ = ["DAY_SECONDS", "ArrivalCurve", "finite_non_negative"]

DAY_SECONDS = 86_400.0
_BUSIEST_WATCHED_SECONDS = 180.0
"""Before a day is learned, a bin watched this long says how busy today is."""


class ArrivalCurve:
    def __init__(
        self,
        *,
        bins: int = 24,
        smoothing: float = 0.3,
        flat_share: float = 0.05,
        min_watched: float = 0.25,
        exponent: float = 0.0,
        rates: Sequence[float | None] | None = None,
    ) -> None:
        """``smoothing``: weight of the day just seen (the first day seen in a bin replaces "unknown").
        ``flat_share``: the part of the curve that stays flat. ``min_watched``: the share of a bin that must
        have been watched for its day to count. ``rates``: images per second per bin, from a saved curve."""
        if bins < 1 or not 0 < smoothing <= 1 or not 0 < flat_share <= 1 or not 0 < min_watched <= 1:
            raise ValueError("bins >= 1, smoothing in (0, 1], flat_share in (0, 1], min_watched in (0, 1]")
        if rates is not None and len(rates) != bins:
            raise ValueError(f"{len(rates)} rates for {bins} bins")
        self._bins = bins
        self._width = DAY_SECONDS / bins
        self._smoothing = smoothing
        self._flat_share = flat_share
        self._min_watched = min_watched
        self._exponent = exponent
        self._rates: list[float | None] = list(rates) if rates is not None else [None] * bins
        self._images = [0.0] * bins
        self._watched = [0.0] * bins
        self._learned_mean: float | None = None
        self._busiest: float | None = None
        self._watched_total: float | None = None
        self._changing: int | None = None
        self._others: float | None = None
        self._others_known = False
        self._rates_changed()
        self._cumulative = self._shape()

    def scale(self, factor: float) -> None:
        """Every rate learned and today's images times ``factor``: the replica now reads that much of the
        input (a rebalance moved partitions), so it expects that much of what it learned."""
        self._rates = [None if rate is None else rate * factor for rate in self._rates]
        self._images = [images * factor for images in self._images]
        self._rates_changed()

    @property
    def rates(self) -> tuple[float | None, ...]:
        """Images per second per bin as learned (None: never watched); what to save to keep the curve."""
        return tuple(self._rates)

    def saved(self) -> dict[str, list[float | None]]:
        """The learned rates and today's images and watched seconds by bin (``restore``)."""
        return {"rates": list(self._rates), "images": list(self._images), "watched": list(self._watched)}

    def restore(self, state: Mapping[str, Sequence[float | None]]) -> None:
        """Takes back what ``saved`` returned (same bins); checks it all before changing anything."""
        rates = [None if rate is None else finite_non_negative(rate) for rate in state["rates"]]
        images = [finite_non_negative(value) for value in state["images"]]
        watched = [min(self._width, finite_non_negative(value)) for value in state["watched"]]
        if not len(rates) == len(images) == len(watched) == self._bins:
            raise ValueError(f"a saved curve of {len(rates)} bins for {self._bins}")
        self._rates, self._images, self._watched = rates, images, watched
        self._rates_changed()
        self._cumulative = self._shape()

    def _rates_changed(self) -> None:
        """The learned rates or today's counts changed: what is derived from them is computed again when asked.
        The planner asks for the fill rate on every loop turn; the rates change once a day, the counts per event."""
        known = [rate for rate in self._rates if rate is not None]
        self._learned_mean = sum(known) / len(known) if known else None
        self._counts_changed(None)

    def _counts_changed(self, index: int | None) -> None:
        """Today's counts changed in bin ``index`` (None: anywhere). The busiest rate of the other bins stays
        while the changes stay in one bin: the bin under way changes on every turn, the others once a day."""
        self._busiest = self._watched_total = None
        if index is None or index != self._changing:
            self._others_known = False
        self._changing = index

    def _fill(self) -> float:
        """The rate of a bin never learned: the mean learned rate, or before anything is learned today's busiest."""
        return self._busiest_today() if self._learned_mean is None else self._learned_mean

    def _bin(self, position: float) -> int:
        return min(self._bins - 1, max(0, int(position // self._width)))

    def arrived(self, position: float, images: int) -> None:
        index = self._bin(position)
        self._images[index] += images
        self._counts_changed(index)

    def watched(self, start: float, end: float) -> None:
        """The service was running (and would have seen arrivals) from ``start`` to ``end`` in today's day."""
        start, end = max(0.0, start), min(DAY_SECONDS, end)
        while start < end:
            index = self._bin(start)
            stop = min(end, (index + 1) * self._width)
            self._watched[index] += stop - start
            self._counts_changed(index)
            start = stop

    def end_day(self) -> None:
        """Folds the day that just ended into the curve; a bin watched too little keeps what it knew."""
        for index in range(self._bins):
            if self._watched[index] >= self._min_watched * self._width:
                seen = self._images[index] / self._watched[index]
                known = self._rates[index]
                self._rates[index] = seen if known is None else self._smoothing * seen + (1 - self._smoothing) * known
        self._images = [0.0] * self._bins
        self._watched = [0.0] * self._bins
        self._rates_changed()
        self._cumulative = self._shape()

    def _shape(self) -> list[float]:
        """Cumulative shares at the bin edges: 0 at the reset, 1 at the next."""
        known = [rate for rate in self._rates if rate is not None]
        fill = sum(known) / len(known) if known else 1.0
        rates = [(fill if rate is None else rate) ** self._exponent for rate in self._rates]
        total = sum(rates)
        flat = 1.0 / self._bins
        shares = [
            flat if total <= 0 else (1 - self._flat_share) * rate / total + self._flat_share * flat for rate in rates
        ]
        edges = [0.0, *itertools.accumulate(shares)]
        return [edge / edges[-1] for edge in edges]

    def expected_images(self, start: float, end: float) -> float:
        """Images expected to arrive between two positions of the day, at the learned rates: a bin never
        learned at the mean learned rate, or before anything is learned at today's busiest rate so far."""
        fill = self._fill()
        start, end = max(0.0, start), min(DAY_SECONDS, end)
        total = 0.0
        while start < end:
            index = self._bin(start)
            stop = min(end, (index + 1) * self._width)
            rate = self._rates[index]
            total += (fill if rate is None else rate) * (stop - start)
            start = stop
        return total

    def rate(self, position: float) -> float:
        """Images per second expected at ``position``: the learned rate, else as ``expected_images`` fills it."""
        learned = self._rates[self._bin(position)]
        if learned is not None:
            return learned
        return self._fill()

    @property
    def learned_any(self) -> bool:
        """Whether a day was learned in some bin (else the forecast is today's busiest rate so far)."""
        return self._learned_mean is not None

    @property
    def knows_today(self) -> bool:
        """Whether the curve can forecast: a day learned, or a few minutes of today watched."""
        if self._watched_total is None:
            self._watched_total = sum(self._watched)
        return self.learned_any or self._watched_total >= _BUSIEST_WATCHED_SECONDS

    def position_expecting(self, images: float) -> float:
        """The earliest position from which at most ``images`` more are expected before the reset."""
        if images <= 0:
            return DAY_SECONDS
        fill = self._fill()
        left = images
        for index in reversed(range(self._bins)):
            rate = self._rates[index]
            in_bin = (fill if rate is None else rate) * self._width
            if in_bin >= left:
                return (index + 1) * self._width - left / (in_bin / self._width)
            left -= in_bin
        return 0.0

    def _busiest_today(self) -> float:
        """``_busiest_rate``, kept until an arrival or a watched stretch changes today's counts."""
        if self._busiest is None:
            self._busiest = self._busiest_rate()
        return self._busiest

    def _busiest_rate(self) -> float:
        """Today's highest rate in a bin watched a few minutes at least (else over all it watched): before a day
        is learned, the rest of it is expected at this rate, so that calls are kept for a busier time than the one
        seen. A few minutes, not the quarter of a bin that teaches the curve: after a quiet night, the first
        minutes of traffic must already say that more is coming (issue 22: the light-load replay spent 608 calls
        in the quarter hour before its bin counted)."""
        enough = min(_BUSIEST_WATCHED_SECONDS, self._min_watched * self._width)
        changing = self._changing
        if not self._others_known:
            self._others = max(
                (
                    images / watched
                    for index, (images, watched) in enumerate(zip(self._images, self._watched, strict=True))
                    if watched >= enough and index != changing
                ),
                default=None,
            )
            self._others_known = True
        rates = [] if self._others is None else [self._others]
        if changing is not None and self._watched[changing] >= enough:
            rates.append(self._images[changing] / self._watched[changing])
        if rates:
            return max(rates)
        watched = sum(self._watched)
        return sum(self._images) / watched if watched > 0 else 0.0

    def mass(self, position: float) -> float:
        """Share of a day's arrivals expected before ``position`` (0 at the reset, 1 at the next)."""
        if position <= 0:
            return 0.0
        if position >= DAY_SECONDS:
            return 1.0
        index = self._bin(position)
        low, high = self._cumulative[index], self._cumulative[index + 1]
        return low + (high - low) * (position - index * self._width) / self._width

    def position(self, mass: float) -> float:
        """The position where the expected share reaches ``mass`` (the inverse of ``mass``)."""
        if mass <= 0:
            return 0.0
        if mass >= 1:
            return DAY_SECONDS
        index = min(self._bins - 1, bisect.bisect_right(self._cumulative, mass) - 1)
        low, high = self._cumulative[index], self._cumulative[index + 1]
        return (index + (mass - low) / (high - low)) * self._width


def finite_non_negative(value: object) -> float:
    """A saved number, checked: finite and not negative (a state read from Kafka may be anything)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < float("inf"):
        raise ValueError(f"{value!r} is not a finite number >= 0")
    return float(value)
