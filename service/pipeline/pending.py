"""One consumed event on its way to an outcome: where it came from and what happened to each image."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from service.api.models import DeleteItem, ItemResult, ItemStatus
from service.pipeline.collections_topic import RecordOrigin
from service.pipeline.events import DelistEvent
from service.vocabulary import DeadLetterReason, TraceContext

__all__ = ["DeadLetterRef", "Headers", "PendingEvent", "SourceRecord"]

Headers = list[tuple[str, bytes | None]]


@dataclass(frozen=True, slots=True)
class DeadLetterRef:
    """Where a dead letter is: what ``imgsweep replay-dlq`` names in the headers of the copy it republishes."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """The consumed Kafka record as it was, for the dead-letter copy and the commit."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp_ms: int | None
    replay_of: DeadLetterRef | None = None
    """The dead letter this record is a replayed copy of (its ``imgsweep_replay_of_*`` headers), if any."""
    origin: RecordOrigin | None = None
    """Where the user's record is when this one was read from the collections topic (the router's copy), else None."""

    @property
    def input(self) -> SourceRecord | RecordOrigin:
        """The input record's coordinates (topic, partition, offset): the outcome's id and ``source`` and the dead
        letter's ``imgsweep_source_*`` name them, whichever topic the pipeline read (decision 0022)."""
        return self.origin or self


@dataclass(eq=False, slots=True)
class PendingEvent:
    event: DelistEvent
    source: SourceRecord
    first_seen_at: datetime
    results: dict[str, ItemResult] = field(default_factory=dict)
    attempts: int = 0
    api_calls: int = 0
    dead_letter_reason: DeadLetterReason | None = None
    abandoned: bool = False
    """Set when the partition is revoked or lost: late results for it are ignored."""
    relisted: bool = False
    """Set when a relist cancelled the images not yet sent: retries of the others are cancelled too."""
    trace: TraceContext | None = None
    """The W3C trace context the input carried (``trace_context``): carried to the outcome and a dead letter."""

    def items(self) -> list[DeleteItem]:
        product_id = self.event.product_id
        return [DeleteItem(product_id, image) for image in self.event.image_ids]

    def decide(self, result: ItemResult) -> None:
        self.results[result.item.image_id] = result
        if result.status is ItemStatus.FAILED:
            reason = DeadLetterReason.of_failed_image(result.reason)
            current = self.dead_letter_reason
            if current is None or reason.rank < current.rank:
                self.dead_letter_reason = reason

    def took_part(self, *, attempts: int, api_calls: int) -> None:
        """Once per batch the event had images in: the calls it cost and the tries it took."""
        self.attempts = max(self.attempts, attempts)
        self.api_calls += api_calls

    @property
    def complete(self) -> bool:
        return len(self.results) == len(self.event.image_ids)
