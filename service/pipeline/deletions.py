"""The memory of deletions: which images of which products were deleted, for the relists that come later.

A relist of a product whose images were already deleted must get an outcome naming them (``re_add_required``),
or the product is listed again with no images and nobody is told. That memory must outlive the process, so it
is a state store after Kafka Streams': a local view per partition of the topic the pipeline reads, every change
written to a compacted changelog topic co-partitioned with it (a product's delist, its relist and its changelog
records share a partition number), inside the same transaction as the outcomes (exactly-once delivery), and
restored from the changelog for the partitions a replica is given. A relist after a restart, a rebalance or a
week finds it.

Bounded twice: by age (``window_seconds``; the changelog topic's ``retention.ms`` deletes what is older, and
compaction keeps one record per product) and by count (``max_products`` per replica, oldest forgotten first).

Held compactly, because the count bound is what an operator sizes a pod by: one ordered map of two ``bytes`` a
product, no object per image nor per entry. The key is the partition's number followed by the changelog key
(``3["shoes","p1"]``), the value when it was deleted and its image ids (``1800000000000\\0a.jpg\\0b.jpg``). A
product costs about 200 bytes plus the lengths of its collection, its id and its image ids (tracemalloc, the
sample stream's ids of 11 and 17 characters: 228 bytes with one image, 282 with four, where a dataclass holding a
dict of image ids under tuple keys cost 631 and 829). At the default bound of 500,000 products of four images
that is about 140 MB, 180 MB of RSS after a long run's turnover (docs/performance.md, "Memory of deletions").
"""

from __future__ import annotations

import json
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from service.settings import StateSettings

__all__ = ["CHANGELOG_KIND", "ChangelogRecord", "DeletionMemory", "Product"]

Product = tuple[str, str]
"""(collection, product id)."""

CHANGELOG_KIND: Final = "deletions"

_SEPARATOR: Final = "\0"
"""Between the time and the image ids of a held entry: events refuse control characters in ids, and a changelog
record holding one is skipped on restore."""


@dataclass(frozen=True, slots=True)
class ChangelogRecord:
    """One change of the memory, for the changelog topic: a product's images (or a tombstone: ``value`` None)."""

    partition: int
    key: bytes
    value: bytes | None


def _wall_ms() -> int:
    return int(time.time() * 1000)


def _key(product: Product) -> bytes:
    return json.dumps(list(product), ensure_ascii=False, separators=(",", ":")).encode()


class DeletionMemory:
    def __init__(self, *, window_seconds: float, max_products: int, wall_ms: Callable[[], int] = _wall_ms) -> None:
        self._window_ms = int(window_seconds * 1000)
        self._max_products = max_products
        self._wall_ms = wall_ms
        self._entries: OrderedDict[bytes, bytes] = OrderedDict()
        """By partition and changelog key (``_slot``), least recently deleted first: when and which images
        (``_pack``)."""

    @classmethod
    def from_settings(cls, state: StateSettings) -> DeletionMemory:
        return cls(window_seconds=state.deletions_window_seconds, max_products=state.max_remembered_products)

    def deleted(self, partition: int, collection: str, product_id: str, images: Iterable[str]) -> ChangelogRecord:
        """Images of a product were deleted: remembered, and the change to write (one for all of them). Raises
        ValueError for an image id holding a NUL character (events never do)."""
        key = _key((collection, product_id))
        slot = _slot(partition, key)
        given = list(images)
        if _has_nul(given):
            raise ValueError(f"an image id of {collection}/{product_id} holds a NUL character")
        held = self._entries.pop(slot, None)
        merged = dict.fromkeys(() if held is None else _unpack(held)[1])
        merged.update(dict.fromkeys(given))
        at_ms = self._wall_ms()
        self._entries[slot] = _pack(at_ms, merged)
        self._bound()
        return ChangelogRecord(partition, key, _value(at_ms, list(merged)))

    def take(self, partition: int, product: Product) -> tuple[list[str], ChangelogRecord | None]:
        """The product's images deleted within the window, forgotten once told (the catalog adds them again);
        with the tombstone to write, if anything was remembered."""
        key = _key(product)
        held = self._entries.pop(_slot(partition, key), None)
        if held is None:
            return [], None
        tombstone = ChangelogRecord(partition, key, None)
        at_ms, images = _unpack(held)
        if self._wall_ms() - at_ms > self._window_ms:
            return [], tombstone
        return images, tombstone

    def restore(self, partition: int, records: Iterable[tuple[bytes | None, bytes | None]]) -> int:
        """A partition's changelog, oldest first (key, value): the memory as its previous owner left it, in the
        order it wrote it, over what is remembered of it already (a tombstone forgets a product). Each record is
        applied as it comes (``records`` may be a reader's stream), the bound kept all along, so a restore holds no
        more than the memory itself. Returns how many of its products are remembered."""
        horizon = self._wall_ms() - self._window_ms
        prefix = b"%d" % partition
        for key, value in records:
            canonical = _canonical_key(key)
            if canonical is None:
                continue
            slot = prefix + canonical
            self._entries.pop(slot, None)
            packed = _restored(value, horizon)
            if packed is not None:
                self._entries[slot] = packed
                self._bound()
        opening = _slot(partition, b"[")
        return sum(1 for slot in self._entries if slot.startswith(opening))

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions gone to another replica: it restores their memory from the changelog."""
        gone = set(partitions)
        if gone:
            self._entries = OrderedDict(
                (slot, held) for slot, held in self._entries.items() if _partition(slot) not in gone
            )

    def __len__(self) -> int:
        """Products remembered, over every partition held."""
        return len(self._entries)

    def _bound(self) -> None:
        while len(self._entries) > self._max_products:
            self._entries.popitem(last=False)


def _slot(partition: int, key: bytes) -> bytes:
    """The partition's number then the changelog key, which starts with ``[``."""
    return b"%d" % partition + key


def _partition(slot: bytes) -> int:
    return int(slot[: slot.index(b"[")])


def _pack(at_ms: int, images: Iterable[str]) -> bytes:
    return _SEPARATOR.join((str(at_ms), *images)).encode()


def _has_nul(images: Iterable[str]) -> bool:
    return any(_SEPARATOR in image for image in images)


def _unpack(held: bytes) -> tuple[int, list[str]]:
    """When and which images (each once, should another writer of the changelog have repeated one)."""
    at_ms, *images = held.decode().split(_SEPARATOR)
    return int(at_ms), list(dict.fromkeys(images))


def _value(at_ms: int, images: list[str]) -> bytes:
    return json.dumps({"at": at_ms, "images": images}, separators=(",", ":")).encode()


# A restore reads every record of a partition on the poll loop: those ``deleted`` wrote (all of them, unless
# something else wrote the topic) are read by these patterns, a few times quicker than by a JSON parser; any other
# form is parsed. A JSON string with no quote, backslash nor control character is its text between quotes.
_TEXT: Final = rb'"[^"\\\x00-\x1f]*"'
_PLAIN_KEY: Final = re.compile(rb"\[" + _TEXT + rb"," + _TEXT + rb"\]")
_PLAIN_VALUE: Final = re.compile(  # a time of 18 digits at most: a longer one is parsed, and refused
    rb'\{"at":(0|[1-9][0-9]{0,17}),"images":\[((?:' + _TEXT + rb"(?:," + _TEXT + rb")*)?)\]\}"
)


def _canonical_key(key: bytes | None) -> bytes | None:
    """A changelog key as ``deleted`` writes it (a key written otherwise still names its product), or None if it
    names none."""
    if key is None:
        return None
    if _PLAIN_KEY.fullmatch(key) is not None and _utf8(key):
        return key
    try:
        parts = json.loads(key)
    except ValueError:
        return None
    if not (isinstance(parts, list) and len(parts) == 2 and all(isinstance(part, str) for part in parts)):
        return None
    return _key((parts[0], parts[1]))


def _restored(value: bytes | None, horizon: int) -> bytes | None:
    """A changelog value held as ``_pack`` holds it; None for a tombstone, a value past ``horizon`` or one
    ``deleted`` would not have written."""
    if value is None:
        return None
    plain = _PLAIN_VALUE.fullmatch(value)
    if plain is not None and _utf8(value):
        at_text, images_text = plain.groups()
        at_ms = int(at_text)
        packed = at_text + b"\0" + images_text[1:-1].replace(b'","', b"\0") if images_text else at_text
    else:
        parsed = _parsed(value)
        if parsed is None:
            return None
        at_ms, images = parsed
        packed = _pack(at_ms, images)
    return packed if at_ms >= horizon else None


def _parsed(value: bytes) -> tuple[int, list[str]] | None:
    """A changelog value in any JSON form: when and which images, or None if ``deleted`` could not have written
    it."""
    try:
        document = json.loads(value)
        at_ms, images = document["at"], document["images"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(at_ms, int) or not isinstance(images, list) or not all(isinstance(i, str) for i in images):
        return None
    return None if _has_nul(images) else (at_ms, images)


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode()
    except UnicodeDecodeError:
        return False
    return True
