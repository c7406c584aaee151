"""One consumed event on its way to an outcome: where it came from and what happened to each image."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from service.api.models import DeleteItem, ItemResult, ItemStatus
from service.pipeline.events import DelistEvent

__all__ = ["INTERNAL_ERROR", "RETRIES_EXHAUSTED", "Headers", "PendingEvent", "SourceRecord"]

RETRIES_EXHAUSTED = "retries_exhausted"
INTERNAL_ERROR = "internal_error"
_DEAD_LETTERED = frozenset((RETRIES_EXHAUSTED, INTERNAL_ERROR))

Headers = list[tuple[str, bytes | None]]


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


@dataclass(eq=False, slots=True)
class PendingEvent:
    event: DelistEvent
    source: SourceRecord
    first_seen_at: datetime
    results: dict[str, ItemResult] = field(default_factory=dict)
    attempts: int = 0
    api_calls: int = 0
    dead_letter_reason: str | None = None
    abandoned: bool = False
    """Set when the partition is revoked or lost: late results for it are ignored."""

    def items(self) -> list[DeleteItem]:
        product_id = self.event.product_id
        return [DeleteItem(product_id, image) for image in self.event.image_ids]

    def decide(self, result: ItemResult) -> None:
        self.results[result.item.image_id] = result
        if result.status is ItemStatus.FAILED and result.reason in _DEAD_LETTERED:
            self.dead_letter_reason = result.reason

    def took_part(self, *, attempts: int, api_calls: int) -> None:
        """Once per batch the event had images in: the calls it cost and the tries it took."""
        self.attempts = max(self.attempts, attempts)
        self.api_calls += api_calls

    @property
    def complete(self) -> bool:
        return len(self.results) == len(self.event.image_ids)
