"""``IMGSWEEP_SCHEMA_REGISTRY__*``: where the schemas of registry-framed records are fetched, and how patiently.

Off (records are read as before) while ``URL`` is unset. Credentials are ``SecretStr``: from the environment or
from files named like the variables in the secrets directory (``IMGSWEEP_SCHEMA_REGISTRY__PASSWORD``), never in
the URL, which is logged with the rest of the configuration.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

__all__ = ["SchemaRegistrySettings"]


class SchemaRegistrySettings(BaseModel):
    """A Confluent-compatible Schema Registry (Confluent, Apicurio's /apis/ccompat/v7, Karapace, Redpanda)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str | None = Field(
        default=None,
        description=(
            "Base URL of the registry's Confluent API (several: comma-separated, tried in turn); unset: records "
            "in the registry wire format are not decoded (read as JSON, like every other record)."
        ),
    )
    username: SecretStr | None = Field(default=None, description="Basic-auth user (with PASSWORD).")
    password: SecretStr | None = Field(default=None, description="Basic-auth password (with USERNAME).")
    timeout_seconds: float = Field(default=5.0, gt=0, le=120, description="One request to the registry.")
    max_attempts: int = Field(
        default=3, ge=1, le=20, description="Fetches of a schema before its records are dead-lettered."
    )
    backoff_initial_seconds: float = Field(default=0.5, ge=0, le=60, description="Wait after the first failure.")
    backoff_max_seconds: float = Field(default=4.0, ge=0, le=300, description="Cap of the doubling wait.")
    unavailable_seconds: float = Field(
        default=10.0,
        ge=0,
        le=3600,
        description=(
            "After a schema id could not be fetched, its records are dead-lettered (schema_unavailable) without "
            "asking again for this long; 0: every record retries."
        ),
    )

    @field_validator("url", mode="before")
    @classmethod
    def _empty_is_off(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("url")
    @classmethod
    def _http_urls_without_credentials(cls, value: str | None) -> str | None:
        if value is None:
            return None
        urls = [part.strip() for part in value.split(",")]
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme not in {"http", "https"} or not parts.hostname:
                raise ValueError("expected http(s)://host[:port][/path], comma-separated for several")
            if parts.username is not None or parts.password is not None:
                raise ValueError(
                    "credentials do not belong in the URL (it is logged): set IMGSWEEP_SCHEMA_REGISTRY__USERNAME "
                    "and __PASSWORD"
                )
        return ",".join(url.rstrip("/") for url in urls)

    @model_validator(mode="after")
    def _both_credentials_or_none(self) -> SchemaRegistrySettings:
        if (self.username is None) != (self.password is None):
            raise ValueError(
                "IMGSWEEP_SCHEMA_REGISTRY__USERNAME and IMGSWEEP_SCHEMA_REGISTRY__PASSWORD are set together "
                "or not at all"
            )
        if self.backoff_max_seconds < self.backoff_initial_seconds:
            raise ValueError(
                "IMGSWEEP_SCHEMA_REGISTRY__BACKOFF_MAX_SECONDS is below "
                "IMGSWEEP_SCHEMA_REGISTRY__BACKOFF_INITIAL_SECONDS"
            )
        return self

    @property
    def enabled(self) -> bool:
        return self.url is not None

    def client_config(self) -> dict[str, object]:
        """``SchemaRegistryClient``'s configuration; its own retries are off (``decoder`` retries, bounded)."""
        if self.url is None:
            raise ValueError("the schema registry is off (IMGSWEEP_SCHEMA_REGISTRY__URL is unset)")
        config: dict[str, object] = {"url": self.url, "timeout": self.timeout_seconds, "max.retries": 0}
        if self.username is not None and self.password is not None:
            config["basic.auth.user.info"] = f"{self.username.get_secret_value()}:{self.password.get_secret_value()}"
        return config
