"""Batch: delist events -> one open batch per collection -> the call step, when a call can start at once.

A batch stays in the batcher, still growing, until the call step can start it (a worker and a rate-limiter
slot are free): waiting batches fill up instead of queueing half empty in a worker, and a crash leaves no
taken batch to redo.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from service.api.models import DeleteItem
from service.metrics import Metrics
from service.pipeline.batcher import Batcher, ReadyBatch
from service.pipeline.pending import PendingEvent
from service.pipeline.steps.abstract import MessageRejected

__all__ = ["BatchStep", "CallStarter"]


class CallStarter(Protocol):
    """What the batch step needs of the call step (``CallStep``)."""

    def accepting(self) -> bool: ...
    def submit(self, ready: ReadyBatch[PendingEvent]) -> None: ...


class BatchStep:
    def __init__(
        self,
        *,
        batcher: Batcher[PendingEvent],
        calls: CallStarter,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._batcher = batcher
        self._calls = calls
        self._metrics = metrics
        self._clock = clock
        self._draining = False

    def submit(self, pending: PendingEvent) -> None:
        now = self._clock()
        collection = pending.event.collection_name
        for item in pending.items():
            self._batcher.add(collection, item, pending, now)

    def retry(self, collection: str, item: DeleteItem, waiters: list[PendingEvent], attempt: int) -> None:
        """An item another call may fix: it joins the collection's open batch again."""
        now = self._clock()
        for waiter in waiters:
            if not waiter.abandoned:
                self._batcher.add(collection, item, waiter, now, attempt)

    def poll(self) -> None:
        """Hands every due batch to the call step while it can start calls; the rest keep growing."""
        now = self._clock()
        while self._calls.accepting():
            ready = self._batcher.take(now, drain=self._draining)
            if ready is None:
                return
            try:
                self._calls.submit(ready)
            except MessageRejected:
                self._batcher.put_back(ready)
                return
            self._metrics.batch_flushes.labels(ready.flush_reason).inc()

    def withdraw(self, pending: PendingEvent) -> list[DeleteItem]:
        """The event's images leave the open batches (a relist); returns them. Images in a call stay there."""
        return self._batcher.withdraw(pending)

    def drain(self) -> None:
        """From now on every batch is due (shutdown): what is left is sent as it is."""
        self._draining = True

    def forget(self, gone: Callable[[PendingEvent], bool]) -> None:
        """Unsent images of events that are ``gone`` (abandoned, revoked) leave their batches."""
        self._batcher.discard_waiters(gone)

    def seconds_until_due(self, now: float) -> float | None:
        return 0.0 if self._draining and self._batcher.pending_items() else self._batcher.seconds_until_due(now)

    def join(self, deadline: float) -> None:
        pass  # nothing runs here: batches leave through poll
