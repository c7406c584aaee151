"""The published contracts of the three topics: JSON Schemas and an AsyncAPI 3.0 document.

Generated from the pydantic models that decode input and build output, so the documents cannot drift from
the code: ``python -m service.contracts`` rewrites ``docs/contracts/``, and a test fails when the committed
files differ from what the code generates.

The schemas are published for readers, who must ignore members they do not know
(docs/decisions/0013-contract-compatibility.md): so no ``additionalProperties: false`` in them, while the
models that build outcomes stay strict (``extra="forbid"``) and imgsweep never writes a member the schema does
not name. The last published version of each schema is kept in ``docs/contracts/published/``, and a test fails
when a generated schema is not a compatible successor of it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from service.pipeline.events import ERROR_CLASSES, input_event_json_schema
from service.pipeline.outcomes import DLQ_HEADER_PREFIX, OUTCOME_TYPE, REPLAY_OF_HEADERS, OutcomeEvent
from service.settings import KafkaSettings
from service.vocabulary import DeadLetterReason

__all__ = ["CONTRACTS_DIR", "PUBLISHED_DIR", "for_readers", "render_contracts"]

CONTRACTS_DIR = Path(__file__).resolve().parent.parent / "docs" / "contracts"
PUBLISHED_DIR = CONTRACTS_DIR / "published"
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def for_readers(schema: Any) -> Any:
    """The schema a reader validates with: the same, but open to members added later within the version.

    A producer-side model forbids unknown members to catch imgsweep's own mistakes; published as is, that
    ``additionalProperties: false`` would make every reader that validates reject the next additive change.
    """
    if isinstance(schema, dict):
        return {
            key: for_readers(value)
            for key, value in schema.items()
            if not (key == "additionalProperties" and value is False)
        }
    if isinstance(schema, list):
        return [for_readers(value) for value in schema]
    return schema


def outcome_schema() -> dict[str, Any]:
    schema = OutcomeEvent.model_json_schema()
    return {"$schema": SCHEMA_DIALECT, "$id": "outcome-event.schema.json", **schema}


def dead_letter_schema() -> dict[str, Any]:
    """A dead letter is the original record, byte for byte, plus headers; this describes the headers."""
    text = {"type": "string"}
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": "dead-letter-headers.schema.json",
        "title": "DeadLetterHeaders",
        "description": (
            "Headers imgsweep adds to a dead-lettered record. The record keeps its original key, value and "
            "headers, so `imgsweep replay-dlq` can republish it unchanged once the cause is fixed; except a copy "
            "over the producer's message.max.bytes, written with a prefix of its value (imgsweep_truncated; the "
            "original is where imgsweep_source_* say, on the input topic, and replay-dlq passes over it)."
        ),
        "type": "object",
        "properties": {
            f"{DLQ_HEADER_PREFIX}error_class": {
                "enum": [
                    *ERROR_CLASSES,
                    *(reason for reason in DeadLetterReason if reason is not DeadLetterReason.INVALID_EVENT),
                ],
                "x-open-enum": True,
                "description": (
                    "An open set: new classes are added within a version (a new input format brings its own), so "
                    "a reader treats a class it does not know as one more cause to look at, never as an error. "
                    "Why: the decoder's error class for invalid input; for an event whose outcome has an image "
                    "failed for good, retries_exhausted (the API kept failing), internal_error (imgsweep failed "
                    "on the call, or while handling the record, or the record stopped the process twice), "
                    "no_account (the collection belongs to no configured account: no call was made) "
                    "or item_failed (the API refused an image, e.g. NO_RELATIVE_COLLECTION)."
                ),
            },
            f"{DLQ_HEADER_PREFIX}error_reason": {
                **text,
                "maxLength": 1000,
                "description": "Readable reason; for a failed event, the images that failed and the API's reasons.",
            },
            f"{DLQ_HEADER_PREFIX}source_topic": text,
            f"{DLQ_HEADER_PREFIX}source_partition": {**text, "pattern": "^[0-9]+$"},
            f"{DLQ_HEADER_PREFIX}source_offset": {**text, "pattern": "^[0-9]+$"},
            f"{DLQ_HEADER_PREFIX}dead_lettered_at": {**text, "format": "date-time"},
            f"{DLQ_HEADER_PREFIX}truncated": {
                **text,
                "pattern": "^value(,headers)?(,key)?$",
                "description": (
                    "Only on a copy too large to write whole: what was cut. value: the value is a prefix of the "
                    "original's; headers: the original headers were left out; key: the key too."
                ),
            },
            f"{DLQ_HEADER_PREFIX}original_size": {
                **text,
                "pattern": "^[0-9]+$",
                "description": "With imgsweep_truncated: the original value's size in bytes.",
            },
            f"{DLQ_HEADER_PREFIX}original_sha256": {
                **text,
                "pattern": "^[0-9a-f]{64}$",
                "description": "With imgsweep_truncated: the SHA-256 of the original value (hex).",
            },
            "traceparent": {
                **text,
                "description": (
                    "W3C trace context. Kept if the record had it; added when the record carried its context only "
                    "as the CloudEvents Distributed Tracing extension (ce_traceparent, or a structured envelope's "
                    "traceparent member)."
                ),
            },
            "tracestate": {**text, "description": "W3C trace state, with traceparent."},
        },
        "required": [
            f"{DLQ_HEADER_PREFIX}{name}"
            for name in ("error_class", "error_reason", "source_topic", "source_partition", "source_offset")
        ]
        + [f"{DLQ_HEADER_PREFIX}dead_lettered_at"],
    }


def asyncapi() -> dict[str, Any]:
    defaults = KafkaSettings()
    ce_headers = {
        "type": "object",
        "properties": {
            "ce_specversion": {"const": "1.0"},
            "ce_id": {"type": "string", "description": "= outcome_id"},
            "ce_type": {"const": OUTCOME_TYPE},
            "ce_source": {"type": "string"},
            "ce_time": {"type": "string", "format": "date-time"},
            "ce_subject": {"type": "string", "description": "= event_id"},
            "traceparent": {
                "type": "string",
                "description": (
                    "The input's W3C trace context, when it had one: its traceparent header, else its CloudEvents "
                    "Distributed Tracing extension."
                ),
            },
            "tracestate": {"type": "string", "description": "The input's W3C trace state, with traceparent."},
        },
        "required": ["ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time"],
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "imgsweep",
            "version": "1.0.0",
            "description": (
                "Consumes product-delisted events, deletes the products' images from JD product image search, "
                "publishes one outcome per valid event and dead-letters what it cannot decode or complete. "
                "Topic names are the defaults; each is a setting (IMGSWEEP_KAFKA__*_TOPIC)."
            ),
        },
        "defaultContentType": "application/json",
        "channels": {
            "delisted": {
                "address": defaults.input_topic,
                "description": (
                    "Input. Plain JSON, or CloudEvents 1.0 in structured or binary (ce_* headers) mode. The "
                    "CloudEvents type (or, in plain JSON, the member named by IMGSWEEP_EVENTS__TYPE_FIELD, default "
                    "`type`) says what the event is: a delist (IMGSWEEP_EVENTS__DELIST_TYPES, default "
                    "`*product.delisted`, `*product-delisted`, `*product_delisted`, `*ProductDelisted`) deletes the "
                    "images after the relist grace; a relist (IMGSWEEP_EVENTS__RELIST_TYPES, the same with "
                    "`relisted`) cancels the product's images not yet sent, and its data needs only collection_name "
                    "and product_id. Plain JSON without a type member is a delist. Any other type is skipped: no "
                    "call, no outcome, committed. A product's delist and relist must be on one partition (key the "
                    "records by product id)."
                ),
                "messages": {"productDelisted": {"$ref": "#/components/messages/productDelisted"}},
            },
            "outcomes": {
                "address": defaults.outcome_topic,
                "description": (
                    "One outcome per valid input event, keyed by product id. Read with "
                    "isolation.level=read_committed: imgsweep writes outcomes, dead letters and its input offsets in "
                    "one Kafka transaction (IMGSWEEP_KAFKA__DELIVERY=exactly_once, the default), so a committed "
                    "reader sees each outcome once, and never one of an aborted transaction. With at_least_once a "
                    "crash may publish an outcome again, with the same outcome_id."
                ),
                "messages": {"imageDeletionOutcome": {"$ref": "#/components/messages/imageDeletionOutcome"}},
            },
            "deadLetters": {
                "address": defaults.dlq_topic,
                "description": (
                    "Undecodable input, and every event whose outcome has an image failed for good (also reported "
                    "in its outcome), so `imgsweep replay-dlq` can redo it once the cause is fixed. Read with "
                    "isolation.level=read_committed, as the outcomes: dead letters are written in the same "
                    "transaction as the outcomes and the input offsets (exactly_once, the default), so a committed "
                    "reader sees each once and never one of an aborted transaction."
                ),
                "messages": {"deadLetter": {"$ref": "#/components/messages/deadLetter"}},
            },
        },
        "operations": {
            "consumeDelisted": {
                "action": "receive",
                "channel": {"$ref": "#/channels/delisted"},
                "messages": [{"$ref": "#/channels/delisted/messages/productDelisted"}],
            },
            "publishOutcome": {
                "action": "send",
                "channel": {"$ref": "#/channels/outcomes"},
                "messages": [{"$ref": "#/channels/outcomes/messages/imageDeletionOutcome"}],
            },
            "publishDeadLetter": {
                "action": "send",
                "channel": {"$ref": "#/channels/deadLetters"},
                "messages": [{"$ref": "#/channels/deadLetters/messages/deadLetter"}],
            },
        },
        "components": {
            "messages": {
                "productDelisted": {
                    "name": "ProductDelisted",
                    "headers": {
                        "type": "object",
                        "description": (
                            "Only content-type and ce_* headers are read for the event, and traceparent/tracestate "
                            "(W3C trace context; else the CloudEvents extension), carried to the outcome and the "
                            "dead letter. A copy republished by "
                            "`imgsweep replay-dlq` also names the dead letter it comes from; its outcome's replay_of "
                            "repeats them."
                        ),
                        "properties": {
                            name: {"type": "string"}
                            if name.endswith("topic")
                            else {"type": "string", "pattern": "^[0-9]+$"}
                            for name in REPLAY_OF_HEADERS
                        },
                    },
                    "payload": {"$ref": "input-event.schema.json"},
                },
                "imageDeletionOutcome": {
                    "name": "ImageDeletionOutcome",
                    "headers": ce_headers,
                    "payload": {"$ref": "outcome-event.schema.json"},
                },
                "deadLetter": {
                    "name": "DeadLetter",
                    "description": "The original record's key, value and headers, unchanged, plus these headers.",
                    "headers": {"$ref": "dead-letter-headers.schema.json"},
                },
            }
        },
    }


def render_contracts() -> dict[str, str]:
    """File name -> exact text of every contract document."""
    input_schema = {"$id": "input-event.schema.json", **input_event_json_schema()}
    documents = {
        "input-event.schema.json": for_readers(input_schema),
        "outcome-event.schema.json": for_readers(outcome_schema()),
        "dead-letter-headers.schema.json": for_readers(dead_letter_schema()),
        "asyncapi.json": asyncapi(),
    }
    return {name: json.dumps(doc, indent=2, ensure_ascii=False) + "\n" for name, doc in documents.items()}


def main() -> int:
    CONTRACTS_DIR.mkdir(parents=True, exist_ok=True)
    for name, text in render_contracts().items():
        (CONTRACTS_DIR / name).write_text(text, encoding="utf-8")
        print(f"wrote {CONTRACTS_DIR / name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
