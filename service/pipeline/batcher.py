"""Groups images to delete by collection into calls: at most ``max_items`` and ``max_bytes`` each.

Pure and single-threaded (the poll loop owns it). A collection's open batch keeps absorbing images until it
is full or taken by a worker, even after its linger time ran out: under backlog, a batch waiting for a free
worker fills up instead of going out half empty. Batches are handed out oldest first across collections.
"""

from __future__ import annotations

import bisect
import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from service.api.models import DeleteBatch, DeleteItem
from service.vocabulary import FlushReason

__all__ = ["Batcher", "ReadyBatch", "body_overhead", "item_bytes"]

W = TypeVar("W")
"""Whatever waits for an item's result (the pipeline's pending events)."""


_ITEM_FRAME = len('{"product_id":,"image_id":},')
_NEEDS_ESCAPING = re.compile(r'["\\\x00-\x1f\x7f\u2028\u2029]')


def _json_string_bytes(text: str) -> int:
    return len(json.dumps(text, ensure_ascii=False).encode())


def item_bytes(item: DeleteItem) -> int:
    """Bytes one item adds to the request body, separator included, exactly as ``encode_body`` writes it.

    On the hot path (every image of every event), so it measures the two strings instead of encoding a dict.
    """
    product_id, image_id = item
    if _NEEDS_ESCAPING.search(product_id) or _NEEDS_ESCAPING.search(image_id):  # rare: ids are validated on input
        return _ITEM_FRAME + _json_string_bytes(product_id) + _json_string_bytes(image_id)
    return _ITEM_FRAME + len(product_id.encode()) + len(image_id.encode()) + 4  # 4: two pairs of quotes


def body_overhead(collection: str) -> int:
    """Bytes of the body around the items (``encode_body``'s compact form)."""
    document = {"collection_name": collection, "image_id_list": []}
    return len(json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode())


@dataclass(eq=False, slots=True)
class _OpenBatch(Generic[W]):
    collection: str
    created_at: float
    sequence: int
    size_bytes: int
    waiters: dict[DeleteItem, list[W]] = field(default_factory=dict)
    """The batch's items, in order, and who waits for each; handed over as they are when the batch is taken."""
    attempts: dict[DeleteItem, int] = field(default_factory=dict)
    """The same keys: which try of the item this call is."""
    full: FlushReason | None = None


@dataclass(frozen=True, eq=False)
class ReadyBatch(Generic[W]):
    """A batch handed to a worker: the call to make and who waits for each item."""

    batch: DeleteBatch
    waiters: dict[DeleteItem, list[W]]
    attempts: dict[DeleteItem, int]
    flush_reason: FlushReason
    created_at: float
    sequence: int


def _none(_collection: str) -> bool:
    return False


class Batcher(Generic[W]):
    def __init__(self, *, max_items: int, max_bytes: int, linger_seconds: float) -> None:
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._linger = linger_seconds
        self._batches: list[_OpenBatch[W]] = []  # oldest first
        self._open: dict[str, _OpenBatch[W]] = {}
        self._sequence = itertools.count()
        self._items = 0

    def add(self, collection: str, item: DeleteItem, waiter: W, now: float, attempt: int = 1) -> None:
        """Queues an image; the same (product, image) twice in one open batch is one item with two waiters."""
        batch = self._open.get(collection)
        if batch is not None:
            waiters = batch.waiters.get(item)
            if waiters is not None:
                waiters.append(waiter)
                batch.attempts[item] = max(batch.attempts[item], attempt)
                return
        size = item_bytes(item)
        if batch is None or batch.size_bytes + size > self._max_bytes:
            if batch is not None and batch.full is None:
                batch.full = FlushReason.BYTES
            batch = self._new_batch(collection, now)
        batch.waiters[item] = [waiter]
        batch.attempts[item] = attempt
        batch.size_bytes += size
        self._items += 1
        if len(batch.waiters) >= self._max_items:
            batch.full = FlushReason.SIZE
            del self._open[collection]
        elif batch.size_bytes >= self._max_bytes:
            batch.full = FlushReason.BYTES
            del self._open[collection]

    def _new_batch(self, collection: str, now: float) -> _OpenBatch[W]:
        overhead = body_overhead(collection)
        if overhead + 64 > self._max_bytes:
            raise ValueError(f"collection name too long for a {self._max_bytes}-byte body")
        batch: _OpenBatch[W] = _OpenBatch(collection, now, next(self._sequence), overhead)
        self._batches.append(batch)
        self._open[collection] = batch
        return batch

    def take(self, now: float, *, drain: bool = False, skip: Callable[[str], bool] = _none) -> ReadyBatch[W] | None:
        """The oldest batch that is full, has lingered long enough, or any batch when draining; never one of a
        collection ``skip`` names (its calls are held)."""
        for index, batch in enumerate(self._batches):
            if skip(batch.collection):
                continue
            if batch.full is not None:
                reason = batch.full
            elif drain:
                reason = FlushReason.SHUTDOWN
            elif now - batch.created_at >= self._linger:
                reason = FlushReason.LINGER
            else:
                continue
            return self._hand_out(index, reason)
        return None

    def _hand_out(self, index: int, reason: FlushReason) -> ReadyBatch[W]:
        batch = self._batches.pop(index)
        if self._open.get(batch.collection) is batch:
            del self._open[batch.collection]
        self._items -= len(batch.waiters)
        return ReadyBatch(
            batch=DeleteBatch(batch.collection, tuple(batch.waiters), f"{batch.collection}#{batch.sequence}"),
            waiters=batch.waiters,
            attempts=batch.attempts,
            flush_reason=reason,
            created_at=batch.created_at,
            sequence=batch.sequence,
        )

    def waiting(self) -> list[tuple[int, str, int, float, bool]]:
        """Every batch not yet handed out, oldest first: (sequence, collection, items, created at, full)."""
        return [(b.sequence, b.collection, len(b.waiters), b.created_at, b.full is not None) for b in self._batches]

    def take_sequence(self, sequence: int) -> ReadyBatch[W] | None:
        """The batch ``sequence`` (from ``waiting``), whatever its age: a budget chose it."""
        for index, batch in enumerate(self._batches):
            if batch.sequence == sequence:
                return self._hand_out(index, batch.full or FlushReason.LINGER)
        return None

    def put_back(self, ready: ReadyBatch[W]) -> None:
        """Returns a batch just taken that could not be sent after all, in its place; an open one grows again."""
        collection = ready.batch.collection
        full = ready.flush_reason if ready.flush_reason in (FlushReason.SIZE, FlushReason.BYTES) else None
        size = body_overhead(collection) + sum(item_bytes(item) for item in ready.waiters)
        batch = _OpenBatch(collection, ready.created_at, ready.sequence, size, ready.waiters, ready.attempts, full)
        bisect.insort(self._batches, batch, key=lambda open_batch: open_batch.sequence)
        if full is None and collection not in self._open:
            self._open[collection] = batch
        self._items += len(ready.waiters)

    def seconds_until_due(self, now: float, *, skip: Callable[[str], bool] = _none) -> float | None:
        """How long until some batch is ready by linger (0 if one is ready now); None if nothing is queued (but
        batches of collections ``skip`` names)."""
        batches = [batch for batch in self._batches if not skip(batch.collection)]
        if not batches:
            return None
        if any(batch.full is not None for batch in batches):
            return 0.0
        oldest = min(batch.created_at for batch in batches)
        return max(0.0, oldest + self._linger - now)

    def discard_waiters(self, abandoned: Callable[[W], bool]) -> int:
        """Forgets waiters that are gone (revoked partitions); items nobody waits for leave. Returns items dropped."""
        dropped = 0
        for batch in list(self._batches):
            for item, waiters in list(batch.waiters.items()):
                kept = [waiter for waiter in waiters if not abandoned(waiter)]
                if kept:
                    batch.waiters[item] = kept
                else:
                    del batch.waiters[item], batch.attempts[item]
                    batch.size_bytes -= item_bytes(item)
                    dropped += 1
            if not batch.waiters:
                self._batches.remove(batch)
                if self._open.get(batch.collection) is batch:
                    del self._open[batch.collection]
        self._items -= dropped
        return dropped

    def waiters_of(self, collection: str, product_id: str) -> list[W]:
        """Who waits for images of this product in batches not yet handed out (a relist's search; not hot)."""
        found: dict[int, W] = {}
        for batch in self._batches:
            if batch.collection == collection:
                for item, waiters in batch.waiters.items():
                    if item.product_id == product_id:
                        found.update((id(waiter), waiter) for waiter in waiters)
        return list(found.values())

    def withdraw(self, waiter: W) -> list[DeleteItem]:
        """Takes ``waiter`` out of every batch not yet handed out; returns the items it was waiting for there."""
        withdrawn: list[DeleteItem] = []
        for batch in list(self._batches):
            for item, waiters in list(batch.waiters.items()):
                if waiter not in waiters:
                    continue
                withdrawn.append(item)
                waiters.remove(waiter)
                if not waiters:
                    del batch.waiters[item], batch.attempts[item]
                    batch.size_bytes -= item_bytes(item)
                    self._items -= 1
            if not batch.waiters:
                self._batches.remove(batch)
                if self._open.get(batch.collection) is batch:
                    del self._open[batch.collection]
        return withdrawn

    def pending_items(self) -> int:
        return self._items
