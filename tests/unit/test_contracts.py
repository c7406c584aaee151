"""The published contracts match the code, validate what the service really produces, and are valid AsyncAPI."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator, Draft202012Validator, FormatChecker

from service.api.models import DeleteItem, ItemResult, ItemStatus
from service.contracts import CONTRACTS_DIR, render_contracts
from service.pipeline.events import InvalidEvent, decode_event
from service.pipeline.outcomes import build_outcome, dead_letter_headers
from service.pipeline.pending import PendingEvent, SourceRecord

ASYNCAPI_SPECS = Path(os.environ.get("IMGSWEEP_TOOLS_DIR", Path.home() / ".cache/imgsweep/tools")) / (
    "asyncapi-specs-6.11.1/schemas/3.0.0-without-$id.json"
)


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CONTRACTS_DIR / name).read_text())
    return loaded


def test_committed_contracts_are_what_the_code_generates() -> None:
    for name, text in render_contracts().items():
        assert (CONTRACTS_DIR / name).read_text(encoding="utf-8") == text, (
            f"{name} is stale: run `python -m service.contracts` and commit the result"
        )


def record(value: bytes) -> SourceRecord:
    return SourceRecord("catalog.product-delisted", 2, 41, b"p1", value, [("trace", b"x")], 1_700_000_000_000)


def test_a_real_outcome_validates_against_the_outcome_schema() -> None:
    value = json.dumps(
        {"event_id": "e1", "collection_name": "shoes", "product_id": "p1", "image_ids": ["a", "b", "c"]}
    ).encode()
    pending = PendingEvent(decode_event(value, []), record(value), datetime(2026, 11, 23, tzinfo=UTC))
    pending.decide(ItemResult(DeleteItem("p1", "a"), ItemStatus.DELETED))
    pending.decide(ItemResult(DeleteItem("p1", "b"), ItemStatus.ABSENT, "NO_AVAILABLE_FEATURE"))
    pending.decide(ItemResult(DeleteItem("p1", "c"), ItemStatus.FAILED, "retries_exhausted"))
    pending.took_part(attempts=3, api_calls=4)
    outcome = build_outcome(pending, completed_at=datetime(2026, 11, 23, 0, 1, tzinfo=UTC), dry_run=False)
    document = json.loads(outcome.value)
    Draft202012Validator(schema("outcome-event.schema.json"), format_checker=FormatChecker()).validate(document)
    assert document["status"] == "partially_deleted"
    again = build_outcome(pending, completed_at=datetime(2026, 11, 24, tzinfo=UTC), dry_run=False)
    assert again.outcome_id == outcome.outcome_id  # a redelivered event yields the same outcome id


@pytest.mark.parametrize(
    ("document", "valid"),
    [
        ({"event_id": "e", "collection_name": "c", "product_id": "p", "image_ids": ["i"]}, True),
        ({"event_id": "e", "collection_name": "c", "product_id": "p", "image_ids": ["i"], "extra": 1}, True),
        (
            {"event_id": "e", "collection_name": "c", "product_id": "p", "image_ids": ["i"], "occurred_at": None},
            True,
        ),
        ({"event_id": "e", "collection_name": "c", "product_id": "p", "image_ids": []}, False),
        ({"event_id": "e", "collection_name": "c", "product_id": "p", "image_ids": ["i"] * 31}, False),
        ({"event_id": "e", "collection_name": "c", "product_id": 7, "image_ids": ["i"]}, False),
        ({"event_id": "e", "collection_name": "c", "image_ids": ["i"]}, False),
        ({"event_id": "e\n", "collection_name": "c", "product_id": "p", "image_ids": ["i"]}, False),
    ],
)
def test_the_input_schema_and_the_decoder_agree(document: dict[str, Any], valid: bool) -> None:
    validator = Draft202012Validator(schema("input-event.schema.json"), format_checker=FormatChecker())
    assert validator.is_valid(document) is valid
    try:
        decode_event(json.dumps(document).encode(), [])
        decoded = True
    except InvalidEvent:
        decoded = False
    assert decoded is valid


def test_dead_letter_headers_validate() -> None:
    headers = dead_letter_headers(
        record(b"{oops"), error_class="invalid_json", reason="not JSON", at=datetime(2026, 11, 23, tzinfo=UTC)
    )
    as_object = {name: (value or b"").decode() for name, value in headers if name.startswith("imgsweep_")}
    Draft202012Validator(schema("dead-letter-headers.schema.json"), format_checker=FormatChecker()).validate(as_object)
    assert ("trace", b"x") in headers  # the original headers stay


def test_the_asyncapi_document_is_valid_asyncapi_3() -> None:
    if not ASYNCAPI_SPECS.is_file():
        pytest.fail(f"{ASYNCAPI_SPECS} missing: run deploy/tools/fetch-asyncapi-specs.sh (make test does)")
    spec = json.loads(ASYNCAPI_SPECS.read_text())
    document = schema("asyncapi.json")
    errors = sorted(Draft7Validator(spec).iter_errors(document), key=str)
    assert errors == []
    for message in document["components"]["messages"].values():
        for part in ("payload", "headers"):
            reference = message.get(part, {}).get("$ref", "")
            if reference and not reference.startswith("#"):
                assert (CONTRACTS_DIR / reference).is_file(), reference
