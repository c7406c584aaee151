"""The W3C trace context an input record carries, and the headers that carry it on. Pure: no I/O, no logging.

Where an event's trace context is read, first found wins:

1. the record's ``traceparent`` (and ``tracestate``) Kafka header: the context as the last hop sent it, which
   OpenTelemetry's Kafka instrumentations write and read;
2. the CloudEvents Distributed Tracing extension: ``ce_traceparent``/``ce_tracestate`` headers in binary mode,
   ``traceparent``/``tracestate`` members of the envelope in structured mode (the decoder hands these over).

An invalid ``traceparent`` is ignored, as W3C Trace Context says, and its ``tracestate`` with it; the next place
is tried. A context never makes an event invalid. What is carried on is a ``traceparent`` header (and a
``tracestate`` header when there is one) on the outcome and on a dead-letter copy that has none yet: the
transport's own headers, which the consumers of those topics and their tracing read without knowing
CloudEvents (the extension "is not intended to replace the protocol specific headers").
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Final

from service.vocabulary import TRACEPARENT, TRACESTATE, TraceContext

Headers = Sequence[tuple[str, bytes | None]]

__all__ = ["record_trace_context", "trace_context"]

_CE_TRACEPARENT: Final = "ce_traceparent"
_CE_TRACESTATE: Final = "ce_tracestate"

_TRACEPARENT_00: Final = re.compile(r"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")
_TRACEPARENT_LATER: Final = re.compile(
    r"(?!ff|00)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}(-.*)?"
)
"""A version above 00: its first four fields read as 00's, anything after a further ``-`` is left alone."""
MAX_TRACESTATE_CHARS: Final = 512
"""W3C: vendors should carry at least 512 characters; longer lists lose their last members."""
MAX_TRACESTATE_MEMBERS: Final = 32
_TRACESTATE_CHARS: Final = re.compile(r"[\x20-\x7e]*")
MAX_STRUCTURED_SCAN_BYTES: Final = 1 << 20
"""An invalid record's value is parsed for a structured-mode extension only up to this size."""


def trace_context(
    headers: Headers, extension: str | None = None, extension_state: str | None = None
) -> TraceContext | None:
    """An event's context: its ``traceparent`` header, else its CloudEvents extension (``extension``).

    ``extension``/``extension_state`` are the decoded event's ``traceparent``/``tracestate`` (binary mode's
    ``ce_`` headers or structured mode's members); the headers are scanned once.
    """
    parent = state = None
    for name, value in headers:
        if value is None:
            continue
        lowered = name.lower()
        if lowered == TRACEPARENT and parent is None:
            parent = value
        elif lowered == TRACESTATE and state is None:
            state = value
    if parent is not None:
        found = _context(_text(parent), _text(state))
        if found is not None:
            return found
    return _context(extension, extension_state) if extension is not None else None


def record_trace_context(headers: Headers, value: bytes | None) -> TraceContext | None:
    """The context of a record that is not a valid event (a dead letter): headers first (the transport's, then
    binary mode's ``ce_`` ones), then a structured-mode envelope's members if the value is such a JSON object."""
    found = trace_context(headers, _header(headers, _CE_TRACEPARENT), _header(headers, _CE_TRACESTATE))
    if found is not None or not value or len(value) > MAX_STRUCTURED_SCAN_BYTES or b'"traceparent"' not in value:
        return found
    try:
        document = json.loads(value)
    except (ValueError, RecursionError):  # not JSON, or invalid UTF-8: no envelope to read
        return None
    if not isinstance(document, dict) or not isinstance(parent := document.get(TRACEPARENT), str):
        return None
    state = document.get(TRACESTATE)
    return _context(parent, state if isinstance(state, str) else None)


def _context(parent: str | None, state: str | None) -> TraceContext | None:
    if parent is None:
        return None
    parent = parent.strip(" \t")
    if len(parent) == 55:
        if _TRACEPARENT_00.fullmatch(parent) is None:
            return None
    elif len(parent) < 55 or _TRACEPARENT_LATER.fullmatch(parent) is None:
        return None
    return TraceContext(parent, _tracestate(state))


def _tracestate(state: str | None) -> str | None:
    """The list as sent, when it is printable ASCII; members beyond the limits dropped from the end."""
    if state is None or _TRACESTATE_CHARS.fullmatch(state) is None:
        return None
    members = [member.strip(" \t") for member in state.split(",")]
    members = [member for member in members if "=" in member][:MAX_TRACESTATE_MEMBERS]
    while members and len(",".join(members)) > MAX_TRACESTATE_CHARS:
        members.pop()
    return ",".join(members) or None


def _header(headers: Headers, wanted: str) -> str | None:
    for name, value in headers:
        if value is not None and name.lower() == wanted:
            return _text(value)
    return None


def _text(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        return None
