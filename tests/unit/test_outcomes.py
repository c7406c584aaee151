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
    EventStatus,
    ImageOutcome,
    OutcomeEvent,
    build_outcome,
    outcome_headers,
    outcome_id_for,
)
from service.pipeline.pending import PendingEvent, SourceRecord

SOURCE = SourceRecord("catalog.product-delisted", 0, 7, b"p", b"{}", [], None)

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
        ImageOutcome(image_id=image, status=pending.results[image].status.value, reason=pending.results[image].reason)
        for image in event.image_ids
    ]
    failed = sum(1 for image in images if image.status == "failed")
    status: EventStatus = "deleted" if failed == 0 else "failed" if failed == len(images) else "partially_deleted"
    outcome = OutcomeEvent(
        outcome_id=outcome_id_for(event.event_id, event.collection_name, event.product_id),
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
) -> None:
    event = DelistEvent(
        event_id=event_id,
        collection_name=collection,
        product_id=product,
        image_ids=tuple(image for image, _, _ in images),
        source_format="json",
    )
    pending = PendingEvent(event, SOURCE, first_seen_at)
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


def test_the_outcome_id_is_a_uuid5_of_the_event_and_the_headers_name_it() -> None:
    event = DelistEvent(event_id="e1", collection_name="shoes", product_id="p1", image_ids=("a",), source_format="json")
    pending = PendingEvent(event, SOURCE, datetime(2026, 11, 23, tzinfo=UTC))
    pending.decide(ItemResult(DeleteItem("p1", "a"), ItemStatus.DELETED))
    completed_at = datetime(2026, 11, 23, 0, 1, tzinfo=UTC)
    outcome = build_outcome(pending, completed_at=completed_at, dry_run=True)
    assert outcome.outcome_id == str(uuid.uuid5(OUTCOME_NAMESPACE, "shoes\x00p1\x00e1"))
    headers = dict(outcome_headers(outcome, source="imgsweep/test"))
    assert headers["ce_id"] == outcome.outcome_id.encode()
    assert headers["ce_subject"] == b"e1"
    assert headers["ce_time"] == completed_at.isoformat().encode()


@given(st.text(st.characters(exclude_categories=["Cs"])), IDS, IDS)
def test_the_outcome_id_is_uuid5_of_collection_product_and_event(event_id: str, collection: str, product: str) -> None:
    expected = uuid.uuid5(OUTCOME_NAMESPACE, f"{collection}\x00{product}\x00{event_id}")
    assert outcome_id_for(event_id, collection, product) == str(expected)
