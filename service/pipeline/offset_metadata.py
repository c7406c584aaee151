"""Which offsets above the commit watermark are already done, written into the committed offset's metadata.

Kafka keeps a string with every committed offset. When one slow event holds a partition's watermark back, the
events above it that already have their outcome acknowledged are recorded there, so a new owner of the
partition (after a crash, a rebalance or a restart) skips them instead of calling the API and publishing
their outcomes a second time. Confluent's parallel-consumer does the same with run-length or bitset encodings.

The encoding is relative to the committed offset (the base) and picks the shorter of two forms:

- runs: ``imgsweep1r`` then the lengths of alternating runs, not-done first, in base 36 joined by ``.``
  (a long finished stretch behind one slow event costs a few characters);
- bits: ``imgsweep1b`` then URL-safe base64 of a bitset, bit ``i`` for ``base + i`` (scattered completions).

Kafka refuses metadata over ``offset.metadata.max.bytes`` (4096 by default) and the whole commit with it.
When the map does not fit, the longest prefix of the done offsets that fits is kept: the rest is processed
again by the next owner, as it would be without metadata (parallel-consumer drops the whole map instead).
Metadata that does not parse (another tool's, a future version's) means nothing is known to be done.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Final, NamedTuple

__all__ = ["MAX_METADATA_CHARS", "Encoded", "decode_done", "encode_done"]

MAX_METADATA_CHARS: Final = 3900
"""Below Kafka's default ``offset.metadata.max.bytes`` (4096); the encodings are ASCII."""

_RUNS: Final = "imgsweep1r"
_BITS: Final = "imgsweep1b"
_DIGITS: Final = "0123456789abcdefghijklmnopqrstuvwxyz"
_MAX_SPAN: Final = 1 << 22
"""The most offsets above the base a metadata string may cover: runs could name billions in a few characters."""


class Encoded(NamedTuple):
    metadata: str
    kept: int
    """How many of the done offsets the metadata records (fewer than given when the map did not fit)."""


def encode_done(base: int, done: Iterable[int], *, limit: int = MAX_METADATA_CHARS) -> Encoded:
    """The metadata to commit with offset ``base``: which offsets above it are done. ``""`` if none are."""
    # Offsets beyond the span the decoder accepts are left out: recorded, they would void the whole map.
    offsets = sorted({offset - base for offset in done if 0 < offset - base < _MAX_SPAN})
    if not offsets:
        return Encoded("", 0)
    kept = len(offsets)
    over = kept + 1  # the shortest prefix known not to fit
    while kept:
        text = _shorter(offsets[:kept])
        if len(text) <= limit:
            return _longest(offsets, Encoded(text, kept), over, limit)
        over = kept
        kept = _fewer(offsets, kept, limit)
    return Encoded("", 0)


def decode_done(base: int, metadata: str) -> frozenset[int]:
    """The offsets that ``encode_done(base, ...)`` recorded; empty for metadata it did not write."""
    try:
        if metadata.startswith(_RUNS):
            return _decode_runs(base, metadata[len(_RUNS) :])
        if metadata.startswith(_BITS):
            return _decode_bits(base, metadata[len(_BITS) :])
    except ValueError:
        pass
    return frozenset()


def _shorter(deltas: list[int]) -> str:
    runs = _RUNS + _encode_runs(deltas)
    bits_length = len(_BITS) + 4 * ((deltas[-1] // 8 + 1 + 2) // 3)
    if len(runs) <= bits_length:
        return runs
    return _BITS + _encode_bits(deltas)


def _fewer(deltas: list[int], kept: int, limit: int) -> int:
    """A smaller prefix to try: proportional to how far over the limit the last try was, at least one less."""
    text = _shorter(deltas[:kept])
    return min(kept - 1, kept * limit // max(len(text), 1))


def _longest(deltas: list[int], fits: Encoded, over: int, limit: int) -> Encoded:
    """The longest prefix that fits, between one that fits and one that does not (``_fewer`` may undershoot).

    A bisection: either form only grows as the prefix does.
    """
    while over - fits.kept > 1:
        kept = (fits.kept + over) // 2
        text = _shorter(deltas[:kept])
        if len(text) <= limit:
            fits = Encoded(text, kept)
        else:
            over = kept
    return fits


def _encode_runs(deltas: list[int]) -> str:
    runs: list[int] = []
    position = 0  # the next relative offset not yet covered; offset 0 (the base) is never done
    for delta in deltas:
        if runs and delta == position and len(runs) % 2 == 0:
            runs[-1] += 1
        else:
            runs.extend((delta - position, 1))
        position = delta + 1
    return ".".join(_base36(run) for run in runs)


def _decode_runs(base: int, text: str) -> frozenset[int]:
    done: set[int] = set()
    position = base
    for index, part in enumerate(text.split(".")):
        length = int(part, 36)
        if length < 0 or (index % 2 == 1 and length == 0):
            raise ValueError("a run of done offsets is empty")
        if position + length - base > _MAX_SPAN:
            raise ValueError("the runs cover more offsets than imgsweep ever records")
        if index % 2 == 1:
            done.update(range(position, position + length))
        position += length
    return frozenset(done)


def _encode_bits(deltas: list[int]) -> str:
    bitset = bytearray(deltas[-1] // 8 + 1)
    for delta in deltas:
        bitset[delta // 8] |= 1 << (delta % 8)
    return base64.urlsafe_b64encode(bytes(bitset)).decode()


def _decode_bits(base: int, text: str) -> frozenset[int]:
    bitset = base64.urlsafe_b64decode(text.encode())
    return frozenset(base + index * 8 + bit for index, byte in enumerate(bitset) for bit in range(8) if byte >> bit & 1)


def _base36(value: int) -> str:
    digits = ""
    while True:
        value, digit = divmod(value, 36)
        digits = _DIGITS[digit] + digits
        if value == 0:
            return digits
