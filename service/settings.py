"""The service's whole configuration, read once at start-up.

Every setting comes from the environment (prefix ``IMGSWEEP_``, nested sections joined by ``__``, e.g.
``IMGSWEEP_KAFKA__BOOTSTRAP_SERVERS``) or, for secrets, from files in a secrets directory named the same way
(how a Kubernetes Secret is mounted). Validation happens here, at start-up, with messages that name the
setting, what is wrong and what is allowed; nothing later re-checks configuration.
"""

from __future__ import annotations

import json
import os
import re
from datetime import time, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
    SecretStr,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NestedSecretsSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from service.registry.settings import SchemaRegistrySettings

__all__ = [
    "API_MAX_BODY_BYTES",
    "API_MAX_ITEMS",
    "DEFAULT_ACCOUNT",
    "DRY_RUN_SUFFIX",
    "EVERY_OTHER_COLLECTION",
    "Account",
    "AccountSettings",
    "ApiSettings",
    "BatchSettings",
    "ConfigError",
    "EventSettings",
    "HttpSettings",
    "KafkaSettings",
    "LogSettings",
    "Settings",
    "load_settings",
    "masked_config",
]

ENV_PREFIX = "IMGSWEEP_"
SECRETS_DIR_ENV = "IMGSWEEP_SECRETS_DIR"
DEFAULT_SECRETS_DIR = Path("/var/run/secrets/imgsweep")

API_MAX_ITEMS = 200
"""The API's cap on items in one call (shared by all batch interfaces of the product)."""
API_MAX_BODY_BYTES = 5 * 1024 * 1024
"""The gateway rejects any request body over 5 MB."""
DEFAULT_ENDPOINT = "https://aiapi.jdcloud.com/jdai/product_image_del_image"

# librdkafka properties the service sets itself: letting configuration override them would break
# "offsets never run ahead of outcomes" or the consumer group contract.
_RESERVED_KAFKA_PROPERTIES = {
    "bootstrap.servers": "IMGSWEEP_KAFKA__BOOTSTRAP_SERVERS",
    "group.id": "IMGSWEEP_KAFKA__GROUP_ID",
    "enable.auto.commit": "none: offsets are committed only after outcomes are acknowledged",
    "enable.auto.offset.store": "none: offsets are stored only after outcomes are acknowledged",
    "enable.idempotence": "none: the producer is always idempotent",
    "acks": "none: outcomes are always published with acks=all",
    "partition.assignment.strategy": "none: the service uses cooperative-sticky (classic protocol)",
    "group.protocol": "IMGSWEEP_KAFKA__GROUP_PROTOCOL",
    "group.instance.id": "IMGSWEEP_KAFKA__GROUP_INSTANCE_ID",
}
# Options librdkafka refuses with group.protocol=consumer (KIP-848): the broker decides them.
_CLASSIC_ONLY_KAFKA_PROPERTIES = {
    "session.timeout.ms": "the broker's group.consumer.session.timeout.ms",
    "heartbeat.interval.ms": "the broker's group.consumer.heartbeat.interval.ms",
}
# Kafka's rule for group.instance.id (the same characters as a topic name); a pod's name always fits.
_GROUP_INSTANCE_ID = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_SECRET_PROPERTY = re.compile(r"(password|secret|token|key)", re.IGNORECASE)
# Settings whose raw value is never echoed in an error: they may carry TLS/SASL secrets as plain strings.
_NEVER_SHOWN = {"IMGSWEEP_KAFKA__PROPERTIES", "IMGSWEEP_ACCOUNTS", "IMGSWEEP_SCHEMA_REGISTRY__URL"}  # may hold user:pw@
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


DRY_RUN_SUFFIX = ".dry-run"
"""Appended, in dry-run, to the consumer group id and the outcome, dead-letter and demand topics."""


def _dry_run_form(name: str) -> str:
    return name if name.endswith(DRY_RUN_SUFFIX) else name + DRY_RUN_SUFFIX


class ConfigError(Exception):
    """The configuration is invalid; the message says which setting, what is wrong and what is allowed."""


def _json(expected: str) -> BeforeValidator:
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


_JSON_OBJECT_OF_STRINGS = 'a JSON object of strings, e.g. {"security.protocol": "SASL_SSL"}'
_JSON_ARRAY_OF_STRINGS = 'a JSON array of strings, e.g. ["NO_AVAILABLE_FEATURE", "NO_RELATIVE_IMAGE"]'


def _topic_name(value: str) -> str:
    if not _TOPIC_NAME.match(value) or value in {".", ".."}:
        raise ValueError(f"{value!r} is not a valid Kafka topic name (1-249 characters of A-Z a-z 0-9 . _ -)")
    return value


TopicName = Annotated[str, AfterValidator(_topic_name)]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Section):
    """Where events come from and where outcomes go."""

    bootstrap_servers: str = Field(
        default="localhost:9092", min_length=1, description="Comma-separated host:port list."
    )
    group_id: str = Field(default="imgsweep", min_length=1, description="Consumer group of all replicas.")
    group_instance_id: str | None = Field(
        default=None,
        description=(
            "Static group membership (librdkafka group.instance.id), unique per replica: a replica restarted "
            "with the same id gets its partitions back at once instead of after the session timeout."
        ),
    )
    group_protocol: Literal["classic", "consumer"] = Field(
        default="classic",
        description="Consumer group protocol: classic (cooperative-sticky) or consumer (KIP-848, Kafka 4.0+).",
    )
    input_topic: TopicName = "catalog.product-delisted"
    outcome_topic: TopicName = "catalog.product-image-deletions"
    dlq_topic: TopicName = "catalog.product-delisted.dlq"
    demand_topic: TopicName = Field(
        default="catalog.imgsweep.demand",
        description=(
            "Compacted topic where replicas announce how many calls they could make, to share the account's QPS "
            "by demand (IMGSWEEP_API__QPS_SHARE=demand); missing or unreachable: shared by partitions."
        ),
    )
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    properties: Annotated[dict[str, str], _json(_JSON_OBJECT_OF_STRINGS)] = Field(
        default_factory=dict,
        repr=False,  # may hold TLS/SASL secrets as plain strings
        description=(
            "Extra librdkafka properties for the consumer and the producer, as JSON, e.g. "
            '{"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512"}.'
        ),
    )
    secret_properties: Annotated[dict[str, SecretStr], _json(_JSON_OBJECT_OF_STRINGS)] = Field(
        default_factory=dict,
        description=(
            "librdkafka properties that hold secrets (sasl.password, ssl.key.password, ssl.key.pem...): as JSON, "
            "or one per variable IMGSWEEP_KAFKA__SECRET_PROPERTIES__<property> (environment or secret files)."
        ),
    )
    max_poll_interval_ms: int = Field(default=300_000, ge=10_000)
    session_timeout_ms: int = Field(default=45_000, ge=6_000)
    max_pending_events: int = Field(
        default=10_000,
        ge=1,
        description="Events held in memory before partitions are paused (bounds memory under backlog).",
    )

    @field_validator("bootstrap_servers")
    @classmethod
    def _servers_have_ports(cls, value: str) -> str:
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"{server.strip()!r} is not host:port (e.g. kafka-0.kafka:9092)")
        return value

    @field_validator("group_instance_id")
    @classmethod
    def _sane_instance_id(cls, value: str | None) -> str | None:
        if value is not None and not _GROUP_INSTANCE_ID.match(value):
            raise ValueError(
                f"{value!r} is not a valid group instance id (1-249 characters of A-Z a-z 0-9 . _ -, unique per "
                "replica, e.g. the pod's name; leave it unset for dynamic membership)"
            )
        return value

    @field_validator("properties", "secret_properties")
    @classmethod
    def _no_reserved_properties(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if name in _RESERVED_KAFKA_PROPERTIES:
                raise ValueError(
                    f"librdkafka property {name!r} is managed by imgsweep and cannot be overridden "
                    f"(use {_RESERVED_KAFKA_PROPERTIES[name]})"
                )
        return value

    @model_validator(mode="after")
    def _options_the_protocol_accepts(self) -> KafkaSettings:
        if self.group_protocol == "consumer":
            if "session_timeout_ms" in self.model_fields_set:
                raise ValueError(
                    "IMGSWEEP_KAFKA__SESSION_TIMEOUT_MS has no effect with group_protocol consumer (KIP-848): the "
                    "broker's group.consumer.session.timeout.ms decides it; unset it or use group_protocol classic"
                )
            for name, instead in _CLASSIC_ONLY_KAFKA_PROPERTIES.items():
                if name in self.properties:
                    raise ValueError(
                        f"IMGSWEEP_KAFKA__PROPERTIES: librdkafka property {name!r} is refused with group_protocol "
                        f"consumer (KIP-848): {instead} decides it; remove it or use group_protocol classic"
                    )
        return self

    @model_validator(mode="after")
    def _each_property_set_once(self) -> KafkaSettings:
        both = sorted(set(self.properties) & set(self.secret_properties))
        if both:
            raise ValueError(
                f"librdkafka properties {', '.join(map(repr, both))} are set in both IMGSWEEP_KAFKA__PROPERTIES and "
                "IMGSWEEP_KAFKA__SECRET_PROPERTIES: keep each in one of them (a secret in SECRET_PROPERTIES)"
            )
        return self

    @model_validator(mode="after")
    def _distinct_topics(self) -> KafkaSettings:
        topics = [self.input_topic, self.outcome_topic, self.dlq_topic, self.demand_topic]
        if len(set(topics)) != len(topics):
            raise ValueError(
                "input_topic, outcome_topic and dlq_topic must be three different topics, and demand_topic a "
                f"fourth (got {', '.join(topics)})"
            )
        return self

    def librdkafka_common(self) -> dict[str, Any]:
        """Properties shared by the consumer and the producer (security, extras)."""
        config: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers}
        if self.sasl_username is not None:
            config["sasl.username"] = self.sasl_username
        if self.sasl_password is not None:
            config["sasl.password"] = self.sasl_password.get_secret_value()
        config.update(self.properties)
        config.update((name, value.get_secret_value()) for name, value in self.secret_properties.items())
        return config


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


class ApiSettings(_Section):
    """The JD product image delete API and how politely to call it."""

    endpoint: HttpUrl = Field(default=HttpUrl(DEFAULT_ENDPOINT))
    access_key: SecretStr | None = None
    secret_key: SecretStr | None = None
    region: str = Field(default="cn-north-1", min_length=1, pattern=r"^[a-z0-9-]+$")
    service: str = Field(default="aiapi", min_length=1, pattern=r"^[a-z0-9-]+$")
    qps: float = Field(default=2.0, gt=0, le=1000, description="The account's QPS limit, shared by replicas.")
    qps_share: Literal["demand", "partitions"] = Field(
        default="demand",
        description=(
            "How replicas share the QPS: by the calls each could make now, announced on the demand topic, or "
            "(the old rule) by the fraction of the input topic's partitions each holds."
        ),
    )
    workers: int = Field(default=4, ge=1, le=64, description="Threads making API calls.")
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    read_timeout_seconds: float = Field(default=30.0, gt=0)
    write_timeout_seconds: float = Field(default=10.0, gt=0)
    pool_timeout_seconds: float = Field(default=5.0, gt=0)
    max_attempts: int = Field(default=8, ge=1, le=100, description="Tries of one call before giving up.")
    max_elapsed_seconds: float = Field(default=600.0, gt=0, description="Time budget of one call's retries.")
    backoff_initial_seconds: float = Field(default=0.5, gt=0)
    backoff_max_seconds: float = Field(default=30.0, gt=0)
    absent_reasons: Annotated[frozenset[str], _json(_JSON_ARRAY_OF_STRINGS)] = Field(
        default=frozenset({"NO_AVAILABLE_FEATURE", "NO_RELATIVE_IMAGE"}),
        description="failed_list reasons meaning the image is not in the collection (the goal holds).",
    )
    retryable_item_reasons: Annotated[frozenset[str], _json(_JSON_ARRAY_OF_STRINGS)] = Field(
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
    allowance: Literal["daily", "pack"] = Field(
        default="daily",
        description="The account's calls: a free plan's daily allowance (lost at the reset) or a paid call pack.",
    )
    daily_calls: int = Field(
        default=500,
        ge=-1,
        description="The daily allowance (a pack: calls assumed left until the API first answers with remainTimes). "
        "-1: with a daily allowance, no budget (partial batches go after the linger, as before the budget existed); "
        "with a pack, no limit assumed before that first answer.",
    )

    @field_validator("daily_calls")
    @classmethod
    def _not_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("0 calls a day would never delete anything; use a positive number, or -1 for no limit")
        return value

    reserve_calls: int = Field(default=0, ge=0, description="Calls never spent: left to the shop's own searches.")
    reserve_fraction: float = Field(
        default=0.1,
        ge=0,
        lt=1,
        description="The reserve as a fraction of daily_calls (a pack: of its daily spending limit); the larger wins.",
    )
    price_per_call: float | None = Field(default=None, gt=0, description="A pack's money per call.")
    daily_spend_limit: float | None = Field(
        default=None, gt=0, description="A pack's most money spent in one day (from one reset to the next)."
    )

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


_ACCOUNT_NAME = re.compile(r"(?=.{1,32}\Z)[a-z0-9]+(?:[-_][a-z0-9]+)*\Z")
"""Words of a-z 0-9 joined by single ``-`` or ``_``: ``__`` ends the name in a variable, so it cannot be in one."""
DEFAULT_ACCOUNT = "default"
"""The one account imgsweep has when no ``IMGSWEEP_ACCOUNTS__*`` is set: the ``IMGSWEEP_API__*`` settings."""
EVERY_OTHER_COLLECTION = "*"
"""In an account's collections: every collection no other account names."""
_ACCOUNT_OWN = ("access_key", "secret_key")
"""What a named account never takes from ``IMGSWEEP_API__*``: a key used for the wrong account fails every call."""
_ACCOUNT_INHERITED = (
    "endpoint",
    "region",
    "qps",
    "workers",
    "allowance",
    "daily_calls",
    "reserve_calls",
    "reserve_fraction",
    "price_per_call",
    "daily_spend_limit",
)


class AccountSettings(_Section):
    """One JD account (``IMGSWEEP_ACCOUNTS__<NAME>__*``): its keys, the collections it holds, and what differs
    from ``IMGSWEEP_API__*``; a setting left unset takes the ``IMGSWEEP_API__`` setting of the same name."""

    collections: Annotated[tuple[str, ...], _json('a JSON array of collection names, e.g. ["shoes", "bags"]')] = Field(
        description='The collections whose images this account deletes; "*": every collection no other account names.'
    )
    # Typed here, checked where they are merged with IMGSWEEP_API__* (``_account``): ApiSettings' own rules.
    access_key: SecretStr | None = None
    secret_key: SecretStr | None = None
    endpoint: HttpUrl | None = None
    region: str | None = None
    qps: float | None = None
    workers: int | None = None
    allowance: Literal["daily", "pack"] | None = None
    daily_calls: int | None = None
    reserve_calls: int | None = None
    reserve_fraction: float | None = None
    price_per_call: float | None = None
    daily_spend_limit: float | None = None

    @field_validator("collections")
    @classmethod
    def _collections(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError('is empty: name the collections this account deletes from (or ["*"] for the rest)')
        for name in value:
            if not name.strip():
                raise ValueError("holds an empty collection name")
            if name != name.strip():
                raise ValueError(f"collection {name!r} has spaces around its name")
        if len(set(value)) != len(value):
            raise ValueError("names a collection twice")
        if EVERY_OTHER_COLLECTION in value and len(value) > 1:
            raise ValueError(f'"{EVERY_OTHER_COLLECTION}" (every other collection) stands alone in an account')
        return value


class Account(BaseModel):
    """An account as imgsweep uses it: its name (the metrics' ``account`` label), its collections, and its API
    settings whole (its own keys, endpoint, QPS and allowance; the rest from ``IMGSWEEP_API__*``)."""

    model_config = ConfigDict(frozen=True)

    name: str
    collections: tuple[str, ...]
    api: ApiSettings


class BatchSettings(_Section):
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


class EventSettings(_Section):
    """Which input records are delists, which are relists, and which are none of imgsweep's business.

    Patterns are shell-style (``fnmatch``, case-sensitive) over the CloudEvents ``type``, or over the plain JSON
    member named by ``type_field``. A plain JSON event without that member is a delist (the plain format
    predates types); any other type is skipped: no call, no outcome, counted, committed.
    """

    delist_types: Annotated[tuple[str, ...], _json(_JSON_ARRAY_OF_STRINGS)] = Field(
        default=("*product.delisted", "*product-delisted", "*product_delisted", "*ProductDelisted"),
        description="Event types that delete the product's images.",
    )
    relist_types: Annotated[tuple[str, ...], _json(_JSON_ARRAY_OF_STRINGS)] = Field(
        default=("*product.relisted", "*product-relisted", "*product_relisted", "*ProductRelisted"),
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


class HttpSettings(_Section):
    """The metrics and health endpoint."""

    host: str = "0.0.0.0"  # noqa: S104 - it must be reachable by the kubelet and Prometheus
    port: int = Field(default=8080, ge=1, le=65535)


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "json"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


class TracingSettings(_Section):
    """OpenTelemetry tracing (the ``otel`` extra): a span per API call, linked to the events it carries.

    The exporter is OTLP, configured by the standard ``OTEL_EXPORTER_OTLP_*`` variables (and ``OTEL_SERVICE_NAME``,
    ``OTEL_RESOURCE_ATTRIBUTES``); nothing here repeats them.
    """

    enabled: bool = Field(default=False, description="Export a span per API call by OTLP (needs imgsweep[otel]).")


class Settings(BaseSettings):
    """The root of the configuration; see the README's table for every name."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        secrets_nested_delimiter="__",
        case_sensitive=False,
        extra="forbid",
        frozen=True,
        enable_decoding=False,  # JSON settings are parsed by their fields (_json), so errors name them
    )

    kafka: KafkaSettings = KafkaSettings()
    api: ApiSettings = ApiSettings()
    batch: BatchSettings = BatchSettings()
    http: HttpSettings = HttpSettings()
    log: LogSettings = LogSettings()
    events: EventSettings = EventSettings()
    tracing: TracingSettings = TracingSettings()
    schema_registry: SchemaRegistrySettings = SchemaRegistrySettings()  # IMGSWEEP_SCHEMA_REGISTRY__* (service.registry)
    accounts: dict[str, AccountSettings] = Field(
        default_factory=dict,
        description="Several JD accounts (IMGSWEEP_ACCOUNTS__<NAME>__*); none: one account, IMGSWEEP_API__*.",
    )
    max_event_age_seconds: float | None = Field(
        default=None,
        gt=0,
        description="Delists older than this are skipped with an outcome that says so; off by default.",
    )
    dry_run: bool = Field(default=False, description="Do everything except the HTTP call.")
    shutdown_grace_seconds: float = Field(
        default=25.0, gt=0, le=3600, description="How long SIGTERM waits for in-flight work."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Files named like the variables (IMGSWEEP_API__SECRET_KEY) fill nested sections, as a mounted
        # Kubernetes Secret with those keys would; the environment wins over files.
        return (init_settings, env_settings, NestedSecretsSettingsSource(file_secret_settings))

    @model_validator(mode="after")
    def _dry_run_names(self) -> Settings:
        """In dry-run the consumer group, both output topics and the demand topic get their dry-run form
        (``DRY_RUN_SUFFIX``; a dry run never takes a share of the live replicas' QPS), so a
        dry run never commits in the live group nor publishes where live consumers read: turning it off then
        processes every event from where the live group stands. Names that have the suffix already keep it."""
        if self.dry_run:
            kafka = self.kafka
            renamed = ("group_id", "outcome_topic", "dlq_topic", "demand_topic")
            names = {name: _dry_run_form(getattr(kafka, name)) for name in renamed}
            object.__setattr__(self, "kafka", kafka.model_copy(update=names))  # still frozen to everyone else
        return self

    _api_accounts: tuple[Account, ...] = PrivateAttr(default=())

    @model_validator(mode="after")
    def _accounts(self) -> Settings:
        """Each named account's API settings, whole and valid; every collection named by one account at most."""
        owner: dict[str, str] = {}
        for name, account in sorted(self.accounts.items()):
            _check_account_name(name)
            for collection in account.collections:
                if collection in owner:
                    what = "every other collection" if collection == EVERY_OTHER_COLLECTION else collection
                    raise ValueError(
                        f"{what!r} is in the collections of both account {owner[collection]!r} and account {name!r}: "
                        "a collection belongs to one account"
                    )
                owner[collection] = name
        unused = [f"{ENV_PREFIX}API__{key.upper()}" for key in _ACCOUNT_OWN if getattr(self.api, key) is not None]
        if self.accounts and unused:
            raise ValueError(
                f"{' and '.join(unused)} would be used by no account: with {ENV_PREFIX}ACCOUNTS__<NAME>__* each "
                f"account has its own keys ({ENV_PREFIX}ACCOUNTS__<NAME>__ACCESS_KEY, __SECRET_KEY); remove them"
            )
        accounts = [_account(name, account, self.api) for name, account in sorted(self.accounts.items())]
        self._api_accounts = tuple(accounts) or (
            Account(name=DEFAULT_ACCOUNT, collections=(EVERY_OTHER_COLLECTION,), api=self.api),
        )
        return self

    def api_accounts(self) -> tuple[Account, ...]:
        """The accounts imgsweep calls the API with: the named ones, or the one ``default`` account."""
        return self._api_accounts

    def require_credentials(self) -> None:
        """Calling the API needs both keys of every account; dry-run does not."""
        if self.dry_run:
            return
        missing = [
            f"{ENV_PREFIX}API__{name.upper()}" if account.name == DEFAULT_ACCOUNT and not self.accounts
            else f"{ENV_PREFIX}ACCOUNTS__{account.name.upper()}__{name.upper()}"
            for account in self.api_accounts()
            for name in _ACCOUNT_OWN
            if getattr(account.api, name) is None or not getattr(account.api, name).get_secret_value()
        ]  # fmt: skip
        if missing:
            raise ConfigError(
                f"{' and '.join(missing)} must be set (environment, or a file of that name in the "
                f"secrets directory ${SECRETS_DIR_ENV}, default {DEFAULT_SECRETS_DIR}); "
                f"or set {ENV_PREFIX}DRY_RUN=true to run without calling the API"
            )


def _check_account_name(name: str) -> None:
    if not _ACCOUNT_NAME.fullmatch(name):
        raise ValueError(
            f"account name {name!r} (in {ENV_PREFIX}ACCOUNTS__{name.upper()}__*) is not 1-32 characters of words of "
            "a-z 0-9 joined by single - or _ (it becomes the metrics' account label; __ would end it)"
        )


def _account(name: str, account: AccountSettings, api: ApiSettings) -> Account:
    """A named account's whole API settings: its own keys, what it sets, the rest from ``IMGSWEEP_API__*``."""
    prefix = f"{ENV_PREFIX}ACCOUNTS__{name.upper()}__"
    overrides = {
        field: value for field in (*_ACCOUNT_OWN, *_ACCOUNT_INHERITED) if (value := getattr(account, field)) is not None
    }
    data = {**api.model_dump(exclude=set(_ACCOUNT_OWN)), **overrides, "quota_reset_zone": api.quota_reset_zone}
    try:
        merged = ApiSettings.model_validate(data)
    except ValidationError as error:
        problems = [
            (f"{prefix}{str(problem['loc'][0]).upper()}: " if problem["loc"] else "")
            + problem["msg"].removeprefix("Value error, ").replace(f"{ENV_PREFIX}API__", prefix)
            for problem in error.errors()
        ]
        raise ValueError(f"account {name!r}: {'; '.join(problems)}") from None
    return Account(name=name, collections=account.collections, api=merged)


def _env_name(loc: tuple[int | str, ...]) -> str:
    parts = [str(part) for part in loc if not isinstance(part, int)]
    # Validators of a whole section report the section; keys of a dict are not settings of their own, except
    # an account's name (IMGSWEEP_ACCOUNTS__<NAME>__<SETTING>).
    return ENV_PREFIX + "__".join(part.upper() for part in parts[: 3 if parts[0] == "accounts" else 2])


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        message = item["msg"].removeprefix("Value error, ")
        if not item["loc"]:  # a rule across sections: the message names its settings
            lines.append(f"  {message}")
            continue
        name = _env_name(item["loc"])
        if item["type"] == "extra_forbidden":
            message = "is not a known setting (check the spelling against the README's configuration table)"
        elif item["type"] == "model_type":  # e.g. IMGSWEEP_KAFKA='{...}': a section is set one setting at a time
            message = f"is a section, not a setting: set its settings one by one as {name}__<NAME> (README)"
        elif item["loc"] == ("accounts",):  # IMGSWEEP_ACCOUNTS='{...}': accounts are set one setting at a time
            message = f"is not a setting: set each account's settings one by one as {name}__<NAME>__<SETTING> (README)"
        elif len(item["loc"]) > 2 and item["loc"][0] != "accounts" and isinstance(item["loc"][2], str):  # JSON key
            message = f"key {item['loc'][2]!r}: {message}"
        elif item["type"] in {"dict_type", "frozen_set_type"}:  # JSON, but not the shape the setting takes
            expected = _JSON_OBJECT_OF_STRINGS if item["type"] == "dict_type" else _JSON_ARRAY_OF_STRINGS
            message = f"{message}; expected {expected}"
        hidden = _is_secret_name(name) or name in _NEVER_SHOWN or item["type"] in {"extra_forbidden", "model_type"}
        shown = "" if hidden else _short(item.get("input"))
        lines.append(f"  {name}: {message}{shown}")
    return "invalid configuration:\n" + "\n".join(lines)


def _short(value: object) -> str:
    if isinstance(value, dict | list) or value is None:
        return ""
    text = repr(value)
    return f" (got {text[:80]})"


def _is_secret_name(name: str) -> bool:
    return bool(_SECRET_PROPERTY.search(name))


def secrets_dir_from_env() -> Path | None:
    configured = os.environ.get(SECRETS_DIR_ENV)
    path = Path(configured) if configured else DEFAULT_SECRETS_DIR
    if not path.is_dir():
        if configured:
            raise ConfigError(f"{SECRETS_DIR_ENV}={configured} is not a directory")
        return None
    try:
        next(path.iterdir(), None)
    except OSError as error:  # e.g. a Secret mounted with a mode or fsGroup this user cannot read
        raise ConfigError(f"{SECRETS_DIR_ENV}={path} cannot be read: {error.strerror}") from None
    return path


def _unknown_variables() -> list[str]:
    # pydantic-settings silently ignores an unknown top-level variable; a typo must not pass unnoticed.
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields} | {SECRETS_DIR_ENV}
    return sorted(
        name for name in os.environ if name.upper().startswith(ENV_PREFIX) and name.upper().split("__")[0] not in known
    )


def load_settings(**overrides: Any) -> Settings:
    """Reads the environment and the secrets directory; raises ConfigError with a readable message."""
    unknown = _unknown_variables()
    if unknown:
        raise ConfigError(
            "invalid configuration:\n"
            + "\n".join(
                f"  {name}: is not a known setting (check the spelling against the README's configuration table)"
                for name in unknown
            )
        )
    secrets_dir = secrets_dir_from_env()
    try:
        return Settings(_secrets_dir=secrets_dir, **overrides)  # type: ignore[call-arg]  # pydantic-settings init kwarg
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None
    except SettingsError as error:  # e.g. an unreadable or oversized secrets directory
        cause = f" ({error.__cause__})" if error.__cause__ else ""
        where = f"{SECRETS_DIR_ENV}={secrets_dir}" if secrets_dir is not None else "the environment"
        raise ConfigError(f"{where}: {error}{cause}") from None


def masked_config(settings: Settings) -> dict[str, Any]:
    """The effective configuration as plain data, secrets masked, safe to print or log.

    pydantic already renders every ``SecretStr`` as a mask in JSON mode; librdkafka properties are plain
    strings, so any whose name looks secret (password, secret, token, key) is masked here too.
    """
    data = settings.model_dump(mode="json")
    if settings.accounts:  # what each named account ends up with, its own settings and IMGSWEEP_API__*'s
        data["accounts_in_effect"] = {
            account.name: {
                "collections": list(account.collections),
                **account.api.model_dump(mode="json", include={*_ACCOUNT_OWN, *_ACCOUNT_INHERITED}),
            }
            for account in settings.api_accounts()
        }
    properties: dict[str, str] = data["kafka"]["properties"]
    for name in properties:
        if _is_secret_name(name):
            properties[name] = "**********"
    return data
