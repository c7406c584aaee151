"""Which input records imgsweep acts on (``IMGSWEEP_EVENTS__*``): delists, relists, and everything else skipped."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from service.settings.fields import JSON_ARRAY_OF_STRINGS, Section, json_setting
from service.vocabulary import DEFAULT_DELIST_TYPES, DEFAULT_RELIST_TYPES

__all__ = ["EventSettings"]


class EventSettings(Section):
    """Which input records are delists, which are relists, and which are none of imgsweep's business.

    Patterns are shell-style (``fnmatch``, case-sensitive) over the CloudEvents ``type``, or over the plain JSON
    member named by ``type_field``. A plain JSON event without that member is a delist (the plain format
    predates types); any other type is skipped: no call, no outcome, counted, committed.
    """

    delist_types: Annotated[tuple[str, ...], json_setting(JSON_ARRAY_OF_STRINGS)] = Field(
        default=DEFAULT_DELIST_TYPES,
        description="Event types that delete the product's images.",
    )
    relist_types: Annotated[tuple[str, ...], json_setting(JSON_ARRAY_OF_STRINGS)] = Field(
        default=DEFAULT_RELIST_TYPES,
        description="Event types that cancel the product's images not yet sent.",
    )
    type_field: str = Field(default="type", min_length=1, description="The plain JSON member holding the type.")

    @model_validator(mode="after")
    def _disjoint(self) -> EventSettings:
        both = set(self.delist_types) & set(self.relist_types)
        if both:
            raise ValueError(
                f"{sorted(both)} is both a delist and a relist type; IMGSWEEP_EVENTS__DELIST_TYPES and "
                "IMGSWEEP_EVENTS__RELIST_TYPES must not share a pattern"
            )
        if not self.delist_types:
            raise ValueError("IMGSWEEP_EVENTS__DELIST_TYPES is empty: imgsweep would never delete anything")
        return self
