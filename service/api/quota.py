"""The call quota: once it is spent, every call waits instead of wasting a request.

Two ways to run out, two states. The daily quota (``remainTimes`` 0, or a 10040 answer) closes the gate until
the next daily reset (midnight China Standard Time by default). A paid call pack that ran out (10010, payment
required) does not come back at any reset: someone has to top it up, so the gate closes and probes with one
round of calls every ``payment_probe_seconds`` (an hour by default) and at the daily reset, and reports
``payment_required`` until an answer says calls go through again. Waiting is done in short steps against an
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
PAYMENT_PROBE_SECONDS = 3600.0
"""Default time between probes while a paid pack is spent (10010): rarely, since each probe is a refused call."""


@dataclass(frozen=True, slots=True)
class QuotaState:
    remaining: int | None
    """Calls left as the API last said; None before the first answer, -1 for unlimited."""
    exhausted: bool
    """Calls are held: the daily quota is spent, or (with ``payment_required``) the paid pack is."""
    resets_at: datetime | None
    """When held calls go again (the reset, or the next payment probe); else the next daily reset."""
    seconds_until_reset: float
    charged_calls: int
    payment_required: bool = False
    """The API answered 10010: a paid call pack ran out. Stays true between probes until calls go through."""


def next_reset(now: datetime, zone: tzinfo, at: time) -> datetime:
    """The first reset strictly after ``now`` (aware datetimes), as a UTC datetime.

    ``zone`` is a fixed offset or an IANA zone. Instants are compared in UTC: two datetimes in the same zone
    compare by wall time, which in the repeated hour of a daylight-saving change would name a reset that has
    already passed.
    """
    local = now.astimezone(zone)
    candidate = datetime.combine(local.date(), at, tzinfo=zone).astimezone(UTC)
    if candidate <= now:
        candidate = datetime.combine(local.date() + timedelta(days=1), at, tzinfo=zone).astimezone(UTC)
    return candidate


class QuotaGate:
    def __init__(
        self,
        zone: tzinfo,
        reset_time: time,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        step_seconds: float = 1.0,
        reprobe_seconds: float = 600.0,
        payment_probe_seconds: float = PAYMENT_PROBE_SECONDS,
    ) -> None:
        self._zone = zone
        self._reset_time = reset_time
        self._clock = clock
        self._step = step_seconds
        self._reprobe = timedelta(seconds=reprobe_seconds)
        self._payment_probe = timedelta(seconds=payment_probe_seconds)
        self._lock = threading.Lock()
        self._remaining: int | None = None
        self._closed_until: datetime | None = None
        self._last_reopened: datetime | None = None
        self._charged = 0
        self._payment_required = False

    def observe(self, facts: QuotaFacts) -> None:
        """Learns from a response that went through; closes the gate when it says nothing is left."""
        with self._lock:
            self._payment_required = False  # the call was served, so the account can pay for calls again
            if facts.charge:
                self._charged += 1
            if facts.remain_times is None:
                return
            self._remaining = facts.remain_times
            if facts.remain_times == 0:
                self._close()

    def exhausted(self) -> None:
        """The API answered 10040: hold every call until the daily reset."""
        with self._lock:
            self._payment_required = False
            self._remaining = 0
            self._close()

    def payment_required(self) -> None:
        """The API answered 10010: a paid pack ran out. Hold every call until the next probe.

        The probe comes after ``payment_probe_seconds``, or at the daily reset if that is sooner (an account
        may also have a free daily allowance). Waiting for the reset alone would never end for a pack.
        """
        with self._lock:
            self._payment_required = True
            self._remaining = 0
            now = self._clock()
            until = min(now + self._payment_probe, next_reset(now, self._zone, self._reset_time))
            if self._closed_until is None or until > self._closed_until:
                self._closed_until = until

    def _close(self) -> None:
        now = self._clock()
        until = next_reset(now, self._zone, self._reset_time)
        if self._last_reopened is not None and now - self._last_reopened < self._reprobe:
            # Still exhausted right after a reset: our idea of the reset time is off (clock skew, or the
            # allowance was a paid pack whose last call said remainTimes 0). Probe again soon instead of
            # sleeping through a whole day; a spent pack answers 10010 and is then probed rarely.
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
                    # Only a daily reset can have been guessed wrong (see _close); a payment probe was not one.
                    self._last_reopened = None if self._payment_required else now
                    return waited
            step = min(self._step, left)
            if stop.wait(step):
                raise CallAbandoned("shutdown while waiting for the quota reset")
            waited += step

    def seconds_until_daily_reset(self) -> float:
        """Until the next daily reset, whatever the gate's state (a closed gate may reopen earlier, to probe)."""
        now = self._clock()
        return max(0.0, (next_reset(now, self._zone, self._reset_time) - now).total_seconds())

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
                payment_required=self._payment_required,
            )
