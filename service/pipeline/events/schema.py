"""The event's fields and their rules: identifier types, the plain-JSON schema producers see, the decoded event.

The models are where each rule is stated and worded: ``fields``' fast path for the common case must agree with
them (``tests/unit/test_events.py`` compares both), and ``input_event_json_schema()`` publishes the plain form's
(``docs/contracts/input-event.schema.json``), so producers read the rules the decoder applies.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError

from service.pipeline.events.timestamps import WireTimestamp, aware_utc
from service.vocabulary import EventKind

__all__ = [
    "FORBIDDEN_CHARACTER",
    "MAX_COLLECTION_NAME_CHARS",
    "MAX_EVENT_ID_CHARS",
    "MAX_IMAGES_PER_EVENT",
    "MAX_IMAGE_ID_CHARS",
    "MAX_PRODUCT_ID_CHARS",
    "CollectionName",
    "DelistEvent",
    "DelistEventData",
    "EventId",
    "ImageId",
    "NonEmptyText",
    "PlainDelistEvent",
    "ProductId",
    "SourceFormat",
    "input_event_json_schema",
    "merge_duplicates",
]

MAX_IMAGES_PER_EVENT: Final = 30

MAX_EVENT_ID_CHARS: Final = 256
MAX_COLLECTION_NAME_CHARS: Final = 128
MAX_PRODUCT_ID_CHARS: Final = 128
MAX_IMAGE_ID_CHARS: Final = 256

SourceFormat = Literal["json", "cloudevents-structured", "cloudevents-binary"]


# --- identifiers -----------------------------------------------------------------------------------------------

# Python's re and ECMA-262 (JSON Schema's dialect) both read \uXXXX, so the schema can state the same rule.
# Surrogates stay out of the schema's pattern: a UTF-16 regex would then refuse every astral character (emoji),
# which it sees as a surrogate pair.
_FORBIDDEN_CHARACTERS: Final = r"\u0000-\u001F\u007F-\u009F\u2028\u2029"
FORBIDDEN_CHARACTER: Final = re.compile(f"[{_FORBIDDEN_CHARACTERS}\\uD800-\\uDFFF]")
# The end is `(?![\s\S])`, not `$`: Python's `$` (used by Python validators) also matches before a final "\n".
_IDENTIFIER_SCHEMA: Final[dict[str, Any]] = {"pattern": f"^[^{_FORBIDDEN_CHARACTERS}]+(?![\\s\\S])"}


def _without_forbidden_characters(value: str) -> str:
    found = FORBIDDEN_CHARACTER.search(value)
    if found is not None:
        raise PydanticCustomError(
            "forbidden_character",
            "contains {character} at position {position} (control characters, U+2028/U+2029 and lone "
            "surrogates are not allowed)",
            {"character": f"U+{ord(found.group()):04X}", "position": found.start()},
        )
    return value


EventId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_EVENT_ID_CHARS),
    AfterValidator(_without_forbidden_characters),
    Field(json_schema_extra=_IDENTIFIER_SCHEMA),
]
CollectionName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_COLLECTION_NAME_CHARS),
    AfterValidator(_without_forbidden_characters),
    Field(json_schema_extra=_IDENTIFIER_SCHEMA),
]
ProductId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_PRODUCT_ID_CHARS),
    AfterValidator(_without_forbidden_characters),
    Field(json_schema_extra=_IDENTIFIER_SCHEMA),
]
ImageId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_IMAGE_ID_CHARS),
    AfterValidator(_without_forbidden_characters),
    Field(json_schema_extra=_IDENTIFIER_SCHEMA),
]
NonEmptyText = Annotated[str, StringConstraints(min_length=1)]

# --- the wire formats ------------------------------------------------------------------------------------------

_IMAGE_IDS_DESCRIPTION: Final = (
    f"The product's images to remove, 1 to {MAX_IMAGES_PER_EVENT} entries; duplicates are merged."
)
_OCCURRED_AT_DESCRIPTION: Final = "When the product was delisted, RFC 3339 with an offset. Optional."


class PlainDelistEvent(BaseModel):
    """A product was delisted: delete these images of it from this JD image search collection.

    Members not listed here are ignored. Ids are strings (numbers are refused) and are used exactly as sent.
    """

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True, title="Product delisted event")

    event_id: EventId = Field(description="Unique per event; the outcome event repeats it.")
    collection_name: CollectionName = Field(description="The JD product image search collection.")
    product_id: ProductId = Field(description="The product (JD SKU), as a string.")
    image_ids: list[ImageId] = Field(min_length=1, max_length=MAX_IMAGES_PER_EVENT, description=_IMAGE_IDS_DESCRIPTION)
    occurred_at: WireTimestamp = Field(default=None, description=_OCCURRED_AT_DESCRIPTION)


class DelistEventData(BaseModel):
    """The ``data`` of a delist CloudEvent (or a binary-mode value): the event id is the CloudEvent's ``id``."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True, title="Product delisted event data")

    collection_name: CollectionName = Field(description="The JD product image search collection.")
    product_id: ProductId = Field(description="The product (JD SKU), as a string.")
    image_ids: list[ImageId] = Field(min_length=1, max_length=MAX_IMAGES_PER_EVENT, description=_IMAGE_IDS_DESCRIPTION)
    occurred_at: WireTimestamp = Field(
        default=None, description=_OCCURRED_AT_DESCRIPTION + " The CloudEvent's time stands in when absent."
    )


# --- the decoded event -----------------------------------------------------------------------------------------


def merge_duplicates(image_ids: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(image_ids))


class DelistEvent(BaseModel):
    """One decoded event, validated: a delist (which distinct images of which collection must go), or a relist
    (``kind``: which product's images not yet sent must stay)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    event_id: EventId
    collection_name: CollectionName
    product_id: ProductId
    image_ids: Annotated[
        tuple[ImageId, ...],
        Field(min_length=1, max_length=MAX_IMAGES_PER_EVENT),
        AfterValidator(merge_duplicates),
    ]
    """Distinct, in order of first appearance. A relist's may be empty: it is built from a valid event by
    ``fields.relist_event`` without validating again."""
    occurred_at: Annotated[datetime | None, AfterValidator(aware_utc)] = None
    """Aware and in UTC, or None when the producer did not say."""
    source_format: SourceFormat
    kind: EventKind = EventKind.DELIST
    """A relist's ``image_ids`` may be empty: it cancels whatever of the product's images is not yet sent."""
    event_type: str | None = None
    """The CloudEvents ``type`` (or the plain JSON type member) as sent; None for an untyped plain event."""
    traceparent: str | None = None
    """The CloudEvents Distributed Tracing extension as sent (a structured envelope's ``traceparent`` member, a
    binary event's ``ce_traceparent`` header), unchecked: ``trace_context`` checks it and never refuses an event."""
    tracestate: str | None = None


def input_event_json_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of a plain-JSON input event, as producers should see it published."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **PlainDelistEvent.model_json_schema()}
