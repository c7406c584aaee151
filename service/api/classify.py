"""Turns an HTTP response into a typed result or a meaningful error. Pure: no I/O, no clock, no logging.

The tables below are the API contract (../shared/reference/jd-delete-api.md) written as data, so a reader can
check every code against the document in one place.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final

from service.api.errors import (
    ApiError,
    BatchRejected,
    FatalApiError,
    PaymentRequired,
    QuotaExhausted,
    RateLimited,
    TransientApiError,
)
from service.api.models import BatchResult, DeleteBatch, DeleteItem, ItemResult, ItemStatus, QuotaFacts

__all__ = [
    "EXCERPT_CHARS",
    "ResponsePolicy",
    "classify_response",
    "excerpt",
    "parse_retry_after",
]

SUCCESS: Final = "10000"
TRANSIENT_CODES: Final = frozenset({"10020", "10030", "11010", "11030"})
RATE_CODES: Final = frozenset({"10043", "10044"})
DAILY_LIMIT: Final = "10040"
PAYMENT_REQUIRED: Final = "10010"
QUOTA_CODES: Final = frozenset({DAILY_LIMIT, PAYMENT_REQUIRED})
FATAL_CODES: Final = frozenset({"10001", "10045", "10046", "10047", "10048", "10050", "10060"})
NO_SUCH_DATA: Final = "10003"

BUSINESS_OK: Final = 0
BATCH_REJECTED_CODES: Final = frozenset({3016, 3050, 3051, 3052, 3053, 5001})
BUSINESS_TRANSIENT_CODES: Final = frozenset({3032, 5000})
BUSINESS_MESSAGES: Final = {
    1030: "NO_RELATIVE_COLLECTION",
    1031: "NO_RELATIVE_IMAGE",
    3016: "IMAGE_NUM_EXCEED_TOTAL_LIMIT",
    3032: "DELETE_IMAGE_ERROR",
    3050: "INVALID_IMAGE_ID_LIST",
    3051: "EMPTY_IMAGE_ID_LIST",
    3052: "DUPLICATE_IMAGE_ID",
    3053: "NO_VALID_IMAGE_ID",
    5000: "INTERNAL_SERVER_ERROR",
    5001: "INVALID_PARAMETER_JSON",
}
NOT_REPORTED: Final = "NOT_IN_RESPONSE"
"""Reason for an item the response did not mention: undecided, so it is retried rather than guessed."""
EXCERPT_CHARS: Final = 300


@dataclass(frozen=True, slots=True)
class ResponsePolicy:
    """Which item reasons mean "already absent" and which deserve another call (both configurable)."""

    absent_reasons: frozenset[str] = frozenset({"NO_AVAILABLE_FEATURE", "NO_RELATIVE_IMAGE"})
    retryable_reasons: frozenset[str] = frozenset({"DELETE_IMAGE_ERROR", "INTERNAL_SERVER_ERROR"})

    def item_result(self, item: DeleteItem, reason: str) -> ItemResult:
        if reason in self.absent_reasons:
            return ItemResult(item, ItemStatus.ABSENT, reason)
        return ItemResult(item, ItemStatus.FAILED, reason, retryable=reason in self.retryable_reasons)


def excerpt(body: bytes) -> str:
    """A bounded, printable piece of a body for logs and error messages."""
    text = body[:EXCERPT_CHARS].decode("utf-8", errors="replace")
    return text.replace("\n", "\\n") + ("…" if len(body) > EXCERPT_CHARS else "")


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


def classify_response(
    *,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    batch: DeleteBatch,
    policy: ResponsePolicy,
    now: datetime,
) -> BatchResult:
    """Every item of ``batch`` accounted for, or an ``ApiError`` subclass saying what to do about the call."""
    retry_after = parse_retry_after(headers.get("retry-after"), now)
    document = _json_object(body)
    if document is None or "code" not in document:
        raise _http_error(status, body, retry_after)
    code = str(document["code"])
    message = _text(document.get("msg")) or _text(document.get("message")) or ""
    if code == NO_SUCH_DATA:  # "fatal for the call": every item fails for good, the service goes on
        return BatchResult(_all_items(batch, policy, "NO_SUCH_DATA"), _quota(document), codes=(code,))
    if code != SUCCESS:
        raise _system_error(code, message, retry_after)
    if status >= 300:
        # A success code on an error status is not something to trust.
        raise TransientApiError(f"http_{status}", f"success code on HTTP {status}: {excerpt(body)}")
    return _business_result(document, batch, policy, body)


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, truncated, invalid UTF-8, absurdly deep
        return None
    return document if isinstance(document, dict) else None


def _http_error(status: int, body: bytes, retry_after: float | None) -> ApiError:
    detail = f"HTTP {status}, not an API response: {excerpt(body)}"
    if status in (401, 403):
        return FatalApiError(f"http_{status}", detail)
    if status == 429:
        return RateLimited(f"http_{status}", detail, retry_after=retry_after)
    if status == 413:
        return BatchRejected(f"http_{status}", detail)
    if status in (404, 405):
        return FatalApiError(f"http_{status}", detail + " (is IMGSWEEP_API__ENDPOINT right?)")
    if status >= 300:
        return TransientApiError(f"http_{status}", detail, retry_after=retry_after)
    return TransientApiError("bad_body", detail)


def _system_error(code: str, message: str, retry_after: float | None) -> ApiError:
    if code in RATE_CODES:
        return RateLimited(code, message, retry_after=retry_after)
    if code == PAYMENT_REQUIRED:
        return PaymentRequired(code, message, retry_after=retry_after)
    if code in QUOTA_CODES:
        return QuotaExhausted(code, message, retry_after=retry_after)
    if code in FATAL_CODES:
        return FatalApiError(code, message)
    # The known transient codes, and any code the contract does not name: retrying is bounded and a
    # failure ends in a dead letter, so an unknown code costs a few calls at worst and loses nothing.
    return TransientApiError(code, message or "unknown system code", retry_after=retry_after)


def _business_result(document: dict[str, Any], batch: DeleteBatch, policy: ResponsePolicy, body: bytes) -> BatchResult:
    quota = _quota(document)
    result = document.get("result")
    if not isinstance(result, dict):
        raise TransientApiError("bad_body", f"code 10000 without a result object: {excerpt(body)}")
    business = _int(result.get("code"))
    if business is None:
        raise TransientApiError("bad_body", f"result without an integer code: {excerpt(body)}")
    if business != BUSINESS_OK:
        reason = _text(result.get("message")) or BUSINESS_MESSAGES.get(business, f"BUSINESS_{business}")
        if business in BATCH_REJECTED_CODES:
            raise BatchRejected(str(business), reason)
        if business in BUSINESS_TRANSIENT_CODES:
            raise TransientApiError(str(business), reason)
        return BatchResult(_all_items(batch, policy, reason), quota, codes=(f"{SUCCESS}/{business}",))
    # The answer's items as (product_id, image_id) pairs: a DeleteItem is that tuple, so it is looked up directly.
    succeeded = {
        *_listed(result.get("successful_list")),
        *_listed(result.get("succeeded_list")),
    }
    failed = dict(_failed(result.get("failed_list")))
    items = []
    for item in batch.items:
        if item in succeeded:
            items.append(ItemResult(item, ItemStatus.DELETED))
        elif item in failed:
            items.append(policy.item_result(item, failed[item]))
        else:
            items.append(ItemResult(item, ItemStatus.FAILED, NOT_REPORTED, retryable=True))
    return BatchResult(tuple(items), quota, codes=(SUCCESS,))


def _all_items(batch: DeleteBatch, policy: ResponsePolicy, reason: str) -> tuple[ItemResult, ...]:
    return tuple(policy.item_result(item, reason) for item in batch.items)


def _listed(value: object) -> Iterator[tuple[str, str]]:
    if not isinstance(value, list):
        return
    for entry in value:
        item = _item(entry)
        if item is not None:
            yield item


def _failed(value: object) -> Iterator[tuple[tuple[str, str], str]]:
    if not isinstance(value, list):
        return
    for entry in value:
        item = _item(entry)
        if item is not None:
            yield item, _text(entry.get("message")) or _text(entry.get("msg")) or "UNKNOWN"


def _item(entry: object) -> tuple[str, str] | None:
    """The (product_id, image_id) an answer's entry names, or None if it names no item."""
    if not isinstance(entry, dict):
        return None
    product, image = entry.get("product_id"), entry.get("image_id")
    if type(product) is str and type(image) is str:  # the usual answer: what str() below would give
        return product, image
    if isinstance(product, int | str) and isinstance(image, int | str):
        return str(product), str(image)
    return None


def _quota(document: dict[str, Any]) -> QuotaFacts:
    charge = document.get("charge")
    return QuotaFacts(
        remain_times=_int(document.get("remainTimes", document.get("remain"))),
        charge=charge if isinstance(charge, bool) else None,
    )


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _text(value: object) -> str | None:
    """A bounded text the server sent, made safe to publish: JSON may escape lone surrogates (``"\\ud800"``),
    which no UTF-8 encoder (the outcome's, a log's) accepts, so they become U+FFFD."""
    if not isinstance(value, str) or not value:
        return None
    return _LONE_SURROGATE.sub("\ufffd", value[:200])
