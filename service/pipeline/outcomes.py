"""What imgsweep publishes: one outcome per valid event, and dead-letter copies. Pure builders.

The outcome id is derived from the consumed record (topic, partition, offset) and the event id, so a
redelivery of the same record (after a crash or a rebalance) yields the same ``outcome_id`` and consumers can
deduplicate, while a copy of the event in a new record (``imgsweep replay-dlq``) answers with an outcome of its
own. The outcome names the record it answers (``source``) and, for a replay, the dead letter (``replay_of``).
Outcomes carry CloudEvents binary-mode headers.

``OutcomeEvent`` is the published schema (``service.contracts`` generates the JSON Schema from it). Outcomes are
built from data that is valid already, one per event, so they are written as plain data by the serializer that
``OutcomeEvent.model_dump_json`` uses, without building and validating a model each time; a test checks that the
bytes are the same.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_json

from service.pipeline.pending import DeadLetterRef, Headers, PendingEvent, SourceRecord
from service.vocabulary import TRACEPARENT, EventKind, ItemStatus, OutcomeStatus, TraceContext

__all__ = [
    "DLQ_HEADER_PREFIX",
    "OUTCOME_TYPE",
    "REPLAY_OF_HEADERS",
    "TRUNCATION_HEADERS",
    "ImageOutcome",
    "Outcome",
    "OutcomeEvent",
    "RecordLocation",
    "build_outcome",
    "dead_letter_headers",
    "failure_summary",
    "outcome_headers",
    "outcome_id_for",
    "replay_of_from_headers",
    "replay_of_headers",
]

OUTCOME_NAMESPACE: Final = uuid.UUID("6f0b7c1e-4d8a-5b7e-9c3f-2a1d0e9b8c7a")
_NAMESPACE_BYTES: Final = OUTCOME_NAMESPACE.bytes
OUTCOME_TYPE: Final = "com.imgsweep.product-image-deletion.v1"
_OUTCOME_TYPE_BYTES: Final = OUTCOME_TYPE.encode()
DLQ_HEADER_PREFIX: Final = "imgsweep_"
REPLAY_OF_HEADERS: Final = tuple(f"{DLQ_HEADER_PREFIX}replay_of_{part}" for part in ("topic", "partition", "offset"))
"""What ``imgsweep replay-dlq`` adds to a republished copy: the dead letter's topic, partition and offset."""
TRUNCATION_HEADERS: Final = tuple(
    f"{DLQ_HEADER_PREFIX}{name}" for name in ("truncated", "original_size", "original_sha256")
)
"""What a dead letter written with a prefix of the value says: what was cut (``value``, then ``headers``, ``key``),
the value's size in bytes and its SHA-256 (hex). ``imgsweep_source_*`` say where the original is."""
MAX_FAILURE_SUMMARY_CHARS: Final = 900
"""A dead letter's ``imgsweep_error_reason`` lists failed images up to about this many characters."""


class ImageOutcome(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    image_id: str
    status: ItemStatus
    reason: str | None = None


class RecordLocation(BaseModel):
    """Where a Kafka record is."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    topic: str
    partition: int
    offset: int


class OutcomeEvent(BaseModel):
    """The value published on the outcome topic (keyed by product id)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    outcome_id: str = Field(
        description="A UUID derived from the input record (source) and the event id: the same for a redelivery "
        "of that record, a new one for a replayed copy. Deduplicate outcomes by it."
    )
    event_id: str
    collection_name: str
    product_id: str
    status: OutcomeStatus
    images: list[ImageOutcome]
    attempts: int
    api_calls: int
    first_seen_at: datetime
    completed_at: datetime
    dry_run: bool
    source: RecordLocation = Field(
        description="The input record this outcome answers; a redelivery of that record gets the same outcome_id."
    )
    replay_of: RecordLocation | None = Field(
        description="For a record `imgsweep replay-dlq` republished: the dead letter it is a copy of; else null."
    )
    kind: EventKind = Field(
        description="What the input event was. A relist has an outcome only when images of the product were "
        "deleted before it came (status re_add_required): the catalog must add them again."
    )


def outcome_id_for(event_id: str, *, topic: str, partition: int, offset: int) -> str:
    """``str(uuid.uuid5(OUTCOME_NAMESPACE, f"{topic}\\x00{partition}\\x00{offset}\\x00{event_id}"))``, written out.

    The record's place makes a replayed copy's outcome a new one; the event id keeps ids apart across
    topics that are deleted and created again under the same name.

    RFC 4122 (4.3): the first 16 bytes of SHA-1 over namespace and name, with the version and variant bits set.
    Done by hand because ``uuid.uuid5`` spends most of its time building a ``UUID`` object that is only printed,
    once per event; a test compares the two.
    """
    name = f"{topic}\x00{partition}\x00{offset}\x00{event_id}".encode()
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name, usedforsecurity=False).digest()[:16])
    digest[6] = digest[6] & 0x0F | 0x50  # version 5
    digest[8] = digest[8] & 0x3F | 0x80  # the RFC 4122 variant
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


@dataclass(frozen=True, slots=True)
class Outcome:
    """One ``OutcomeEvent`` ready to publish: its JSON, and what the record's headers and metrics need."""

    outcome_id: str
    event_id: str
    status: OutcomeStatus
    completed_at: datetime
    value: bytes
    """The ``OutcomeEvent`` as JSON, byte for byte what its ``model_dump_json`` writes."""


def build_outcome(pending: PendingEvent, *, completed_at: datetime, dry_run: bool) -> Outcome:
    event = pending.event
    relist = event.kind is EventKind.RELIST
    images: list[dict[str, str | None]] = []  # ImageOutcome's fields, in its order
    failed = cancelled = 0
    for image_id in pending.results if relist else event.image_ids:
        result = pending.results[image_id]
        failed += result.status is ItemStatus.FAILED
        cancelled += result.status is ItemStatus.CANCELLED
        # str() of a StrEnum is its value, as a plain str: pydantic-core writes an enum member several times
        # slower, and .value is a Python-level property.
        images.append({"image_id": image_id, "status": str(result.status), "reason": result.reason})
    status = (
        OutcomeStatus.RE_ADD_REQUIRED
        if relist
        else OutcomeStatus.of_delist(images=len(images), failed=failed, cancelled=cancelled)
    )
    source = pending.source.input  # the user's record, also when read from the collections topic
    outcome_id = outcome_id_for(event.event_id, topic=source.topic, partition=source.partition, offset=source.offset)
    replay_of = pending.source.replay_of
    document: dict[str, Any] = {  # OutcomeEvent's fields, in its order
        "outcome_id": outcome_id,
        "event_id": event.event_id,
        "collection_name": event.collection_name,
        "product_id": event.product_id,
        "status": str(status),
        "images": images,
        "attempts": pending.attempts,
        "api_calls": pending.api_calls,
        "first_seen_at": pending.first_seen_at,
        "completed_at": completed_at,
        "dry_run": dry_run,
        "source": {"topic": source.topic, "partition": source.partition, "offset": source.offset},
        "replay_of": None
        if replay_of is None
        else {"topic": replay_of.topic, "partition": replay_of.partition, "offset": replay_of.offset},
        "kind": str(event.kind),
    }
    return Outcome(outcome_id, event.event_id, status, completed_at, to_json(document))


def outcome_headers(outcome: Outcome, *, source: str, trace: TraceContext | None = None) -> Headers:
    """CloudEvents 1.0 binary-mode headers for the outcome record, and the input's W3C trace context if any."""
    headers: Headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", outcome.outcome_id.encode()),
        ("ce_type", _OUTCOME_TYPE_BYTES),
        ("ce_source", source.encode()),
        ("ce_time", outcome.completed_at.isoformat().encode()),
        ("ce_subject", outcome.event_id.encode()),
        ("content-type", b"application/json"),
    ]
    if trace is not None:
        headers.extend(trace.headers())
    return headers


def failure_summary(pending: PendingEvent) -> str:
    """The images that failed for good and why, for a dead letter's ``imgsweep_error_reason``; bounded."""
    failed = [
        (image_id, result.reason) for image_id, result in pending.results.items() if result.status is ItemStatus.FAILED
    ]
    parts: list[str] = []
    length = 0
    for image_id, reason in failed:
        part = f"{image_id!r}: {reason or 'no reason given'}"
        if length + len(part) > MAX_FAILURE_SUMMARY_CHARS:
            parts.append(f"and {len(failed) - len(parts)} more")
            break
        parts.append(part)
        length += len(part) + 2
    return f"{len(failed)} of {len(pending.event.image_ids)} images failed for good: " + "; ".join(parts)


def dead_letter_headers(
    record: SourceRecord, *, error_class: str, reason: str, at: datetime, trace: TraceContext | None = None
) -> Headers:
    """The original headers, then headers naming the error and where the record came from.

    A record whose trace context was not in a ``traceparent`` header (a CloudEvents extension) gets one (and
    ``tracestate``), so the copy carries it where Kafka consumers look.
    """
    original = [header for header in record.headers if _users_or_truncation(header[0], record)]
    source = record.input  # the user's record, also when read from the collections topic
    if trace is not None and not any(name.lower() == TRACEPARENT for name, _ in original):
        original.extend(trace.headers())
    return [
        *original,
        (f"{DLQ_HEADER_PREFIX}error_class", error_class.encode()),
        (f"{DLQ_HEADER_PREFIX}error_reason", reason.encode("utf-8", errors="replace")[:1000]),
        (f"{DLQ_HEADER_PREFIX}source_topic", source.topic.encode()),
        (f"{DLQ_HEADER_PREFIX}source_partition", str(source.partition).encode()),
        (f"{DLQ_HEADER_PREFIX}source_offset", str(source.offset).encode()),
        (f"{DLQ_HEADER_PREFIX}dead_lettered_at", at.isoformat().encode()),
    ]


def _users_or_truncation(name: str, record: SourceRecord) -> bool:
    """The user's headers, and the router's truncation headers (a record too large to forward whole, decision
    0022): the dead letter then says the original's size, digest and, in ``imgsweep_source_*``, where it is."""
    return not name.startswith(DLQ_HEADER_PREFIX) or (record.origin is not None and name in TRUNCATION_HEADERS)


def replay_of_headers(dead_letter: DeadLetterRef) -> Headers:
    """The headers naming the dead letter a republished copy comes from (``REPLAY_OF_HEADERS``)."""
    values = (dead_letter.topic, str(dead_letter.partition), str(dead_letter.offset))
    return [(name, value.encode()) for name, value in zip(REPLAY_OF_HEADERS, values, strict=True)]


def replay_of_from_headers(headers: Headers) -> DeadLetterRef | None:
    """The dead letter ``replay_of_headers`` names, or None when a record does not carry all three (well-formed)."""
    found: dict[str, bytes] = {}
    for name, value in headers:
        if name in REPLAY_OF_HEADERS and value is not None:
            found.setdefault(name, value)
    if len(found) < len(REPLAY_OF_HEADERS):
        return None
    topic_name, partition_name, offset_name = REPLAY_OF_HEADERS
    try:
        topic = found[topic_name].decode()
        partition, offset = int(found[partition_name]), int(found[offset_name])
    except ValueError:  # UnicodeDecodeError too
        return None
    if not topic or partition < 0 or offset < 0:
        return None
    return DeadLetterRef(topic, partition, offset)
