"""Structured logs: one JSON object a line, with the ids that tie a line to an event, a batch or a collection.

Callers pass context through ``extra={...}``; only the keys in ``CONTEXT_KEYS`` are emitted, so an object
holding a secret can never reach a log line by accident.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Final

__all__ = ["CONTEXT_KEYS", "JsonFormatter", "configure_logging"]

CONTEXT_KEYS: Final = (
    "event_id",
    "batch_id",
    "collection",
    "product_id",
    "topic",
    "partition",
    "offset",
    "code",
    "reason",
    "attempt",
    "items",
    "wait_seconds",
    "flush_reason",
    "state",
    "error_class",
    "excerpt",
    "status",
    "count",
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in CONTEXT_KEYS:
            value = record.__dict__.get(key)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request line at INFO; the service logs what matters about calls itself.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
