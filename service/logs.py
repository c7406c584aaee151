"""Structured logs: one JSON object a line, with the ids that tie a line to an event, a batch or a collection.

Callers pass context through ``extra={...}``; only the keys in ``CONTEXT_KEYS`` are emitted, so an object
holding a secret can never reach a log line by accident. Code that runs for one batch (an API call on its worker
thread) sets the batch's ids once with ``log_context``, and every line logged inside carries them, the client's
too; the HTTP client adds JD's request id of the latest answer (``add_log_context``).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Final

__all__ = ["CONTEXT_KEYS", "JsonFormatter", "add_log_context", "configure_logging", "log_context"]

CONTEXT_KEYS: Final = (
    "event_id",
    "batch_id",
    "account",
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
    "request_id",
    "trace_id",
    "event_ids",
)

_CONTEXT: ContextVar[Mapping[str, object]] = ContextVar("imgsweep_log_context", default=MappingProxyType({}))


@contextmanager
def log_context(**ids: object) -> Iterator[None]:
    """Every line logged inside (in this thread) carries ``ids`` unless it names the key itself."""
    token = _CONTEXT.set({**_CONTEXT.get(), **ids})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def add_log_context(**ids: object) -> None:
    """Adds ``ids`` to the enclosing ``log_context`` until it ends (e.g. the request id of the latest answer)."""
    _CONTEXT.set({**_CONTEXT.get(), **ids})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        context = _CONTEXT.get()
        for key in CONTEXT_KEYS:
            value = record.__dict__.get(key)
            if value is None:
                value = context.get(key)
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
