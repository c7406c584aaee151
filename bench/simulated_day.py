"""``python -m bench.simulated_day [--update docs/performance.md]``: a day of delists against the call budget.

A diurnal trickle (60,000 images a day in 4 collections, quiet at night, busiest in the evening, China Standard
Time, the day starting at the quota's reset) runs through the real ``Batcher`` and the real ``CallPlanner`` on a
virtual clock: nothing waits for real, three days take a few seconds. Calls start the moment they are chosen
(no API latency, no failures); an image's wait is from joining the batcher to the start of its call. The
account has nothing else spending its calls, so what is left at the reset is what imgsweep left.

Policies, on the same arrivals:

- **today**: what the service does now: a batch goes once it is full or its oldest image waited the linger
  (2 s), as the QPS allows, until the quota is spent; then nothing until the reset.
- **budget**: the planner, daily allowance, with the reserve; day 1 starts with a flat arrival curve, day 3
  uses the curve learned from days 1 and 2.
- **pack**: a paid pack with the max wait as its latency target, beside today's linger on the same pack.

The figures and whether each target is met go to stdout as a markdown section (and into a report with
``--update``: the section replaces its previous version, the rest of the file stays). ``bench/run.py``
puts the same section into its report.
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bench.standalone import section_parser, write_section
from service.api.models import DeleteItem
from service.budget import DAY_SECONDS, Allowance, AllowanceKind, ArrivalCurve, CallPlanner, QuotaView, WaitingBatch
from service.pipeline.batcher import Batcher, ReadyBatch

__all__ = ["DayFigures", "SimulatedDays", "report_lines", "simulate"]

HEADING = "## A simulated day: the call budget"
MAX_ITEMS = 200
MAX_BYTES = 5 * 1024 * 1024
QPS = 2.0
LINGER_SECONDS = 2.0
MAX_WAIT_SECONDS = 600.0
DAILY_CALLS = 1_000
TIGHT_DAILY_CALLS = 500
"""A free personal plan: the day's images need 300 of its 450 spendable calls even at full batches."""
RESERVE_FRACTION = 0.1
PACK_CALLS = 100_000
IMAGES_PER_DAY = 60_000
DAYS = 3
COLLECTIONS = {"shoes": 0.4, "bags": 0.3, "watches": 0.2, "toys": 0.1}
HOURLY_WEIGHT = (
    0.5, 0.3, 0.2, 0.15, 0.15, 0.2, 0.4, 0.6, 0.8, 1.0, 1.1, 1.1,
    1.0, 1.0, 1.1, 1.1, 1.2, 1.4, 1.8, 2.3, 2.6, 2.4, 1.7, 1.0,
)  # fmt: skip
"""Relative delists per hour of the day (China Standard Time; the quota resets at midnight there)."""
TICK_SECONDS = 60.0
"""The simulated poll loop turns at least this often even when nothing happens (the real one: every second)."""


@dataclass(frozen=True)
class Arrival:
    at: float
    collection: str
    images: int


def diurnal_arrivals(days: int, seed: int) -> list[Arrival]:
    """Delist events (1 to 8 images each) over ``days`` days: Poisson per hour, ``IMAGES_PER_DAY`` expected."""
    rng = random.Random(seed)
    names, shares = list(COLLECTIONS), list(COLLECTIONS.values())
    total = sum(HOURLY_WEIGHT)
    arrivals: list[Arrival] = []
    for day in range(days):
        for hour, weight in enumerate(HOURLY_WEIGHT):
            events = _poisson(rng, IMAGES_PER_DAY * weight / total / 4.5)
            start = day * DAY_SECONDS + hour * 3600.0
            arrivals += [
                Arrival(start + rng.random() * 3600.0, rng.choices(names, shares)[0], rng.randint(1, 8))
                for _ in range(events)
            ]
    return sorted(arrivals, key=lambda arrival: arrival.at)


def _poisson(rng: random.Random, mean: float) -> int:
    """Poisson by counting exponential gaps in one unit of time (means here are a few hundred: fast enough)."""
    count, elapsed = 0, rng.expovariate(mean)
    while elapsed < 1.0:
        count += 1
        elapsed += rng.expovariate(mean)
    return count


@dataclass
class DayFigures:
    """One budget day of one policy."""

    label: str
    day: int
    calls: int = 0
    images_sent: int = 0
    ran_out_at: float | None = None
    """Seconds after the reset when no spendable call was left with more than one max wait still to go before
    the reset (None: the calls lasted; spending the last ones in the day's final minutes is the aim)."""
    left_at_reset: int = 0
    spendable: float = 0.0
    """Calls the day allowed imgsweep to spend (the allowance less the reserve)."""
    reserve: int = 0
    waits: list[float] = field(default_factory=list)
    """Waits of the images that arrived that day, wherever they were sent."""
    unsent: int = 0
    budget_limited_seconds: float = 0.0
    max_projected_wait: float = 0.0
    arrived: int = 0

    @property
    def images_per_call(self) -> float:
        return self.images_sent / self.calls if self.calls else math.nan

    def wait_quantile(self, q: float) -> float:
        if not self.waits:
            return math.nan
        ordered = sorted(self.waits)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    @property
    def spent_share(self) -> float:
        return self.calls / self.spendable if self.spendable else math.nan


@dataclass(frozen=True)
class SimulatedDays:
    """Every policy on the same arrivals; budget rows are the planner with its defaults unless named."""

    today: DayFigures
    budget_first: DayFigures
    """Day 1: nothing learned yet (the curve is flat, the rest of the day expected at today's rate so far)."""
    budget_learned: DayFigures
    """Day 3: the curve learned from days 1 and 2."""
    budget_sqrt: DayFigures
    """Day 3, spare calls spread along √(expected arrivals) instead of evenly."""
    budget_proportional: DayFigures
    """Day 3, spare calls spread along the expected arrivals."""
    budget_unkept: DayFigures
    """Day 3, every spendable call spread evenly over the time left, none kept for the full batches to come:
    the even pacing the issue describes."""
    tight_today: DayFigures
    tight_first: DayFigures
    tight_learned: DayFigures
    tight_unkept: DayFigures
    pack_today: DayFigures
    pack_budget: DayFigures
    pack_ideal_images_per_call: float
    """What arrivals within one max wait allow per call (per collection, capped at 200), on the pack's day."""
    images_per_day: int


class _NoForecast(ArrivalCurve):
    """A curve that expects nothing more today, so the planner keeps no calls for the full batches to come."""

    def expected_images(self, start: float, end: float) -> float:
        return 0.0


class _Account:
    """The account's calls: ``calls`` a day (refilled at each reset) or a pack that only goes down."""

    def __init__(self, calls: int, *, daily: bool) -> None:
        self.calls = calls
        self.left = calls
        self.daily = daily

    def reset(self) -> None:
        if self.daily:
            self.left = self.calls


class _Policy(Protocol):
    def arrived(self, now: float, images: int) -> None: ...

    def turn(self, now: float, batcher: Batcher[float], account: _Account, days: list[DayFigures]) -> float | None:
        """Sends what it decides at ``now``; returns how long until it wants to look again (None: no need)."""


def _record(ready: ReadyBatch[float], now: float, days: list[DayFigures]) -> None:
    """One call: counted on the day it was made; each image's wait on the day it arrived."""
    days[_day_of(now, days)].calls += 1
    days[_day_of(now, days)].images_sent += len(ready.waiters)
    for waiters in ready.waiters.values():
        for joined in waiters:
            days[_day_of(joined, days)].waits.append(now - joined)


def _day_of(at: float, days: list[DayFigures]) -> int:
    return min(len(days) - 1, int(at // DAY_SECONDS))


class TodayPolicy:
    """Today's batch step: the oldest due batch (full, or lingered), one QPS slot apart, while calls are left."""

    def __init__(self) -> None:
        self._last_call = -math.inf

    def arrived(self, now: float, images: int) -> None:
        pass

    def turn(self, now: float, batcher: Batcher[float], account: _Account, days: list[DayFigures]) -> float | None:
        while account.left > 0 and now >= self._last_call + 1.0 / QPS:
            ready = batcher.take(now)
            if ready is None:
                break
            _record(ready, now, days)
            account.left -= 1
            self._last_call = now
            until_reset = DAY_SECONDS - now % DAY_SECONDS
            if account.left == 0 and account.daily and until_reset > MAX_WAIT_SECONDS:
                days[_day_of(now, days)].ran_out_at = now % DAY_SECONDS
        due = batcher.seconds_until_due(now)
        if account.left <= 0 or due is None:
            return None
        return max(due, self._last_call + 1.0 / QPS - now)


class BudgetPolicy:
    """The planner, driven as the batch step should: plan, send what it names, tell it, plan again."""

    def __init__(self, planner: CallPlanner) -> None:
        self._planner = planner
        self._last_turn = 0.0

    def arrived(self, now: float, images: int) -> None:
        self._planner.observe_arrivals(now, images)

    def turn(self, now: float, batcher: Batcher[float], account: _Account, days: list[DayFigures]) -> float | None:
        today = days[_day_of(now, days)]
        until_reset = (math.floor(now / DAY_SECONDS) + 1) * DAY_SECONDS - now
        while True:
            decision = self._planner.plan(
                now,
                [WaitingBatch(*waiting) for waiting in batcher.waiting()],
                QuotaView(until_reset, QPS, exhausted=account.left <= 0),
            )
            if decision.budget.spendable < 1 and today.ran_out_at is None and until_reset > MAX_WAIT_SECONDS:
                today.ran_out_at = now % DAY_SECONDS
            if decision.send is None:
                break
            ready = batcher.take_sequence(decision.send.key)
            assert ready is not None
            _record(ready, now, days)
            account.left -= 1
            self._planner.sent(now, decision.send)
            self._planner.learned(now, account.left)  # the answer, at once: calls take no time here
        if decision.budget_limited:
            today.budget_limited_seconds += now - self._last_turn
        today.max_projected_wait = max(today.max_projected_wait, decision.projected_wait_seconds)
        self._last_turn = now
        return decision.next_check_seconds


def _run(
    arrivals: Sequence[Arrival],
    policy: _Policy,
    account: _Account,
    *,
    days: int,
    label: str,
    spendable: float,
    reserve: int,
) -> list[DayFigures]:
    """Drives one policy over the arrivals on a virtual clock, one day past the last so late images are sent
    (that extra day has no arrivals of its own)."""
    batcher: Batcher[float] = Batcher(max_items=MAX_ITEMS, max_bytes=MAX_BYTES, linger_seconds=LINGER_SECONDS)
    figures = [DayFigures(label, day + 1, spendable=spendable, reserve=reserve) for day in range(days + 1)]
    now, index, serial, day = 0.0, 0, 0, 0
    end = (days + 1) * DAY_SECONDS
    while now < end:
        while now >= (day + 1) * DAY_SECONDS:  # the reset
            figures[day].left_at_reset = account.left
            day += 1
            account.reset()
        while index < len(arrivals) and arrivals[index].at <= now and arrivals[index].at < days * DAY_SECONDS:
            arrival = arrivals[index]
            for _ in range(arrival.images):
                serial += 1
                batcher.add(arrival.collection, DeleteItem(f"p{serial}", f"i{serial}"), arrival.at, arrival.at)
            figures[_day_of(arrival.at, figures)].arrived += arrival.images
            policy.arrived(now, arrival.images)
            index += 1
        wake = policy.turn(now, batcher, account, figures)
        following = arrivals[index].at if index < len(arrivals) else math.inf
        step = min(following, (day + 1) * DAY_SECONDS, now + TICK_SECONDS)
        if wake is not None:
            step = min(step, now + max(wake, 1e-3))
        now = max(step, now + 1e-6)
    for figure in figures:
        figure.unsent = figure.arrived - len(figure.waits)
    return figures[:days]


def _pack_ideal(arrivals: Sequence[Arrival], day: int) -> float:
    """Images per call if each collection made one call per max-wait window (capped at 200 items)."""
    windows: dict[tuple[str, int], int] = {}
    for arrival in arrivals:
        if int(arrival.at // DAY_SECONDS) == day:
            key = (arrival.collection, int(arrival.at // MAX_WAIT_SECONDS))
            windows[key] = windows.get(key, 0) + arrival.images
    calls = sum(math.ceil(images / MAX_ITEMS) for images in windows.values())
    return sum(windows.values()) / calls if calls else math.nan


def _daily(arrivals: Sequence[Arrival], calls: int, label: str, curve: ArrivalCurve | None = None) -> list[DayFigures]:
    allowance = Allowance(AllowanceKind.DAILY, daily_calls=calls, reserve_fraction=RESERVE_FRACTION)
    planner = CallPlanner(allowance, max_wait_seconds=MAX_WAIT_SECONDS, linger_seconds=LINGER_SECONDS, curve=curve)
    reserve = allowance.reserve()
    account = _Account(calls, daily=True)
    return _run(
        arrivals, BudgetPolicy(planner), account, days=DAYS, label=label, spendable=calls - reserve, reserve=reserve
    )


def _today(arrivals: Sequence[Arrival], calls: int, *, daily: bool, days: int, label: str) -> list[DayFigures]:
    return _run(
        arrivals, TodayPolicy(), _Account(calls, daily=daily), days=days, label=label, spendable=calls, reserve=0
    )


def simulate(seed: int = 20261127) -> SimulatedDays:
    """Every policy of the section on the same three days of arrivals (about 10 s on one core)."""
    arrivals = diurnal_arrivals(DAYS, seed)
    budget = _daily(arrivals, DAILY_CALLS, "budget")
    tight = _daily(arrivals, TIGHT_DAILY_CALLS, "budget")
    first_day = [arrival for arrival in arrivals if arrival.at < DAY_SECONDS]
    pack = Allowance(AllowanceKind.PACK, daily_calls=PACK_CALLS)
    pack_planner = CallPlanner(pack, max_wait_seconds=MAX_WAIT_SECONDS, linger_seconds=LINGER_SECONDS)
    pack_account = _Account(PACK_CALLS, daily=False)
    sqrt = _daily(arrivals, DAILY_CALLS, "budget, spare calls along √arrivals", ArrivalCurve(exponent=0.5))
    proportional = _daily(arrivals, DAILY_CALLS, "budget, spare calls along arrivals", ArrivalCurve(exponent=1.0))
    return SimulatedDays(
        today=_today(arrivals, DAILY_CALLS, daily=True, days=DAYS, label="today: linger 2 s")[-1],
        budget_first=budget[0],
        budget_learned=budget[-1],
        budget_sqrt=sqrt[-1],
        budget_proportional=proportional[-1],
        budget_unkept=_daily(arrivals, DAILY_CALLS, "even pacing, no calls kept", _NoForecast())[-1],
        tight_today=_today(arrivals, TIGHT_DAILY_CALLS, daily=True, days=DAYS, label="today: linger 2 s")[-1],
        tight_first=tight[0],
        tight_learned=tight[-1],
        tight_unkept=_daily(arrivals, TIGHT_DAILY_CALLS, "even pacing, no calls kept", _NoForecast())[-1],
        pack_today=_today(first_day, PACK_CALLS, daily=False, days=1, label="pack, today: linger 2 s")[0],
        pack_budget=_run(
            first_day,
            BudgetPolicy(pack_planner),
            pack_account,
            days=1,
            label="pack, budget",
            spendable=PACK_CALLS,
            reserve=0,
        )[0],
        pack_ideal_images_per_call=_pack_ideal(arrivals, 0),
        images_per_day=round(sum(arrival.images for arrival in arrivals) / DAYS),
    )


def _clock(seconds: float | None) -> str:
    """Seconds after the reset as the time of day at the reset's zone (the reset is at 00:00)."""
    if seconds is None:
        return "never"
    minutes = round(seconds / 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _duration(seconds: float) -> str:
    if math.isnan(seconds):
        return "n/a"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _row(day: DayFigures) -> str:
    over = sum(wait > MAX_WAIT_SECONDS for wait in day.waits) / len(day.waits) if day.waits else math.nan
    return (
        f"| {day.label} (day {day.day}) | {day.calls:,} of {day.spendable:,.0f} | {day.images_per_call:.1f} | "
        f"{_clock(day.ran_out_at)} | {_duration(day.wait_quantile(0.5))} | {_duration(day.wait_quantile(0.99))} | "
        f"{_duration(max(day.waits, default=math.nan))} | {over:.1%} | "
        f"{day.budget_limited_seconds / DAY_SECONDS:.0%} | {day.left_at_reset:,} |"
    )


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _targets(r: SimulatedDays) -> list[str]:
    full_calls = math.ceil(r.images_per_day / MAX_ITEMS)
    lines = ["| target | day | figure | met |", "|---|---|---|---|"]
    for day in (r.budget_first, r.budget_learned, r.tight_first, r.tight_learned):
        allowance = f"{day.spendable + day.reserve:,.0f} calls, day {day.day}"
        fits = full_calls <= day.spendable
        lines.append(
            f"| the allowance lasts until the reset while the day's images fit at full batches "
            f"({full_calls} calls ≤ {day.spendable:,.0f}: {'they fit' if fits else 'they do not'}) | {allowance} | "
            f"ran out: {_clock(day.ran_out_at)} | {_met(not fits or day.ran_out_at is None)} |"
        )
        lines.append(
            f"| the reserve ({day.reserve}) intact at the reset | {allowance} | {day.left_at_reset:,} calls left | "
            f"{_met(day.left_at_reset >= day.reserve)} |"
        )
        waited = max(day.waits, default=0.0) > MAX_WAIT_SECONDS
        lines.append(
            f"| ≥ 90 % of the spendable calls used when images waited longer than the max wait "
            f"({'they did' if waited else 'they did not'}) | {allowance} | {day.spent_share:.1%} used | "
            f"{_met(not waited or day.spent_share >= 0.9)} |"
        )
    pack = r.pack_budget
    ratio = pack.images_per_call / r.pack_ideal_images_per_call
    lines.append(
        f"| pack: images per call ≥ 0.8 of what the arrivals within one max wait allow | pack, day 1 | "
        f"{pack.images_per_call:.1f} ÷ {r.pack_ideal_images_per_call:.1f} = {ratio:.2f} | {_met(ratio >= 0.8)} |"
    )
    p99 = pack.wait_quantile(0.99)
    lines.append(
        f"| pack: p99 wait within the latency target ({MAX_WAIT_SECONDS:.0f} s) | pack, day 1 | {p99:.1f} s | "
        f"{_met(p99 <= MAX_WAIT_SECONDS)} |"
    )
    return lines


def report_lines(r: SimulatedDays) -> list[str]:
    """The section of docs/performance.md: the figures, the targets and whether each is met."""
    header = [
        "| policy | calls (of spendable) | images per call | allowance ran out | p50 wait | p99 wait | max wait | "
        "images over the max wait | day budget-limited | calls left at the reset |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    today, learned = r.today, r.budget_learned
    return [
        HEADING,
        "",
        "Generated by `python -m bench.simulated_day` (also part of `python -m bench.run`): the real "
        "`service.pipeline.batcher.Batcher` and `service.budget.CallPlanner` on a virtual clock, no broker and no "
        "real waiting. How it is set up is in the module's docstring.",
        "",
        f"Three days of a diurnal trickle, {r.images_per_day:,} images a day on average (delist events of 1 to 8 "
        f"images, Poisson per hour) in {len(COLLECTIONS)} collections ("
        + ", ".join(f"{share:.0%}" for share in COLLECTIONS.values())
        + "), quiet at night, busiest 18:00-22:00 (China Standard Time; the quota resets at 00:00). "
        f"QPS {QPS:g}, linger {LINGER_SECONDS:g} s, `IMGSWEEP_BATCH__MAX_WAIT_SECONDS` {MAX_WAIT_SECONDS:.0f}, "
        f"reserve {RESERVE_FRACTION:.0%} of the daily allowance. A wait is from an image joining the batcher to "
        "the start of its call (calls take no time here). Day 1 is the planner's first day (nothing learned: the "
        "rest of the day is expected at the busiest hourly rate seen so far); day 3 uses what days 1 and 2 taught "
        'it. The allowance "ran out" when no spendable call was left more than one max wait before the reset.',
        "",
        f"### A daily allowance of {DAILY_CALLS:,} calls",
        "",
        *header,
        *(
            _row(day)
            for day in (
                today,
                r.budget_first,
                learned,
                r.budget_sqrt,
                r.budget_proportional,
                r.budget_unkept,
            )
        ),
        "",
        f"Today's linger spends the allowance by {_clock(today.ran_out_at)} at {today.images_per_call:.1f} images "
        f"per call (many of them the full batches that waited through the night) and then holds every image until "
        f"the reset: p99 {_duration(today.wait_quantile(0.99))}. The budget keeps the calls that the rest of the "
        f"day's images need at full batches, spends the spare ones evenly, and "
        f"reaches a p99 of {_duration(learned.wait_quantile(0.99))} on day 3 "
        f"({learned.spent_share:.0%} of its spendable calls used, the reserve untouched). Spreading the spare "
        "calls along the expected arrivals instead lengthens the tail: the quiet hours' images wait for the "
        "few calls the curve gives them.",
        "",
        f"### A daily allowance of {TIGHT_DAILY_CALLS} calls (a personal free plan)",
        "",
        *header,
        *(_row(day) for day in (r.tight_today, r.tight_first, r.tight_learned, r.tight_unkept)),
        "",
        "Here the day's images need most of the spendable calls even at full batches. Even pacing with no "
        'calls kept (the issue\'s "dividing by the hours left") spends them on small batches at quiet hours '
        f"and runs out at {_clock(r.tight_unkept.ran_out_at)}; keeping calls for the expected images is what the "
        "learned arrivals are for. On its first day the planner knows only the busiest hour seen so far, which "
        "does not foresee the evening: "
        + (
            f"the allowance ran out at {_clock(r.tight_first.ran_out_at)} (by day 3 it lasts)."
            if r.tight_first.ran_out_at is not None
            else "it lasted all the same."
        ),
        "",
        "### A paid pack, the max wait as latency target",
        "",
        *header,
        *(_row(day) for day in (r.pack_today, r.pack_budget)),
        "",
        f"What the arrivals within one max wait allow: each collection's images in each {MAX_WAIT_SECONDS:.0f} s "
        f"window, one call per window (200 items at most): {r.pack_ideal_images_per_call:.1f} images per call.",
        "",
        "### Targets",
        "",
        *_targets(r),
        "",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = section_parser("bench.simulated_day", __doc__)
    parser.add_argument("--seed", type=int, default=20261127)
    args = parser.parse_args(argv)
    return write_section(report_lines(simulate(args.seed)), HEADING, args.update)


if __name__ == "__main__":
    sys.exit(main())
