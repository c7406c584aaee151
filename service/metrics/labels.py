"""The metrics' bounded label sets: every value known in advance (pre-initialised to zero), the rest ``other``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from service.api.classify import (
    BATCH_REJECTED_CODES,
    BUSINESS_TRANSIENT_CODES,
    FATAL_CODES,
    NO_SUCH_DATA,
    NOT_REPORTED,
    QUOTA_CODES,
    RATE_CODES,
    SUCCESS,
    TRANSIENT_CODES,
)
from service.budget import Why
from service.vocabulary import CancelReason, DeadLetterReason

__all__ = [
    "ACCOUNT_STOPS",
    "API_CODES",
    "BRAKE_SERIES",
    "HELD_UNTIL_RESET",
    "IMAGE_REASONS",
    "INTERNAL_ERROR_STEPS",
    "OTHER",
    "PUBLISH_FALLBACKS",
    "bounded",
]

OTHER: Final = "other"
API_CODES: Final = tuple(
    sorted(
        {SUCCESS, NO_SUCH_DATA, *TRANSIENT_CODES, *RATE_CODES, *QUOTA_CODES, *FATAL_CODES}
        | {f"{SUCCESS}/{code}" for code in (1030, 1031)}
        | {str(code) for code in BATCH_REJECTED_CODES | BUSINESS_TRANSIENT_CODES}
        | {"http_401", "http_403", "http_404", "http_413", "http_429", "http_500", "http_502", "http_503"}
        | {"http_504", "timeout", "connection_error", "bad_body", "dry_run", OTHER}
    )
)
IMAGE_REASONS: Final = (
    "none",
    "NO_AVAILABLE_FEATURE",
    "NO_RELATIVE_IMAGE",
    "NO_RELATIVE_COLLECTION",
    "DELETE_IMAGE_ERROR",
    "INTERNAL_SERVER_ERROR",
    "INVALID_IMAGE_ID_LIST",
    "NO_VALID_IMAGE_ID",
    "INVALID_PARAMETER_JSON",
    "NO_SUCH_DATA",
    NOT_REPORTED,
    DeadLetterReason.RETRIES_EXHAUSTED,
    DeadLetterReason.NO_ACCOUNT,
    "dry_run",
    *CancelReason,
    OTHER,
)


BRAKE_SERIES: Final = 20
"""At most this many ``imgsweep_brake_tripped`` series carry a collection's name."""

ACCOUNT_STOPS: Final = ("paused", "braked")
"""``imgsweep_account_stopped``'s ``why``: the control topic's states (``service.control.state.State``)."""

HELD_UNTIL_RESET: Final = (Why.RESERVE_ONLY, Why.SPEND_LIMIT, Why.QUOTA_EXHAUSTED)
"""Why the budget holds every call until the reset: ``imgsweep_budget_waiting_for_reset``'s label set."""


INTERNAL_ERROR_STEPS: Final = ("decode", "route", "publish", "restart")
"""``imgsweep_internal_errors_total``'s ``step`` label: where handling one record raised."""
PUBLISH_FALLBACKS: Final = (
    ("outcome", "dead_letter"),
    ("dead_letter", "truncated"),
    ("dead_letter", "dropped"),
)
"""``imgsweep_publish_failures_total``'s labels: what could not be written, and what was written instead."""


def bounded(value: str, known: Iterable[str]) -> str:
    return value if value in known else OTHER
