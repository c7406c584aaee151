"""Hold: delists wait out the relist grace; a relist cancels what of its product is not yet sent.

A delist's images are not sent before ``grace`` of its partition's *event time* has passed since the delist
(its record timestamp), so a product relisted a moment later (a price fix, a stock glitch) keeps its images.
Event time, not wall time: a backlog read at full speed still sees the relist before the delete. A partition
that is caught up (nothing more to read now, or its backlog is full and it is paused) lets its event time follow
the wall clock, so nothing waits for more traffic. When the pipeline is full and refuses input, the oldest held
delists go regardless: the relist could not be read before them anyway.

A relist of a product (same collection and product id) cancels the product's images not yet sent: those held
here and those still in an open batch. Each cancelled image gets status ``cancelled`` (reason ``relisted``)
in its delist's outcome. Images already sent are deleted; if some were deleted before the relist came (this
process remembers recent deletions), the relist gets an outcome of its own naming them, so the catalog can
add them again. A delist older than ``max_age`` is not held at all: it is skipped with every image
``cancelled`` (reason ``too_old``).

This needs producers to put a product's delist and relist on one partition (keyed by product id).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from service.api.models import DeleteItem, ItemResult, ItemStatus
from service.metrics import Metrics
from service.pipeline.deletions import Product
from service.pipeline.events import EventKind
from service.pipeline.ledger import Ledger
from service.pipeline.partitions import PartitionState
from service.pipeline.pending import PendingEvent
from service.pipeline.steps.abstract import Step
from service.vocabulary import CancelReason, SkipReason

__all__ = ["RE_ADD_REASON", "EventClock", "HoldStep", "HoldTimes", "Holding", "Lanes"]

RE_ADD_REASON = "deleted_before_relist"


class Holding(Step[PendingEvent], Protocol):
    """What the decode step hands to: a step told when the input waits because the pipeline is full."""

    def press(self) -> None: ...


class Lanes(Step[PendingEvent], Protocol):
    """What the hold step hands to (the route step): it also answers where a product's images are."""

    def pending_of(self, collection: str, product_id: str) -> list[PendingEvent]:
        """Delists of a product with images in an open batch or in a call."""

    def withdraw(self, pending: PendingEvent) -> list[DeleteItem]:
        """The event's images leave the open batches; returns them (images in a call stay there)."""


@dataclass(frozen=True, slots=True)
class HoldTimes:
    grace_seconds: float
    """How long a delist waits, in its partition's event time, for a relist (0: not held)."""
    max_age_seconds: float | None
    """A delist older than this (wall time) is cancelled as ``too_old``; None: no limit."""


def _wall_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)
class EventClock:
    """A partition's event time: its records' timestamps, following the wall clock once it is caught up."""

    caught_up: Callable[[PartitionState], bool]
    wall_ms: Callable[[], int] = field(default=_wall_ms)

    def partition_ms(self, state: PartitionState) -> int:
        seen = state.event_time_ms if state.event_time_ms is not None else 0
        return max(seen, self.wall_ms()) if self.caught_up(state) else seen


class HoldStep:
    def __init__(
        self, *, next_step: Lanes, ledger: Ledger, times: HoldTimes, clock: EventClock, metrics: Metrics
    ) -> None:
        self._next = next_step
        self._ledger = ledger
        self._grace_ms = int(times.grace_seconds * 1000)
        self._max_age_ms = None if times.max_age_seconds is None else int(times.max_age_seconds * 1000)
        self._clock = clock
        self._metrics = metrics
        self._held: dict[int, deque[PendingEvent]] = {}
        """Per partition, delists waiting out the grace, in arrival order."""
        self._pressed = False

    def submit(self, pending: PendingEvent) -> None:
        if pending.event.kind is EventKind.RELIST:
            self._relist(pending)
            return
        at = self._event_time_ms(pending)
        if self._max_age_ms is not None and self._clock.wall_ms() - at > self._max_age_ms:
            self._cancel(pending, pending.items(), CancelReason.TOO_OLD)
            return
        if self._grace_ms <= 0:
            self._next.submit(pending)
            return
        self._held.setdefault(pending.source.partition, deque()).append(pending)

    def press(self) -> None:
        """The input waits (the pipeline is full): on the next poll the oldest held delist goes regardless."""
        self._pressed = True

    def poll(self) -> None:
        """Sends the delists whose grace has passed (and, pressed, the oldest regardless); polls the route."""
        pressed, self._pressed = self._pressed, False
        for number, held in list(self._held.items()):
            state = self._ledger.get(number)
            if state is None:
                del self._held[number]
                continue
            clock = self._clock.partition_ms(state)
            while held and (held[0].abandoned or self._event_time_ms(held[0]) + self._grace_ms <= clock or pressed):
                pending = held.popleft()
                pressed = False
                if not pending.abandoned:
                    self._next.submit(pending)
            if not held:
                del self._held[number]
        self._next.poll()

    def seconds_until_due(self) -> float | None:
        """How long until a held delist may go, at the wall clock's pace; None if none is held."""
        if not self._held:
            return None
        now = self._clock.wall_ms()
        due = min(self._event_time_ms(held[0]) + self._grace_ms for held in self._held.values() if held)
        return max(0.0, (due - now) / 1000)

    def held(self) -> int:
        return sum(len(held) for held in self._held.values())

    def collections(self) -> set[str]:
        """The collections of the delists held."""
        return {pending.event.collection_name for held in self._held.values() for pending in held}

    def close(self) -> None:
        """Held delists are not started work: a drain gives them up (the ledger abandoned them)."""
        self._held.clear()
        self._next.close()

    def join(self, deadline: float) -> None:
        self._next.join(deadline)

    def terminate(self) -> None:
        self._held.clear()
        self._next.terminate()

    def _relist(self, relist: PendingEvent) -> None:
        product = _product(relist)
        held = [pending for held in self._held.values() for pending in held if _product(pending) == product]
        for pending in held:
            self._unhold(pending)
            self._cancel(
                pending,
                [item for item in pending.items() if item.image_id not in pending.results],
                CancelReason.RELISTED,
            )
        for pending in self._next.pending_of(*product):  # in open batches (withdrawn) or in calls (retries cancelled)
            if pending.abandoned or pending.complete or pending.event.kind is not EventKind.DELIST:
                continue
            self._cancel(pending, self._next.withdraw(pending), CancelReason.RELISTED)
        deleted = self._ledger.take_deleted(relist.source.partition, product)
        if not deleted:
            self._metrics.events_skipped.labels(SkipReason.RELIST).inc()
        readd = [
            ItemResult(DeleteItem(relist.event.product_id, image_id), ItemStatus.DELETED, RE_ADD_REASON)
            for image_id in deleted
        ]
        self._ledger.settle_relist(relist, readd)

    def _cancel(self, pending: PendingEvent, items: list[DeleteItem], reason: CancelReason) -> None:
        self._metrics.image_decided(ItemStatus.CANCELLED, reason, len(items))
        self._ledger.cancel(pending, items, reason)

    def _unhold(self, pending: PendingEvent) -> bool:
        held = self._held.get(pending.source.partition)
        if held is not None and pending in held:
            held.remove(pending)
            return True
        return False

    def _event_time_ms(self, pending: PendingEvent) -> int:
        if pending.source.timestamp_ms is not None:
            return pending.source.timestamp_ms
        return int(pending.first_seen_at.timestamp() * 1000)


def _product(pending: PendingEvent) -> Product:
    return (pending.event.collection_name, pending.event.product_id)
