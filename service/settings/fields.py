"""What the sections are built of: a frozen section, settings whose value is JSON, Kafka topic names."""

from __future__ import annotations

import json
import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

__all__ = ["JSON_ARRAY_OF_STRINGS", "JSON_OBJECT_OF_STRINGS", "Section", "TopicName", "json_setting"]

JSON_OBJECT_OF_STRINGS = 'a JSON object of strings, e.g. {"security.protocol": "SASL_SSL"}'
JSON_ARRAY_OF_STRINGS = 'a JSON array of strings, e.g. ["NO_AVAILABLE_FEATURE", "NO_RELATIVE_IMAGE"]'


class Section(BaseModel):
    """A nested section (``IMGSWEEP_<SECTION>__*``): frozen, and a misspelt setting is an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def json_setting(expected: str) -> BeforeValidator:
    """Parses a JSON setting here rather than in pydantic-settings, so an error names its variable.

    pydantic-settings reports a JSON error as one about the whole section ("kafka"), without the variable;
    with decoding turned off at the source (``enable_decoding=False``) the text arrives here and a bad one
    becomes an ordinary validation error at the setting's own location.
    """

    def parse(value: object) -> object:
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"is not valid JSON ({error.msg} at character {error.pos}); expected {expected}") from None

    return BeforeValidator(parse)


_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def _topic_name(value: str) -> str:
    if not _TOPIC_NAME.match(value) or value in {".", ".."}:
        raise ValueError(f"{value!r} is not a valid Kafka topic name (1-249 characters of A-Z a-z 0-9 . _ -)")
    return value


TopicName = Annotated[str, AfterValidator(_topic_name)]
