"""How imgsweep is watched: the metrics and health endpoint, logs, traces."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from service.settings.fields import Section

__all__ = ["HttpSettings", "LogSettings", "TracingSettings"]


class HttpSettings(Section):
    """The metrics and health endpoint."""

    host: str = "0.0.0.0"  # noqa: S104 - it must be reachable by the kubelet and Prometheus
    port: int = Field(default=8080, ge=1, le=65535)


class LogSettings(Section):
    """The log's level (in any case) and format: one JSON object a line, or text for a person."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "json"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


class TracingSettings(Section):
    """OpenTelemetry tracing (the ``otel`` extra): a span per API call, linked to the events it carries.

    The exporter is OTLP, configured by the standard ``OTEL_EXPORTER_OTLP_*`` variables (and ``OTEL_SERVICE_NAME``,
    ``OTEL_RESOURCE_ATTRIBUTES``); nothing here repeats them.
    """

    enabled: bool = Field(default=False, description="Export a span per API call by OTLP (needs imgsweep[otel]).")
