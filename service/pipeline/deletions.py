"""The memory of deletions: which images of which products were deleted, for the relists that come later.

A relist of a product whose images were already deleted must get an outcome naming them (``re_add_required``),
or the product is listed again with no images and nobody is told. That memory must outlive the process, so it
is a state store after Kafka Streams': a local view per input partition, every change written to a compacted
changelog topic co-partitioned with the input (a product's delist, its relist and its changelog records share a
partition number), inside the same transaction as the outcomes (exactly-once delivery), and restored from the
changelog for the partitions a replica is given. A relist after a restart, a rebalance or a week finds it.

Bounded twice: by age (``window_seconds``; the changelog topic's ``retention.ms`` deletes what is older, and
compaction keeps one record per product) and by count (``max_products`` per replica, oldest forgotten first).
An entry costs about 200 bytes plus its image ids: a million products with four images each is about 350 MB,
so the default bound is 500,000 products.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from service.settings import StateSettings

__all__ = ["CHANGELOG_KIND", "ChangelogRecord", "DeletionMemory", "Product"]

Product = tuple[str, str]
"""(collection, product id)."""

CHANGELOG_KIND: Final = "deletions"


@dataclass(frozen=True, slots=True)
class ChangelogRecord:
    """One change of the memory, for the changelog topic: a product's images (or a tombstone: ``value`` None)."""

    partition: int
    key: bytes
    value: bytes | None


@dataclass(slots=True)
class _Entry:
    at_ms: int
    images: dict[str, None] = field(default_factory=dict)


def _wall_ms() -> int:
    return int(time.time() * 1000)


def _key(product: Product) -> bytes:
    return json.dumps(list(product), ensure_ascii=False, separators=(",", ":")).encode()


class DeletionMemory:
    def __init__(self, *, window_seconds: float, max_products: int, wall_ms: Callable[[], int] = _wall_ms) -> None:
        self._window_ms = int(window_seconds * 1000)
        self._max_products = max_products
        self._wall_ms = wall_ms
        self._entries: OrderedDict[tuple[int, Product], _Entry] = OrderedDict()
        """By (input partition, product), least recently deleted first."""

    @classmethod
    def from_settings(cls, state: StateSettings) -> DeletionMemory:
        return cls(window_seconds=state.deletions_window_seconds, max_products=state.max_remembered_products)

    def deleted(self, partition: int, collection: str, product_id: str, images: Iterable[str]) -> ChangelogRecord:
        """Images of a product were deleted: remembered, and the change to write (one for all of them)."""
        product = (collection, product_id)
        entry = self._entries.pop((partition, product), None) or _Entry(self._wall_ms())
        entry.at_ms = self._wall_ms()
        entry.images.update(dict.fromkeys(images))
        self._entries[partition, product] = entry
        self._bound()
        return ChangelogRecord(partition, _key(product), _value(entry))

    def take(self, partition: int, product: Product) -> tuple[list[str], ChangelogRecord | None]:
        """The product's images deleted within the window, forgotten once told (the catalog adds them again);
        with the tombstone to write, if anything was remembered."""
        entry = self._entries.pop((partition, product), None)
        if entry is None:
            return [], None
        tombstone = ChangelogRecord(partition, _key(product), None)
        if self._wall_ms() - entry.at_ms > self._window_ms:
            return [], tombstone
        return list(entry.images), tombstone

    def restore(self, partition: int, records: Iterable[tuple[bytes | None, bytes | None]]) -> int:
        """A partition's changelog, oldest first (key, value): the memory as its previous owner left it, over what
        is remembered of it already (a tombstone forgets a product). Returns how many of its products are
        remembered."""
        horizon = self._wall_ms() - self._window_ms
        restored: dict[Product, _Entry | None] = {}
        for key, value in records:
            product = None if key is None else _product(key)
            if product is None:
                continue
            restored.pop(product, None)
            entry = _entry(value)
            restored[product] = entry if entry is not None and entry.at_ms >= horizon else None
        for product, entry in sorted(restored.items(), key=lambda item: -1 if item[1] is None else item[1].at_ms):
            self._entries.pop((partition, product), None)
            if entry is not None:
                self._entries[partition, product] = entry
        self._bound()
        return sum(1 for number, _ in self._entries if number == partition)

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions gone to another replica: it restores their memory from the changelog."""
        gone = set(partitions)
        if gone:
            self._entries = OrderedDict((key, entry) for key, entry in self._entries.items() if key[0] not in gone)

    def __len__(self) -> int:
        """Products remembered, over every partition held."""
        return len(self._entries)

    def _bound(self) -> None:
        while len(self._entries) > self._max_products:
            self._entries.popitem(last=False)


def _value(entry: _Entry) -> bytes:
    return json.dumps({"at": entry.at_ms, "images": list(entry.images)}, separators=(",", ":")).encode()


def _product(key: bytes) -> Product | None:
    try:
        parts = json.loads(key)
    except ValueError:
        return None
    if not (isinstance(parts, list) and len(parts) == 2 and all(isinstance(part, str) for part in parts)):
        return None
    return (parts[0], parts[1])


def _entry(value: bytes | None) -> _Entry | None:
    if value is None:
        return None
    try:
        document = json.loads(value)
        at, images = document["at"], document["images"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(at, int) or not isinstance(images, list) or not all(isinstance(i, str) for i in images):
        return None
    return _Entry(at, dict.fromkeys(images))
