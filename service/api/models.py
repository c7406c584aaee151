"""Plain data that crosses the API client's boundary: what to delete and what happened to it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from service.vocabulary import ItemStatus

__all__ = ["BatchResult", "DeleteBatch", "DeleteItem", "ItemResult", "ItemStatus", "QuotaFacts"]


class DeleteItem(NamedTuple):
    """One image of one product. A tuple: it keys every batch and result lookup, and a tuple hashes in C."""

    product_id: str
    image_id: str


@dataclass(frozen=True, slots=True)
class DeleteBatch:
    """One API call's worth of work: a collection and up to 200 distinct items."""

    collection: str
    items: tuple[DeleteItem, ...]
    batch_id: str = ""

    def __post_init__(self) -> None:
        if not self.items:
            raise ValueError("a DeleteBatch needs at least one item")
        if len(set(self.items)) != len(self.items):
            raise ValueError("a DeleteBatch must not repeat an item (the API answers 3052)")

    def split(self) -> tuple[DeleteBatch, DeleteBatch]:
        """Two halves, to isolate an item the API rejects without failing the others."""
        middle = len(self.items) // 2
        return (
            DeleteBatch(self.collection, self.items[:middle], f"{self.batch_id}.0"),
            DeleteBatch(self.collection, self.items[middle:], f"{self.batch_id}.1"),
        )


class ItemResult(NamedTuple):
    """What happened to one item. A tuple, cheap to build: every call answers for up to 200 of them."""

    item: DeleteItem
    status: ItemStatus
    reason: str | None = None
    retryable: bool = False
    """A failure another call may fix (DELETE_IMAGE_ERROR, INTERNAL_SERVER_ERROR)."""


@dataclass(frozen=True, slots=True)
class QuotaFacts:
    """What a response says about the account's quota; None where the response did not say."""

    remain_times: int | None = None
    charge: bool | None = None


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Every item of a batch accounted for, plus what it cost."""

    items: tuple[ItemResult, ...]
    quota: QuotaFacts = field(default_factory=QuotaFacts)
    api_calls: int = 1
    attempts: int = 1
    codes: tuple[str, ...] = field(default=())
    """The system codes (or ``http_NNN``/``timeout``) of every call made, in order, for metrics."""
