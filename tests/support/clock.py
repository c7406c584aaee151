"""Time that moves only when a test moves it, and a stop event that moves it instead of sleeping.

One clock serves every kind of clock the code takes: ``clock()`` is seconds (a monotonic clock, or Unix time
where the code wants a wall clock as a number), ``clock.utc()`` the same instant as an aware datetime.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

__all__ = ["FakeClock", "SleeplessStop"]


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    @classmethod
    def at(cls, moment: datetime) -> FakeClock:
        """A clock showing ``moment`` (aware), for code that reads the wall clock."""
        return cls(moment.timestamp())

    def __call__(self) -> float:
        return self.now

    def utc(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)

    def advance(self, seconds: float) -> None:
        self.now += seconds


class SleeplessStop(threading.Event):
    """A stop event whose ``wait(timeout)`` advances a FakeClock instead of sleeping, and records each wait."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None, "code under test waits with a timeout, so it can notice the stop"
        self.waits.append(timeout)
        self.clock.advance(timeout)
        return self.is_set()
