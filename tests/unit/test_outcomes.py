"""Outcomes are written as plain data; the bytes must be exactly what the ``OutcomeEvent`` model would write."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from service.api.models import DeleteItem, ItemResult, ItemStatus
from service.pipeline.events import DelistEvent
from service.pipeline.outcomes import (
    OUTCOME_NAMESPACE,
    ImageOutcome,
    OutcomeEvent,
    RecordLocation,
    build_outcome,
    dead_letter_headers,
    failure_summary,
    outcome_headers,
    outcome_id_for,
    replay_of_from_headers,
    replay_of_headers,
)
from service.pipeline.pending import DeadLetterRef, PendingEvent, SourceRecord
from service.vocabulary import OutcomeStatus

SOURCE = SourceRecord("catalog.product-delisted", 0, 7, b"p", b"{}", [], None)
REPLAYED = SourceRecord(
    "catalog.product-delisted", 1, 12, b"p", b"{}", [], None, DeadLetterRef("catalog.product-delisted.dlq", 0, 3)
)

# Ids as the decoder lets them through: no control characters, U+2028/U+2029 or surrogates.
IDS = st.text(st.characters(exclude_categories=["Cc", "Cs", "Zl", "Zp"]), min_size=1, max_size=12)
REASONS = (
    st.none()
    | st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
    | st.sampled_from(["NO_AVAILABLE_FEATURE", "retries_exhausted", 'quote " and \\ backslash', "中文"])
)
MOMENTS = st.datetimes(
    min_value=datetime(1970, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-3, minutes=-30))]),
)


def reference_value(pending: PendingEvent, *, completed_at: datetime, dry_run: bool) -> bytes:
    """How outcomes were built before: validated models, serialised by the model."""
    event = pending.event
    images = [
        ImageOutcome(image_id=image, status=pending.results[image].status, reason=pending.results[image].reason)
        for image in event.image_ids
    ]
    failed = sum(1 for image in images if image.status == "failed")
    cancelled = sum(1 for image in images if image.status == "cancelled")
    status = (
        OutcomeStatus.DELETED
        if failed == cancelled == 0
        else OutcomeStatus.CANCELLED
        if cancelled == len(images)
        else OutcomeStatus.FAILED
        if failed == len(images)
        else OutcomeStatus.PARTIALLY_DELETED
    )
    outcome = OutcomeEvent(
        outcome_id=outcome_id_for(
            event.event_id, topic=pending.source.topic, partition=pending.source.partition, offset=pending.source.offset
        ),
        event_id=event.event_id,
        collection_name=event.collection_name,
        product_id=event.product_id,
        status=status,
        images=images,
        attempts=pending.attempts,
        api_calls=pending.api_calls,
        first_seen_at=pending.first_seen_at,
        completed_at=completed_at,
        dry_run=dry_run,
        source=RecordLocation(
            topic=pending.source.topic, partition=pending.source.partition, offset=pending.source.offset
        ),
        replay_of=None
        if pending.source.replay_of is None
        else RecordLocation(
            topic=pending.source.replay_of.topic,
            partition=pending.source.replay_of.partition,
            offset=pending.source.replay_of.offset,
        ),
        kind=event.kind,
    )
    return outcome.model_dump_json().encode()


@given(
    event_id=IDS,
    collection=IDS,
    product=IDS,
    images=st.lists(st.tuples(IDS, st.sampled_from(list(ItemStatus)), REASONS), min_size=1, max_size=30),
    attempts=st.integers(0, 100),
    api_calls=st.integers(0, 10_000),
    first_seen_at=MOMENTS,
    completed_at=MOMENTS,
    dry_run=st.booleans(),
    source=st.sampled_from([SOURCE, REPLAYED]),
)
def test_the_published_bytes_are_what_the_model_writes(
    *,
    event_id: str,
    collection: str,
    product: str,
    images: list[tuple[str, ItemStatus, str | None]],
    attempts: int,
    api_calls: int,
    first_seen_at: datetime,
    completed_at: datetime,
    dry_run: bool,
    source: SourceRecord,
) -> None:
    event = DelistEvent(
        event_id=event_id,
        collection_name=collection,
        product_id=product,
        image_ids=tuple(image for image, _, _ in images),
        source_format="json",
    )
    pending = PendingEvent(event, source, first_seen_at)
    for image, status, reason in images:
        pending.decide(ItemResult(DeleteItem(product, image), status, reason))
    pending.took_part(attempts=attempts, api_calls=api_calls)

    outcome = build_outcome(pending, completed_at=completed_at, dry_run=dry_run)

    assert outcome.value == reference_value(pending, completed_at=completed_at, dry_run=dry_run)
    model = OutcomeEvent.model_validate_json(outcome.value)
    assert (outcome.outcome_id, outcome.event_id, outcome.status, outcome.completed_at) == (
        model.outcome_id,
        model.event_id,
        model.status,
        completed_at,
    )


def test_the_outcome_id_is_a_uuid5_of_the_record_and_the_event_and_the_headers_name_it() -> None:
    event = DelistEvent(event_id="e1", collection_name="shoes", product_id="p1", image_ids=("a",), source_format="json")
    pending = PendingEvent(event, SOURCE, datetime(2026, 11, 23, tzinfo=UTC))
    pending.decide(ItemResult(DeleteItem("p1", "a"), ItemStatus.DELETED))
    completed_at = datetime(2026, 11, 23, 0, 1, tzinfo=UTC)
    outcome = build_outcome(pending, completed_at=completed_at, dry_run=True)
    assert outcome.outcome_id == str(uuid.uuid5(OUTCOME_NAMESPACE, "catalog.product-delisted\x000\x007\x00e1"))
    headers = dict(outcome_headers(outcome, source="imgsweep/test"))
    assert headers["ce_id"] == outcome.outcome_id.encode()
    assert headers["ce_subject"] == b"e1"
    assert headers["ce_time"] == completed_at.isoformat().encode()


@given(st.text(st.characters(exclude_categories=["Cs"])), IDS, st.integers(0, 2**31 - 1), st.integers(0, 2**63 - 1))
def test_the_outcome_id_is_uuid5_of_the_record_and_the_event(
    event_id: str, topic: str, partition: int, offset: int
) -> None:
    expected = uuid.uuid5(OUTCOME_NAMESPACE, f"{topic}\x00{partition}\x00{offset}\x00{event_id}")
    assert outcome_id_for(event_id, topic=topic, partition=partition, offset=offset) == str(expected)


def pending_for(source: SourceRecord, event_id: str = "e1") -> PendingEvent:
    event = DelistEvent(
        event_id=event_id, collection_name="shoes", product_id="p1", image_ids=("a",), source_format="json"
    )
    pending = PendingEvent(event, source, datetime(2026, 11, 23, tzinfo=UTC))
    pending.decide(ItemResult(DeleteItem("p1", "a"), ItemStatus.FAILED, "retries_exhausted"))
    return pending


def outcome_of(source: SourceRecord, event_id: str = "e1") -> OutcomeEvent:
    value = build_outcome(pending_for(source, event_id), completed_at=datetime(2026, 11, 24, tzinfo=UTC), dry_run=False)
    return OutcomeEvent.model_validate_json(value.value)


def test_a_redelivery_of_the_same_record_keeps_its_outcome_id_and_a_replayed_copy_gets_a_new_one() -> None:
    first = outcome_of(SOURCE)
    redelivered = outcome_of(SourceRecord("catalog.product-delisted", 0, 7, b"p", b"{}", [("h", b"v")], 1))
    assert redelivered.outcome_id == first.outcome_id
    assert first.source == RecordLocation(topic="catalog.product-delisted", partition=0, offset=7)
    assert first.replay_of is None

    next_offset = outcome_of(SourceRecord("catalog.product-delisted", 0, 8, b"p", b"{}", [], None))
    other_partition = outcome_of(SourceRecord("catalog.product-delisted", 1, 7, b"p", b"{}", [], None))
    other_topic = outcome_of(SourceRecord("catalog.other", 0, 7, b"p", b"{}", [], None))
    other_event = outcome_of(SOURCE, event_id="e2")
    ids = {first.outcome_id, next_offset.outcome_id, other_partition.outcome_id, other_topic.outcome_id}
    assert len(ids | {other_event.outcome_id}) == 5

    replayed = outcome_of(REPLAYED)
    assert replayed.outcome_id not in ids
    assert replayed.source == RecordLocation(topic="catalog.product-delisted", partition=1, offset=12)
    assert replayed.replay_of == RecordLocation(topic="catalog.product-delisted.dlq", partition=0, offset=3)


def test_replay_headers_name_the_dead_letter_and_read_back() -> None:
    dead_letter = DeadLetterRef("catalog.product-delisted.dlq", 2, 41)
    headers = [("trace", b"x"), *replay_of_headers(dead_letter), ("trace", b"y")]
    assert [name for name, _ in replay_of_headers(dead_letter)] == [
        "imgsweep_replay_of_topic",
        "imgsweep_replay_of_partition",
        "imgsweep_replay_of_offset",
    ]
    assert replay_of_from_headers(headers) == dead_letter
    assert replay_of_from_headers([("trace", b"x")]) is None
    assert replay_of_from_headers(headers[:-2]) is None  # no offset: not a replay
    broken = [(name, b"x" if name.endswith("offset") else value) for name, value in headers]
    assert replay_of_from_headers(broken) is None


def test_a_new_dead_letter_of_a_replayed_record_does_not_pass_the_replay_headers_as_original() -> None:
    record = SourceRecord(
        "catalog.product-delisted",
        1,
        12,
        b"p",
        b"{}",
        [("trace", b"x"), *replay_of_headers(DeadLetterRef("dlq", 0, 3))],
        None,
        DeadLetterRef("dlq", 0, 3),
    )
    headers = dead_letter_headers(record, error_class="item_failed", reason="r", at=datetime(2026, 11, 24, tzinfo=UTC))
    names = [name for name, _ in headers]
    assert names[0] == "trace"
    assert not any(name.startswith("imgsweep_replay_of") for name in names)
    assert dict(headers)["imgsweep_source_offset"] == b"12"


def test_a_permanent_failure_is_dead_lettered_with_the_strongest_reason_and_a_bounded_summary() -> None:
    images = tuple(f"{n:03d}-{'x' * 200}.jpg" for n in range(30))
    event = DelistEvent(event_id="e1", collection_name="shoes", product_id="p1", image_ids=images, source_format="json")
    pending = PendingEvent(event, SOURCE, datetime(2026, 11, 23, tzinfo=UTC))
    pending.decide(ItemResult(DeleteItem("p1", images[0]), ItemStatus.DELETED))
    pending.decide(ItemResult(DeleteItem("p1", images[1]), ItemStatus.ABSENT, "NO_RELATIVE_IMAGE"))
    assert pending.dead_letter_reason is None  # deleted and absent images are done
    pending.decide(ItemResult(DeleteItem("p1", images[2]), ItemStatus.FAILED, "NO_RELATIVE_COLLECTION"))
    assert pending.dead_letter_reason == "item_failed"
    pending.decide(ItemResult(DeleteItem("p1", images[3]), ItemStatus.FAILED, "retries_exhausted"))
    assert pending.dead_letter_reason == "retries_exhausted"
    pending.decide(ItemResult(DeleteItem("p1", images[4]), ItemStatus.FAILED, "INVALID_IMAGE_ID_LIST"))
    assert pending.dead_letter_reason == "retries_exhausted"  # a later, weaker reason does not replace it
    for image in images[5:]:
        pending.decide(ItemResult(DeleteItem("p1", image), ItemStatus.FAILED, "IMAGE_NUM_EXCEED_TOTAL_LIMIT"))
    summary = failure_summary(pending)
    assert summary.startswith("28 of 30 images failed for good: ")
    assert f"'{images[2]}': NO_RELATIVE_COLLECTION" in summary
    assert f"'{images[3]}': retries_exhausted" in summary
    assert images[0] not in summary
    assert images[1] not in summary
    assert summary.endswith(" more")
    assert len(summary) < 1000
