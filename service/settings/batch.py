"""How images are grouped into calls (``IMGSWEEP_BATCH__*``), within the API's caps."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from service.settings.api import API_MAX_BODY_BYTES, API_MAX_ITEMS
from service.settings.fields import Section
from service.settings.sources import ENV_PREFIX

__all__ = ["BatchSettings"]


class BatchSettings(Section):
    """How images are grouped into calls."""

    max_items: int = Field(default=API_MAX_ITEMS, ge=1)
    max_bytes: int = Field(default=API_MAX_BODY_BYTES, ge=1024)
    linger_seconds: float = Field(default=2.0, ge=0, le=3600)
    max_wait_seconds: float = Field(
        default=600.0,
        ge=0,
        le=86400,
        description="The longest a partial batch should wait: a pack's latency target; the call budget may exceed it.",
    )
    relist_grace_seconds: float = Field(
        default=10.0,
        ge=0,
        le=86400,
        description="A delist's images wait this long in its partition's event time, so a quick relist wins.",
    )

    @model_validator(mode="after")
    def _max_wait_not_below_linger(self) -> BatchSettings:
        if self.max_wait_seconds < self.linger_seconds:
            raise ValueError(
                f"{ENV_PREFIX}BATCH__MAX_WAIT_SECONDS ({self.max_wait_seconds}) must be at least "
                f"{ENV_PREFIX}BATCH__LINGER_SECONDS ({self.linger_seconds})"
            )
        return self

    @field_validator("max_items")
    @classmethod
    def _api_item_cap(cls, value: int) -> int:
        if value > API_MAX_ITEMS:
            raise ValueError(
                f"{value} is above the API's cap of {API_MAX_ITEMS} items per call; use 1 to {API_MAX_ITEMS}"
            )
        return value

    @field_validator("max_bytes")
    @classmethod
    def _api_body_cap(cls, value: int) -> int:
        if value > API_MAX_BODY_BYTES:
            raise ValueError(
                f"{value} is above the gateway's {API_MAX_BODY_BYTES}-byte (5 MB) body limit; "
                f"use at most {API_MAX_BODY_BYTES}"
            )
        return value
