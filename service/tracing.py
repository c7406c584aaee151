"""Optional OpenTelemetry tracing: one span per API call, linked to the trace contexts of the events it carries.

Off by default (``IMGSWEEP_TRACING__ENABLED``), and the service runs without the ``otel`` extra installed: the
SDK is imported only when tracing is turned on, and turning it on without the extra is a configuration error.
Disabled, the pipeline pays nothing per event beyond reading the ``traceparent`` it carries on anyway
(``service.pipeline.trace_context``): the call step asks ``Tracing.enabled`` before gathering links.

Why links and not a parent: a call carries up to 200 images of many events, each with its own trace, so no
single event is the call's parent. OpenTelemetry's messaging conventions link a batch's processing span to each
message's context, which is what this does (CloudEvents spans are linked the same way). The span covers the
whole call, retries and waits included; each HTTP answer is an event on it with its status and JD's request id.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, Final, Protocol

import httpx

from service.api.models import BatchResult, DeleteBatch
from service.logs import add_log_context
from service.settings import ConfigError, TracingSettings
from service.vocabulary import TraceContext

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

__all__ = [
    "NO_TRACING",
    "REQUEST_ID_HEADER",
    "CallSpan",
    "OtelTracing",
    "Tracing",
    "check_tracing",
    "response_hook",
    "start_tracing",
]

REQUEST_ID_HEADER: Final = "x-jdcloud-request-id"
"""Where JD Cloud's API gateway names a request. The delete API's own documentation names no request id, so an
answer without this header leaves the field out."""
MAX_REQUEST_ID_CHARS: Final = 128

TRACER_NAME: Final = "imgsweep"
SPAN_NAME: Final = "jd delete images"
OTEL_MISSING: Final = (
    "IMGSWEEP_TRACING__ENABLED=true needs the OpenTelemetry packages: install imgsweep[otel] "
    "(opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http)"
)


class CallSpan(Protocol):
    def finished(self, result: BatchResult) -> None: ...


class Tracing(Protocol):
    @property
    def enabled(self) -> bool: ...
    def call(self, batch: DeleteBatch, contexts: Iterable[TraceContext]) -> AbstractContextManager[CallSpan]: ...
    def response(self, status: int, request_id: str | None) -> None: ...
    def shutdown(self) -> None: ...


class _NoSpan:
    def finished(self, result: BatchResult) -> None:
        pass


class _NoTracing:
    """Tracing off: every method is a no-op."""

    enabled = False

    def call(self, batch: DeleteBatch, contexts: Iterable[TraceContext]) -> AbstractContextManager[CallSpan]:
        return nullcontext(_NO_SPAN)

    def response(self, status: int, request_id: str | None) -> None:
        pass

    def shutdown(self) -> None:
        pass


_NO_SPAN: Final = _NoSpan()
NO_TRACING: Final[Tracing] = _NoTracing()


class _Span:
    def __init__(self, span: Any) -> None:
        self._span = span

    def finished(self, result: BatchResult) -> None:
        self._span.set_attributes(
            {
                "imgsweep.api_calls": result.api_calls,
                "imgsweep.attempts": result.attempts,
                "imgsweep.codes": list(result.codes),
            }
        )


class OtelTracing:
    """Spans from an OpenTelemetry ``TracerProvider`` (the SDK's; tests give one with an in-memory exporter)."""

    enabled = True

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry import trace  # noqa: PLC0415 - the extra is imported only when tracing is on

        self._trace = trace
        self._provider = provider
        self._tracer = provider.get_tracer(TRACER_NAME)

    @contextmanager
    def call(self, batch: DeleteBatch, contexts: Iterable[TraceContext]) -> Iterator[CallSpan]:
        from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState  # noqa: PLC0415

        links: dict[str, Link] = {}
        for context in contexts:
            if context.traceparent in links:
                continue
            state = TraceState.from_header([context.tracestate]) if context.tracestate else None
            span_context = SpanContext(
                context.trace_id,
                context.span_id,
                is_remote=True,
                trace_flags=TraceFlags(context.flags & 1),
                trace_state=state,
            )
            links[context.traceparent] = Link(span_context)
        attributes: dict[str, str | int] = {
            "imgsweep.batch_id": batch.batch_id,
            "imgsweep.collection": batch.collection,
            "imgsweep.items": len(batch.items),
            "imgsweep.linked_events": len(links),
        }
        # A root span: the call belongs to no single event's trace (see the module's docstring).
        with self._tracer.start_as_current_span(
            SPAN_NAME,
            context=self._trace.set_span_in_context(self._trace.INVALID_SPAN),
            kind=SpanKind.CLIENT,
            links=list(links.values()),
            attributes=attributes,
            record_exception=True,
            set_status_on_exception=True,
        ) as span:
            yield _Span(span)
            span.set_status(Status(StatusCode.OK))

    def response(self, status: int, request_id: str | None) -> None:
        """An HTTP answer of the current call (from the HTTP client's response hook, on the call's thread)."""
        span = self._trace.get_current_span()
        if span.is_recording():
            attributes: dict[str, str | int] = {"http.response.status_code": status}
            if request_id is not None:
                attributes["jd.request_id"] = request_id
            span.add_event("response", attributes)

    def shutdown(self) -> None:
        """Exports what is buffered (bounded by the SDK's own timeouts)."""
        self._provider.shutdown()


_OTEL_MODULES: Final = ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http.trace_exporter")


def check_tracing(settings: TracingSettings) -> None:
    """ConfigError (the run's exit 2) when tracing is enabled without the ``otel`` extra; imports nothing."""
    if not settings.enabled:
        return
    try:
        missing = any(importlib.util.find_spec(name) is None for name in _OTEL_MODULES)
    except ImportError:  # a parent package is missing (or broken)
        missing = True
    if missing:
        raise ConfigError(OTEL_MISSING)


def start_tracing(settings: TracingSettings, exporter: SpanExporter | None = None) -> Tracing:
    """``NO_TRACING`` unless enabled; then a provider exporting by OTLP (or to ``exporter``) in batches.

    Raises ConfigError when tracing is enabled but the ``otel`` extra is not installed.
    """
    if not settings.enabled:
        return NO_TRACING
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource  # noqa: PLC0415
        from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
        from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415

        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: PLC0415

            exporter = OTLPSpanExporter()  # OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, _HEADERS, _TIMEOUT...
    except ImportError as error:
        raise ConfigError(OTEL_MISSING) from error
    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win; without them the service is "imgsweep".
    named = "OTEL_SERVICE_NAME" in os.environ or "service.name=" in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    resource = Resource.create({} if named else {SERVICE_NAME: TRACER_NAME})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return OtelTracing(provider)


def response_hook(tracing: Tracing) -> Callable[[httpx.Response], None]:
    """An httpx ``response`` hook: JD's request id of each answer joins the call's log lines and its span.

    It runs on the call's worker thread, inside the call step's ``log_context``, as soon as the headers are in.
    """

    def on_response(response: httpx.Response) -> None:
        request_id = response.headers.get(REQUEST_ID_HEADER)
        if request_id is not None:
            request_id = request_id[:MAX_REQUEST_ID_CHARS]
            add_log_context(request_id=request_id)
        tracing.response(response.status_code, request_id)

    return on_response
