"""One account-wide pace for every worker thread: at most ``rate`` calls a second, slower after a 10043.

The API counts calls over a sliding second *when they arrive*, so the pace is kept between the moments
requests actually leave, not the moments callers were allowed to start. Two rules, both must hold:

- a virtual schedule (GCRA with no burst): each caller reserves the next free slot under a lock and sleeps
  outside it, so threads never hold the lock while sleeping and callers take their turns in order;
- one caller at a time is *sending* (between its turn and the moment its request body is written), and the
  next may start only a full spacing after that moment. A request held up on its way out (a busy GIL, a slow
  connect) pushes the next one back instead of letting the two arrive together.

The spacing is ``(1 + margin) / rate``; the margin covers what happens after the request left (the server's
own queueing before it counts the call). The pace follows AIMD: cut by a quarter when the API answers
10043/10044, then raised by a small step per successful call back to the ceiling (the account's QPS, or this
replica's share of it).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Final

from service.api.errors import CallAbandoned

__all__ = ["RateLimiter", "SendSlot"]

_STOP_CHECK_SECONDS: Final = 0.05
"""How often a caller waiting for another's send to finish looks at the stop flag."""

_SENT_EVENT: Final = "http11.send_request_body.complete"
_SENDING_EVENT: Final = "http11.send_request_headers.started"


class SendSlot:
    """One caller's turn to send. Report when the request has left (``sent``) and always ``release`` it.

    ``trace`` is an httpcore trace hook doing both reports for an httpx request
    (``extensions={"trace": slot.trace}``): the request has left when its body has been written.
    """

    def __init__(self, finish: Callable[[bool], None], waited: float) -> None:
        self.waited = waited
        self._finish = finish
        self._started = False
        self._done = False

    def sent(self) -> None:
        if not self._done:
            self._done = True
            self._finish(True)

    def release(self) -> None:
        """Ends the turn. A request that never started to leave does not move the pace; one that may have
        partly left counts as sent now, since the server may count it."""
        if not self._done:
            self._done = True
            self._finish(self._started)

    def trace(self, event: str, _info: dict[str, Any]) -> None:
        if event == _SENDING_EVENT:
            self._started = True
        elif event == _SENT_EVENT:
            self.sent()


class RateLimiter:
    def __init__(
        self,
        qps: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        floor_fraction: float = 0.1,
        decrease_factor: float = 0.75,
        increase_fraction: float = 0.05,
        margin: float = 0.015,
    ) -> None:
        if qps <= 0:
            raise ValueError("qps must be positive")
        self._clock = clock
        self._lock = threading.Lock()
        self._send_done = threading.Condition(self._lock)
        self._ceiling = qps
        self._rate = qps
        self._floor_fraction = floor_fraction
        self._increase_fraction = increase_fraction
        self._decrease_factor = decrease_factor
        self._margin = margin
        self._next_slot = clock()
        self._sending = False
        self._last_sent: float | None = None
        self._granted = threading.local()
        self._freed: list[Callable[[], None]] = []

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def ceiling(self) -> float:
        return self._ceiling

    def _spacing(self) -> float:
        return (1.0 + self._margin) / self._rate

    def set_ceiling(self, qps: float) -> None:
        """A new share of the account's QPS; the current pace never exceeds it.

        The next slot moves to one new spacing after the last one granted: a lower share slows the very next
        call (another replica is about to take the difference), a higher one lets it come sooner.
        """
        if qps <= 0:
            raise ValueError("qps must be positive")
        with self._lock:
            was_at_ceiling = self._rate >= self._ceiling
            old_spacing = self._spacing()
            self._ceiling = qps
            self._rate = qps if was_at_ceiling else min(self._rate, qps)
            self._next_slot += self._spacing() - old_spacing

    def reserve(self) -> float:
        """Claims the next slot on the schedule; returns how long the caller must wait for it. Never blocks."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next_slot)
            self._next_slot = slot + self._spacing()
            return slot - now

    def try_acquire(self) -> SendSlot | None:
        """A slot to send now, or None when a caller would have to wait (the pace, another send). Never blocks.

        The poll loop takes a call's first slot this way, so a batch leaves the batcher only when its call can
        start; ``granted`` hands the slot to the worker thread that makes the call.
        """
        with self._lock:
            now = self._clock()
            if self._sending or self._next_slot > now:
                return None
            if self._last_sent is not None and self._last_sent + self._spacing() > now:
                return None
            self._next_slot = now + self._spacing()
            self._sending = True
        return SendSlot(self._finish_send, 0.0)

    def seconds_until_free(self) -> float:
        """How long until ``try_acquire`` could succeed, if nobody else takes the slot (a guess while sending)."""
        with self._lock:
            now = self._clock()
            if self._sending:
                return self._spacing()
            after_last = self._last_sent + self._spacing() - now if self._last_sent is not None else 0.0
            return max(0.0, self._next_slot - now, after_last)

    @contextlib.contextmanager
    def granted(self, slot: SendSlot) -> Iterator[None]:
        """Within this block, this thread's first ``acquire`` returns ``slot`` at once; unused, it is released."""
        self._granted.slot = slot
        try:
            yield
        finally:
            self._granted.slot = None
            slot.release()

    def acquire(self, stop: threading.Event) -> SendSlot:
        """Blocks until this caller may send; the slot says how long it waited and takes the send reports.

        Raises CallAbandoned if ``stop`` is set while waiting (shutdown), so no call starts after it.
        """
        granted: SendSlot | None = getattr(self._granted, "slot", None)
        if granted is not None:
            self._granted.slot = None
            return granted
        started = self._clock()
        delay = self.reserve()
        if delay > 0 and stop.wait(delay):
            raise CallAbandoned("shutdown while waiting for the rate limiter")
        with self._send_done:
            while self._sending:
                if stop.is_set():
                    raise CallAbandoned("shutdown while waiting for the rate limiter")
                self._send_done.wait(_STOP_CHECK_SECONDS)
            self._sending = True
            after_last = self._last_sent + self._spacing() - self._clock() if self._last_sent is not None else 0.0
        slot = SendSlot(self._finish_send, 0.0)
        if (after_last > 0 and stop.wait(after_last)) or stop.is_set():
            slot.release()
            raise CallAbandoned("shutdown before the call")
        slot.waited = self._clock() - started
        return slot

    def when_free(self, callback: Callable[[], None]) -> None:
        """``callback`` runs (on the sending thread) each time a send ends: a waiting caller may go now."""
        self._freed.append(callback)

    def _finish_send(self, left: bool) -> None:
        with self._send_done:
            if left:
                self._last_sent = self._clock()
            self._sending = False
            self._send_done.notify()
        for callback in self._freed:
            callback()

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
