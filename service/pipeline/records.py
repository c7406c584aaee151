"""A record to produce: an event's outcome or dead-letter copy, or a changelog record of the state kept on Kafka.

Its own module, below the ledger, so that a partition's state can hold the records a lost partition's answers
carried (``PartitionState.recalled``) without importing the outlet, which imports the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from service.pipeline.pending import Headers, SourceRecord
from service.vocabulary import TraceContext

__all__ = ["Record"]


@dataclass(frozen=True, slots=True)
class Record:
    """One record to produce: an outcome or a dead-letter copy, for the event at a partition's offset."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers
    kind: Literal["outcome", "dead_letter", "state"]
    label: str
    """The outcome's status or the dead letter's reason (a metric label)."""
    timestamp_ms: int | None
    """The consumed record's timestamp (end-to-end latency); None for dead letters."""
    partition: int | None = None
    """A partition of its own (a changelog record, co-partitioned with the input); None: by its key."""
    source: SourceRecord | None = None
    """The consumed record it answers (None for a changelog record)."""
    trace: TraceContext | None = None
    stripped: bool = False
    """A dead letter already cut to its headers: nothing shorter can replace it."""

    def size(self) -> int:
        """Its bytes in memory, about: key, value, headers and the consumed record's value it holds (what bounds
        the answers kept after a loss)."""
        headers = sum(len(name) + len(data or b"") for name, data in self.headers)
        source = 0 if self.source is None else len(self.source.value or b"")
        return len(self.key or b"") + len(self.value or b"") + headers + source
