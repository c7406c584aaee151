"""The pipeline's vocabulary: why a record was dead-lettered or skipped, and an outcome's status.

Metrics derive their label sets from these enums (``service.metrics``), so a new member is a new series at
start-up, never a label typed twice.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["CancelReason", "DeadLetterReason", "OutcomeStatus", "SkipReason"]


class DeadLetterReason(StrEnum):
    INVALID_EVENT = "invalid_event"
    """The record is not a delist event (not JSON, wrong fields, broken CloudEvent)."""
    RETRIES_EXHAUSTED = "retries_exhausted"
    """The API kept failing for an image: replay once the cause is gone."""
    INTERNAL_ERROR = "internal_error"
    """imgsweep failed on the call (a bug): replay once it is fixed."""
    ITEM_FAILED = "item_failed"
    """The API refused an image for good (e.g. NO_RELATIVE_COLLECTION): replay once the cause is fixed."""
    NO_ACCOUNT = "no_account"
    """The event's collection belongs to no configured account (no call was made): replay once one holds it."""


class SkipReason(StrEnum):
    ALREADY_DONE = "already_done"
    """A previous owner of the partition published the event's outcome (the commit's metadata says so)."""
    OTHER_TYPE = "other_type"
    """An event of a type that is neither a delist nor a relist (``IMGSWEEP_EVENTS__*_TYPES``)."""
    RELIST = "relist"
    """A relist with no image deleted to report (it may have cancelled a pending delist: that one's outcome says so)."""


class CancelReason(StrEnum):
    """Why an image was never sent (``ItemStatus.CANCELLED``)."""

    RELISTED = "relisted"
    TOO_OLD = "too_old"


class OutcomeStatus(StrEnum):
    DELETED = "deleted"
    PARTIALLY_DELETED = "partially_deleted"
    FAILED = "failed"
    CANCELLED = "cancelled"
    """Every image of the delist was cancelled (relisted in time, or too old)."""
    RE_ADD_REQUIRED = "re_add_required"
    """A relist's outcome: images of the product were deleted before it came and must be added again."""
