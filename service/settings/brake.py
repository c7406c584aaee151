"""The brake on mass deletes (``IMGSWEEP_BRAKE__*``): how many images a collection may lose in a sliding hour.

docs/decisions/0017-brake-and-pause.md gives the figures behind the default.
"""

from __future__ import annotations

from pydantic import Field

from service.settings.fields import Section

__all__ = ["BrakeSettings"]


class BrakeSettings(Section):
    """How many images one collection may have handed to calls in a sliding hour before its deletions stop."""

    max_images_per_hour: int = Field(
        default=20_000,
        ge=0,
        description=(
            "Images of one collection this replica hands to calls in any sliding hour before the collection's "
            "brake trips (its deletions stop on every replica until `imgsweep brake resume`); 0: no brake."
        ),
    )
