"""The JD product image delete API (``IMGSWEEP_API__*``), how politely to call it, and what an account may spend.

The fields marked ``PerAccount`` are the ones a named account (``IMGSWEEP_ACCOUNTS__<NAME>__*``) sets for itself;
``service.settings.accounts`` derives the account section from these marks, so a field is declared once, here.
"""

from __future__ import annotations

import re
from datetime import time, timedelta, timezone, tzinfo
from enum import Enum
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import (
    Field,
    HttpUrl,
    PlainSerializer,
    PlainValidator,
    SecretStr,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from service.settings.fields import JSON_ARRAY_OF_STRINGS, Section, json_setting
from service.settings.sources import ENV_PREFIX

__all__ = [
    "API_MAX_BODY_BYTES",
    "API_MAX_ITEMS",
    "DEFAULT_ENDPOINT",
    "OLD_RESET_ZONE_NAME",
    "ApiSettings",
    "PerAccount",
    "ResetZone",
]

API_MAX_ITEMS = 200
"""The API's cap on items in one call (shared by all batch interfaces of the product)."""
API_MAX_BODY_BYTES = 5 * 1024 * 1024
"""The gateway rejects any request body over 5 MB."""
DEFAULT_ENDPOINT = "https://aiapi.jdcloud.com/jdai/product_image_del_image"


class PerAccount(Enum):
    """Marks an ``ApiSettings`` field a named account sets as ``IMGSWEEP_ACCOUNTS__<NAME>__<FIELD>``, e.g.
    ``qps: Annotated[float, PerAccount.INHERITED] = Field(...)``. Unmarked fields are the same for every account."""

    OWN = "own"
    """The account's own key: never taken from ``IMGSWEEP_API__*`` (a key used for the wrong account fails every
    call), and required of every account unless in dry-run."""
    INHERITED = "inherited"
    """Left unset, the account takes the ``IMGSWEEP_API__*`` setting of the same name."""


def _reset_zone(value: object) -> tzinfo:
    """An IANA time zone name (``Asia/Shanghai``, from the system's zone database) or a fixed offset (``+08:00``)."""
    if isinstance(value, tzinfo):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a time zone name like Asia/Shanghai or a UTC offset like +08:00")  # noqa: TRY004
    text = value.strip()
    match = re.fullmatch(r"([+-])(\d{2}):(\d{2})", text)
    if match:
        hours, minutes = int(match.group(2)), int(match.group(3))
        if hours > 14 or minutes > 59:
            raise ValueError(f"{value!r} is not a UTC offset (from -14:00 to +14:00, like +08:00 or -05:30)")
        return timezone((-1 if match.group(1) == "-" else 1) * timedelta(hours=hours, minutes=minutes))
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):  # ValueError: not even a well-formed key (empty, "../x")
        pass
    if not available_timezones():
        raise ValueError(
            f"{value!r} cannot be looked up: this system has no IANA time zone database (install Debian's tzdata "
            "package or PyPI's tzdata), or use a UTC offset like +08:00"
        )
    raise ValueError(
        f"{value!r} is not a time zone: use an IANA name like Asia/Shanghai or a UTC offset like +08:00 or -05:30"
    )


def _zone_name(zone: tzinfo) -> str:
    """How a reset zone is shown (check-config): the IANA name, or the offset as ``+08:00``."""
    if isinstance(zone, ZoneInfo):
        return zone.key
    minutes = int((zone.utcoffset(None) or timedelta(0)).total_seconds()) // 60
    return f"{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


ResetZone = Annotated[
    tzinfo,
    PlainValidator(_reset_zone),
    PlainSerializer(_zone_name, return_type=str),
    WithJsonSchema({"type": "string", "examples": ["+08:00", "Asia/Shanghai"]}),
]
OLD_RESET_ZONE_NAME = "quota_reset_utc_offset"
"""The reset zone's setting before IANA names were accepted (``IMGSWEEP_API__QUOTA_RESET_UTC_OFFSET``), still read."""


class ApiSettings(Section):
    """The JD product image delete API, how politely to call it, and what the account may spend.

    With named accounts these are the defaults of every account: a ``PerAccount`` field an account leaves unset
    is taken from here (its keys never are), and the account's whole settings are checked by these same rules.
    """

    endpoint: Annotated[HttpUrl, PerAccount.INHERITED] = Field(default=HttpUrl(DEFAULT_ENDPOINT))
    access_key: Annotated[SecretStr | None, PerAccount.OWN] = None
    secret_key: Annotated[SecretStr | None, PerAccount.OWN] = None
    region: Annotated[str, PerAccount.INHERITED] = Field(default="cn-north-1", min_length=1, pattern=r"^[a-z0-9-]+$")
    service: str = Field(default="aiapi", min_length=1, pattern=r"^[a-z0-9-]+$")
    qps: Annotated[float, PerAccount.INHERITED] = Field(
        default=2.0, gt=0, le=1000, description="The account's QPS limit, shared by replicas."
    )
    qps_share: Literal["demand", "partitions"] = Field(
        default="demand",
        description=(
            "How replicas share the QPS: by the calls each could make now, announced on the demand topic, or "
            "(the old rule) by the fraction of the input topic's partitions each holds."
        ),
    )
    workers: Annotated[int, PerAccount.INHERITED] = Field(
        default=4, ge=1, le=64, description="Threads making API calls."
    )
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    read_timeout_seconds: float = Field(default=30.0, gt=0)
    write_timeout_seconds: float = Field(default=10.0, gt=0)
    pool_timeout_seconds: float = Field(default=5.0, gt=0)
    max_attempts: int = Field(default=8, ge=1, le=100, description="Tries of one call before giving up.")
    max_elapsed_seconds: float = Field(default=600.0, gt=0, description="Time budget of one call's retries.")
    backoff_initial_seconds: float = Field(default=0.5, gt=0)
    backoff_max_seconds: float = Field(default=30.0, gt=0)
    absent_reasons: Annotated[frozenset[str], json_setting(JSON_ARRAY_OF_STRINGS)] = Field(
        default=frozenset({"NO_AVAILABLE_FEATURE", "NO_RELATIVE_IMAGE"}),
        description="failed_list reasons meaning the image is not in the collection (the goal holds).",
    )
    retryable_item_reasons: Annotated[frozenset[str], json_setting(JSON_ARRAY_OF_STRINGS)] = Field(
        default=frozenset({"DELETE_IMAGE_ERROR", "INTERNAL_SERVER_ERROR"})
    )
    quota_reset_zone: ResetZone = Field(
        default=timezone(timedelta(hours=8)),
        description="Time zone of the daily quota reset: an IANA name (Asia/Shanghai) or a UTC offset (+08:00).",
    )
    quota_reset_time: time = Field(default=time(0, 0), description="Local time of the daily reset.")
    payment_probe_seconds: float = Field(
        default=3600.0,
        ge=60,
        le=86_400,
        description="While the API answers 10010 (a paid pack ran out): how often to probe with a call.",
    )
    fatal_probe_seconds: float = Field(
        default=60.0,
        ge=1,
        le=3600,
        description="After a fatal answer (keys, clock, permission, endpoint): the wait before the account's first "
        "probe call; doubled after each probe still answered fatal, up to fatal_probe_max_seconds.",
    )
    fatal_probe_max_seconds: float = Field(
        default=900.0, ge=1, le=86_400, description="The longest wait between probes of a halted account."
    )
    allowance: Annotated[Literal["daily", "pack"], PerAccount.INHERITED] = Field(
        default="daily",
        description="The account's calls: a free plan's daily allowance (lost at the reset) or a paid call pack.",
    )
    daily_calls: Annotated[int, PerAccount.INHERITED] = Field(
        default=500,
        ge=-1,
        description="The daily allowance (a pack: calls assumed left until the API first answers with remainTimes). "
        "-1: with a daily allowance, no budget (partial batches go after the linger, as before the budget existed); "
        "with a pack, no limit assumed before that first answer.",
    )

    reserve_calls: Annotated[int, PerAccount.INHERITED] = Field(
        default=0, ge=0, description="Calls never spent: left to the shop's own searches."
    )
    reserve_fraction: Annotated[float, PerAccount.INHERITED] = Field(
        default=0.1,
        ge=0,
        lt=1,
        description="The reserve as a fraction of daily_calls (a pack: of its daily spending limit); the larger wins.",
    )
    price_per_call: Annotated[float | None, PerAccount.INHERITED] = Field(
        default=None, gt=0, description="A pack's money per call."
    )
    daily_spend_limit: Annotated[float | None, PerAccount.INHERITED] = Field(
        default=None, gt=0, description="A pack's most money spent in one day (from one reset to the next)."
    )

    @field_validator("daily_calls")
    @classmethod
    def _not_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("0 calls a day would never delete anything; use a positive number, or -1 for no limit")
        return value

    @property
    def budgeted(self) -> bool:
        """Whether the account's calls go by a call budget (``DAILY_CALLS=-1`` with a daily allowance: none)."""
        return not (self.allowance == "daily" and self.daily_calls < 0)

    @model_validator(mode="after")
    def _pack_spending(self) -> ApiSettings:
        if (self.price_per_call is None) != (self.daily_spend_limit is None):
            raise ValueError(
                f"set {ENV_PREFIX}API__PRICE_PER_CALL and {ENV_PREFIX}API__DAILY_SPEND_LIMIT together, or neither"
            )
        if self.daily_spend_limit is not None and self.allowance != "pack":
            raise ValueError(f"a daily spending limit needs {ENV_PREFIX}API__ALLOWANCE=pack")
        return self

    @model_validator(mode="after")
    def _backoff_bounds(self) -> ApiSettings:
        if self.backoff_max_seconds < self.backoff_initial_seconds:
            raise ValueError(
                f"backoff_max_seconds ({self.backoff_max_seconds}) must be at least "
                f"backoff_initial_seconds ({self.backoff_initial_seconds})"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _old_reset_zone_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and OLD_RESET_ZONE_NAME in data:
            data = dict(data)
            old = data.pop(OLD_RESET_ZONE_NAME)
            if "quota_reset_zone" in data:
                raise ValueError(
                    f"set {ENV_PREFIX}API__QUOTA_RESET_ZONE or its old name {ENV_PREFIX}API__QUOTA_RESET_UTC_OFFSET, "
                    "not both"
                )
            data["quota_reset_zone"] = old
        return data
