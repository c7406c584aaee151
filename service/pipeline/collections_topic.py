"""The collections topic's two pure rules (docs/decisions/0022-collections-topic.md): which partition a collection's
records go to, and the header that says where a forwarded record came from.

Input is keyed by product, so every replica reads a slice of every collection. The router stage forwards each
input record to the collections topic at a partition chosen by its collection, as Kafka Streams' repartition
topic does for a group-by: one consumer of the pipeline's group then holds all of a collection's records and
makes its batches alone. The partitions are dealt out by account (account ``i`` of ``A`` owns every partition
``p`` with ``p % A == i``), so that an account waiting for its quota holds only partitions no other account's
events are on: pausing them, or their commit watermark standing still, costs the other accounts nothing.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

__all__ = ["ORIGIN_HEADER", "CollectionPartitions", "RecordOrigin", "origin_header", "split_origin"]

ORIGIN_HEADER: Final = "imgsweep_origin"
"""Added by the router to each forwarded record: the input record's topic, partition, offset and timestamp, which
the outcome's id and ``source`` and a dead letter's ``imgsweep_source_*`` headers name (decision 0008)."""


@dataclass(frozen=True, slots=True)
class RecordOrigin:
    """Where a forwarded record was read: the input topic's coordinates of the record the user produced."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None
    failures: int = 0
    """How many times reading this record stopped the router (it is then forwarded unread): the pipeline counts them
    with its own (``PoisonMarks.failures``), so a record that kills the process is tried twice in all."""


def origin_header(origin: RecordOrigin) -> tuple[str, bytes]:
    """``partition:offset:timestamp:failures:topic`` (a topic name has no ``:``); an unknown timestamp is empty."""
    timestamp = "" if origin.timestamp_ms is None else str(origin.timestamp_ms)
    value = f"{origin.partition}:{origin.offset}:{timestamp}:{origin.failures}:{origin.topic}"
    return ORIGIN_HEADER, value.encode()


def split_origin(
    headers: Sequence[tuple[str, bytes | None]],
) -> tuple[RecordOrigin | None, list[tuple[str, bytes | None]]]:
    """The origin a forwarded record carries (None if it has none or it is unreadable) and its headers without it,
    as the user produced them (a dead-letter copy is the user's record)."""
    origin: RecordOrigin | None = None
    rest: list[tuple[str, bytes | None]] = []
    for name, value in headers:
        if name != ORIGIN_HEADER:
            rest.append((name, value))
        elif value is not None:
            origin = _parse(value)
    return origin, rest


def _parse(value: bytes) -> RecordOrigin | None:
    try:
        partition, offset, timestamp, failures, topic = value.decode().split(":", 4)
        parsed = RecordOrigin(topic, int(partition), int(offset), int(timestamp) if timestamp else None, int(failures))
    except ValueError:  # UnicodeDecodeError is one
        return None
    valid = parsed.topic and min(parsed.partition, parsed.offset, parsed.failures) >= 0
    return parsed if valid else None


@dataclass(frozen=True, slots=True)
class CollectionPartitions:
    """The collections topic's partitions dealt out among ``accounts`` accounts: account ``i`` owns ``p`` where
    ``p % accounts == i``; a collection always goes to the same partition of its account's share. Partitions past
    the last full round (a topic made by hand with a count that is not a multiple) are never written."""

    partitions: int
    accounts: int

    def __post_init__(self) -> None:
        if self.accounts < 1 or self.partitions < self.accounts:
            raise ValueError(
                f"the collections topic has {self.partitions} partitions for {self.accounts} accounts: it needs at "
                "least one partition per account"
            )

    @staticmethod
    def sized(input_partitions: int, accounts: int) -> int:
        """The partitions to create: as many as the input (no less parallelism), at least one per account, rounded
        up to a multiple of the accounts so that each owns as many."""
        wanted = max(input_partitions, accounts, 1)
        return math.ceil(wanted / accounts) * accounts

    @property
    def per_account(self) -> int:
        return self.partitions // self.accounts

    def partition_of(self, collection: str, account: int) -> int:
        """The partition of ``collection``, held by account number ``account`` (its place in the settings)."""
        if not 0 <= account < self.accounts:
            raise ValueError(f"account number {account} of {self.accounts}")
        return account + self.accounts * (zlib.crc32(collection.encode()) % self.per_account)

    def account_of(self, partition: int) -> int:
        """The account number that owns ``partition``."""
        return partition % self.accounts

    def unroutable(self, partition: int) -> int:
        """Where a record with no collection (not an event, unreadable) goes: the input partition's number, folded
        onto the topic, so such records spread and keep their order per input partition. The pipeline's decode
        step dead-letters or skips them as it would have on the input."""
        return partition % (self.per_account * self.accounts)
