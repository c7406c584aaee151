"""Which settings and librdkafka properties hold secrets: never echoed in an error, masked when shown."""

from __future__ import annotations

import re

__all__ = ["MASK", "NEVER_SHOWN", "is_secret_name"]

MASK = "**********"
"""What a secret is shown as (pydantic's own mask of a ``SecretStr``)."""
NEVER_SHOWN = frozenset({"IMGSWEEP_KAFKA__PROPERTIES", "IMGSWEEP_ACCOUNTS", "IMGSWEEP_SCHEMA_REGISTRY__URL"})
"""Settings whose raw value is never echoed in an error: they may carry TLS/SASL secrets or credentials as plain
strings."""
_SECRET_NAME = re.compile(r"(password|secret|token|key)", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    """Whether a setting's or a librdkafka property's name says it holds a secret."""
    return bool(_SECRET_NAME.search(name))
