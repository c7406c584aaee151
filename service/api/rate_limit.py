"""One account-wide pace for every worker thread: at most ``rate`` calls a second, slower after a 10043.

Calls are spaced on a virtual schedule (GCRA with no burst): each caller reserves the next free slot under
a lock and then waits outside it, so threads never hold the lock while sleeping. The pace follows AIMD:
cut by a quarter when the API answers 10043/10044, then raised by a small step per successful call back to
the ceiling (the account's QPS, or this replica's share of it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from service.api.errors import CallAbandoned

__all__ = ["RateLimiter"]


class RateLimiter:
    def __init__(
        self,
        qps: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        floor_fraction: float = 0.1,
        decrease_factor: float = 0.75,
        increase_fraction: float = 0.05,
        margin: float = 0.04,
    ) -> None:
        if qps <= 0:
            raise ValueError("qps must be positive")
        self._clock = clock
        self._lock = threading.Lock()
        self._ceiling = qps
        self._rate = qps
        self._floor_fraction = floor_fraction
        self._increase_fraction = increase_fraction
        self._decrease_factor = decrease_factor
        # Calls leave a little further apart than 1/rate: a server counting a sliding second sees requests
        # jittered by scheduling and the network, and exactly-spaced calls would sometimes land 3 in 1 s.
        self._margin = margin
        self._next_slot = clock()

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def ceiling(self) -> float:
        return self._ceiling

    def set_ceiling(self, qps: float) -> None:
        """A new share of the account's QPS (after a rebalance); the current pace never exceeds it."""
        if qps <= 0:
            raise ValueError("qps must be positive")
        with self._lock:
            was_at_ceiling = self._rate >= self._ceiling
            self._ceiling = qps
            self._rate = qps if was_at_ceiling else min(self._rate, qps)

    def reserve(self) -> float:
        """Claims the next slot; returns how long the caller must wait before using it. Never blocks."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next_slot)
            self._next_slot = slot + (1.0 + self._margin) / self._rate
            return slot - now

    def acquire(self, stop: threading.Event) -> float:
        """Blocks until this caller may make a call; returns the seconds waited.

        Raises CallAbandoned if ``stop`` is set while waiting (shutdown), so no call starts after it.
        """
        delay = self.reserve()
        if delay > 0 and stop.wait(delay):
            raise CallAbandoned("shutdown while waiting for the rate limiter")
        if stop.is_set():
            raise CallAbandoned("shutdown before the call")
        return delay

    def on_throttled(self) -> None:
        """The API said 10043/10044: slow down (by a quarter) and leave a gap before the next slot.

        A quarter, not a half: at the account's own limit a 10043 is usually arrival jitter, not a second
        caller, and halving a 2-QPS pace for the ~20 successes it takes to recover wastes more than it saves.
        Repeated 10043s (someone else spends the account's QPS too) still bring the pace down fast.
        """
        with self._lock:
            self._rate = max(self._ceiling * self._floor_fraction, self._rate * self._decrease_factor)
            self._next_slot = max(self._next_slot, self._clock() + 1.0 / self._rate)

    def on_success(self) -> None:
        with self._lock:
            self._rate = min(self._ceiling, self._rate + self._ceiling * self._increase_fraction)
