"""The daily call quota: once it is spent, every call waits for the reset instead of wasting a request.

The gate learns the quota from each response's ``remainTimes``; ``0`` left or a 10040 answer closes it until
the next daily reset (midnight China Standard Time by default). Waiting is done in short steps against an
injectable clock, so tests can move time and shutdown can interrupt an hours-long wait.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo

from service.api.errors import CallAbandoned
from service.api.models import QuotaFacts

__all__ = ["QuotaGate", "QuotaState", "next_reset"]

UNLIMITED = -1


@dataclass(frozen=True, slots=True)
class QuotaState:
    remaining: int | None
    """Calls left as the API last said; None before the first answer, -1 for unlimited."""
    exhausted: bool
    resets_at: datetime | None
    seconds_until_reset: float
    charged_calls: int


def next_reset(now: datetime, zone: tzinfo, at: time) -> datetime:
    """The first reset strictly after ``now`` (aware datetimes), as a UTC datetime."""
    local = now.astimezone(zone)
    candidate = datetime.combine(local.date(), at, tzinfo=zone)
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), at, tzinfo=zone)
    return candidate.astimezone(UTC)


class QuotaGate:
    def __init__(
        self,
        zone: tzinfo,
        reset_time: time,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        step_seconds: float = 1.0,
        reprobe_seconds: float = 600.0,
    ) -> None:
        self._zone = zone
        self._reset_time = reset_time
        self._clock = clock
        self._step = step_seconds
        self._reprobe = timedelta(seconds=reprobe_seconds)
        self._lock = threading.Lock()
        self._remaining: int | None = None
        self._closed_until: datetime | None = None
        self._last_reopened: datetime | None = None
        self._charged = 0

    def observe(self, facts: QuotaFacts) -> None:
        """Learns from a response; closes the gate when it says nothing is left."""
        with self._lock:
            if facts.charge:
                self._charged += 1
            if facts.remain_times is None:
                return
            self._remaining = facts.remain_times
            if facts.remain_times == 0:
                self._close()

    def exhausted(self) -> None:
        """The API answered 10040/10010: hold every call until the reset."""
        with self._lock:
            self._remaining = 0
            self._close()

    def _close(self) -> None:
        now = self._clock()
        until = next_reset(now, self._zone, self._reset_time)
        if self._last_reopened is not None and now - self._last_reopened < self._reprobe:
            # Still exhausted right after a reset: our idea of the reset time is off (clock skew, or a
            # paid pack that ran out). Probe again soon instead of sleeping through a whole day.
            until = min(until, now + self._reprobe)
        if self._closed_until is None or until > self._closed_until:
            self._closed_until = until

    def wait(self, stop: threading.Event) -> float:
        """Blocks while the quota is spent; returns seconds waited. Raises CallAbandoned on shutdown."""
        waited = 0.0
        while True:
            with self._lock:
                if self._closed_until is None:
                    return waited
                now = self._clock()
                left = (self._closed_until - now).total_seconds()
                if left <= 0:
                    self._closed_until = None
                    self._remaining = None
                    self._last_reopened = now
                    return waited
            step = min(self._step, left)
            if stop.wait(step):
                raise CallAbandoned("shutdown while waiting for the quota reset")
            waited += step

    def state(self) -> QuotaState:
        with self._lock:
            now = self._clock()
            exhausted = self._closed_until is not None and self._closed_until > now
            resets_at = self._closed_until if exhausted else next_reset(now, self._zone, self._reset_time)
            return QuotaState(
                remaining=self._remaining,
                exhausted=exhausted,
                resets_at=resets_at,
                seconds_until_reset=max(0.0, (resets_at - now).total_seconds()) if resets_at else 0.0,
                charged_calls=self._charged,
            )
