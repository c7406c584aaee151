"""A blocking Kafka call run on a thread of its own, so that the poll loop goes on while the broker answers.

librdkafka has no asynchronous ``send_offsets_to_transaction`` nor ``commit_transaction``: each blocks its caller
for a few round trips to the coordinators (5-40 ms on a healthy cluster, more on a loaded one), and the poll loop
that calls them every 100 ms stops starting API calls and reading records meanwhile: exactly-once lost 13-15 % of
the events/s of at-least-once that way (docs/performance.md). confluent-kafka releases the GIL inside both calls,
so a thread waits for them instead; the loop asks ``done`` on each turn and reads the outcome on its own thread.
A daemon thread: a process that must end never waits for a broker that does not answer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["InFlight"]

T = TypeVar("T")


class InFlight(Generic[T]):
    """One call under way on its own thread: ``done``, ``wait`` and its ``result`` (what it returned; an exception
    it raised is raised again by ``result``, on the caller's thread). ``finished`` is called once it is over (from
    that thread: setting an event is all it should do)."""

    def __init__(self, call: Callable[[], T], *, finished: Callable[[], None] = lambda: None) -> None:
        self.seconds = 0.0
        """How long the call took, from its start on its thread to its end (the thread's own start is not in it),
        once it is over."""
        self._call = call
        self._finished = finished
        self._over = threading.Event()
        self._value: T | None = None
        self._error: BaseException | None = None
        threading.Thread(target=self._run, name="imgsweep-commit", daemon=True).start()

    def _run(self) -> None:
        started = time.monotonic()
        try:
            self._value = self._call()
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread by ``result``
            self._error = error
        self.seconds = time.monotonic() - started
        self._over.set()
        self._finished()

    def done(self) -> bool:
        return self._over.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Blocks up to ``timeout`` (None: until it is over); True once it is over."""
        return self._over.wait(timeout)

    def result(self) -> T:
        """What the call returned, once ``done``."""
        if not self._over.is_set():
            raise RuntimeError("the call is still under way")
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]
