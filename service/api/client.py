"""The batch-delete call: build the body, sign it, send it, classify the answer, retry what is worth it.

Blocking by design: it runs on worker threads, never on the poll loop. A sync ``httpx.Client`` pools
connections for all workers (httpx's AsyncClient is measurably slower under concurrency, httpx #3215).
Every attempt waits for the quota gate, is signed afresh (new date and nonce), then waits for the rate limiter
and leaves at once; the limiter learns from httpcore's trace when the request has actually left.

The retry budget (``RetryPolicy.max_elapsed_seconds``) counts only the time spent trying: attempts and the
backoffs between them. Waiting for the quota gate (hours, until the reset) or for the rate limiter (our own
queue of calls, longer after a 10043 cut the pace) says nothing about whether the API is failing, so neither
counts: after a night-long quota wait the first 503 is retried like any other.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import httpx

from service.api.classify import ResponsePolicy, classify_response, excerpt
from service.api.errors import (
    ApiError,
    BatchRejected,
    CallAbandoned,
    PaymentRequired,
    QuotaExhausted,
    RateLimited,
    RetriesExhausted,
    TransientApiError,
)
from service.api.models import BatchResult, DeleteBatch, ItemResult, ItemStatus, QuotaFacts
from service.api.quota import QuotaGate
from service.api.rate_limit import RateLimiter, SendSlot
from service.api.retry import RetryPolicy
from service.api.signing import Credentials, sign_request
from service.settings import API_MAX_BODY_BYTES

__all__ = ["CallObserver", "DeleteClient", "encode_body", "new_http_client"]

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 2 * API_MAX_BODY_BYTES
"""An answer lists every item it was sent, so it can be as large as the request (up to 5 MB, ids echoed back);
twice that is not an answer worth reading."""

RESIGN_AFTER_SECONDS = 60.0
"""A request signed before a long wait for the rate limiter is signed again: the API refuses a timestamp more
than 5 minutes off (10045), and a fresh one keeps the skew we do have small."""


class CallObserver(Protocol):
    """Where the client reports what it did (metrics); every method must be cheap and never raise."""

    def call_finished(self, code: str, seconds: float, items: int) -> None: ...
    def retry_scheduled(self, code: str, delay: float) -> None: ...
    def rate_limiter_waited(self, seconds: float) -> None: ...


class _NoObserver:
    def call_finished(self, code: str, seconds: float, items: int) -> None:
        pass

    def retry_scheduled(self, code: str, delay: float) -> None:
        pass

    def rate_limiter_waited(self, seconds: float) -> None:
        pass


def encode_body(batch: DeleteBatch) -> bytes:
    """The exact bytes sent (and signed): compact JSON, UTF-8, non-ASCII ids kept as they are."""
    document = {
        "collection_name": batch.collection,
        "image_id_list": [{"product_id": item.product_id, "image_id": item.image_id} for item in batch.items],
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def new_http_client(*, connect: float, read: float, write: float, pool: float, connections: int) -> httpx.Client:
    return httpx.Client(
        timeout=httpx.Timeout(connect=connect, read=read, write=write, pool=pool),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        follow_redirects=False,
        trust_env=False,
    )


@dataclass
class _Tally:
    calls: int = 0
    attempts: int = 0
    codes: list[str] = field(default_factory=list)
    quota: QuotaFacts = field(default_factory=QuotaFacts)


class DeleteClient:
    def __init__(
        self,
        *,
        http: httpx.Client,
        endpoint: str,
        credentials: Credentials,
        region: str,
        service: str,
        policy: ResponsePolicy,
        retry: RetryPolicy,
        limiter: RateLimiter,
        quota: QuotaGate,
        stop: threading.Event,
        observer: CallObserver | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        nonce: Callable[[], str] = lambda: str(uuid.uuid4()),
        rng: random.Random | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._url = str(httpx.URL(endpoint))
        self._credentials = credentials
        self._region = region
        self._service = service
        self._policy = policy
        self._retry = retry
        self._limiter = limiter
        self._quota = quota
        self._stop = stop
        self._observer = observer or _NoObserver()
        self._now = now
        self._nonce = nonce
        self._rng = rng or random.Random()
        self._monotonic = monotonic

    def delete(self, batch: DeleteBatch) -> BatchResult:
        """Every item of the batch deleted, absent or failed (with a reason). Blocks: waits, sends, retries.

        Raises FatalApiError (stop calling: keys, signature, permissions), RetriesExhausted (transient
        failures outlasted the budget) and CallAbandoned (shutdown). A batch the API rejects as a whole is
        split in halves until the offending item stands alone, so one bad id fails one image, not 200.
        """
        tally = _Tally()
        items = self._delete(batch, tally)
        return BatchResult(
            items=items,
            quota=tally.quota,
            api_calls=tally.calls,
            attempts=tally.attempts,
            codes=tuple(tally.codes),
        )

    def _delete(self, batch: DeleteBatch, tally: _Tally) -> tuple[ItemResult, ...]:
        try:
            return self._call_with_retries(batch, tally).items
        except BatchRejected as rejected:
            if len(batch.items) == 1:
                reason = rejected.message or rejected.code
                return (ItemResult(batch.items[0], ItemStatus.FAILED, reason),)
            log.warning(
                "batch rejected as a whole, splitting it to isolate the offending item",
                extra={"batch_id": batch.batch_id, "code": rejected.code, "items": len(batch.items)},
            )
            first, second = batch.split()
            return self._delete(first, tally) + self._delete(second, tally)

    def _call_with_retries(self, batch: DeleteBatch, tally: _Tally) -> BatchResult:
        started = self._monotonic()
        held = 0.0  # seconds spent waiting for the quota gate and the rate limiter: outside the retry budget
        body = encode_body(batch)  # the same bytes on every attempt; only the signature is new each time
        attempt = 0
        while True:
            mark = self._monotonic()
            self._quota.wait(self._stop)
            held += self._monotonic() - mark
            headers = self._sign(body)  # before the rate limiter: once a slot is ours, the call leaves at once
            mark = self._monotonic()
            slot = self._limiter.acquire(self._stop)
            held += self._monotonic() - mark
            if slot.waited > 0:
                self._observer.rate_limiter_waited(slot.waited)
            attempt += 1
            tally.attempts += 1
            try:
                result = self._call_once(batch, body, headers, slot, tally)
            except PaymentRequired as error:
                log.warning(
                    "the account's paid call pack is spent (payment required); holding calls, probing rarely",
                    extra={"code": error.code},
                )
                self._quota.payment_required()
                attempt -= 1  # waiting for a top-up is not a failed attempt
                continue
            except QuotaExhausted as error:
                log.warning("daily call quota exhausted; holding calls until the reset", extra={"code": error.code})
                self._quota.exhausted()
                attempt -= 1  # waiting for the reset is not a failed attempt
                continue
            except TransientApiError as error:
                if isinstance(error, RateLimited):
                    self._limiter.on_throttled()
                delay = self._retry.delay(attempt, self._rng, error.retry_after)
                if not self._retry.allows(attempt, self._monotonic() - started - held, delay):
                    raise RetriesExhausted(error, attempt) from error
                self._observer.retry_scheduled(error.code, delay)
                log.info(
                    "call failed, retrying",
                    extra={"batch_id": batch.batch_id, "code": error.code, "attempt": attempt, "wait_seconds": delay},
                )
                if self._stop.wait(delay):
                    raise CallAbandoned("shutdown while backing off") from error
                continue
            self._limiter.on_success()
            self._quota.observe(result.quota)
            tally.quota = result.quota
            return result

    def _sign(self, body: bytes) -> dict[str, str]:
        return sign_request(
            method="POST",
            url=self._url,
            headers={"Content-Type": "application/json"},
            body=body,
            credentials=self._credentials,
            region=self._region,
            service=self._service,
            now=self._now(),
            nonce=self._nonce(),
        )

    def _call_once(
        self, batch: DeleteBatch, body: bytes, headers: dict[str, str], slot: SendSlot, tally: _Tally
    ) -> BatchResult:
        """One attempt; the slot is released whatever happens, so no other call waits on it."""
        started = time.perf_counter()
        code = "error"
        tally.calls += 1
        try:
            if slot.waited > RESIGN_AFTER_SECONDS:
                headers = self._sign(body)
            status, response_headers, response_body = self._send(body, headers, slot)
            result = classify_response(
                status=status,
                headers=response_headers,
                body=response_body,
                batch=batch,
                policy=self._policy,
                now=self._now(),
            )
            code = result.codes[0] if result.codes else "10000"
        except ApiError as error:
            code = error.code
            if error.code.startswith(("http_", "bad_body")) and error.code not in ("http_503", "http_502"):
                log.warning(
                    "unexpected response from the API",
                    extra={"batch_id": batch.batch_id, "code": error.code, "excerpt": error.message[:400]},
                )
            raise
        finally:
            slot.release()
            tally.codes.append(code)
            self._observer.call_finished(code, time.perf_counter() - started, len(batch.items))
        return result

    def _send(self, body: bytes, headers: dict[str, str], slot: SendSlot) -> tuple[int, dict[str, str], bytes]:
        """Sends and reads the answer; the slot learns when the request has left."""
        extensions = {"trace": slot.trace}
        try:
            with self._http.stream("POST", self._url, content=body, headers=headers, extensions=extensions) as response:
                slot.sent()  # an answer has begun, so the request has certainly left
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > MAX_RESPONSE_BYTES:
                        raise TransientApiError("bad_body", f"response larger than {MAX_RESPONSE_BYTES} bytes")
                    chunks.append(chunk)
                lowered = {name.lower(): value for name, value in response.headers.items()}
                return response.status_code, lowered, b"".join(chunks)
        except httpx.TimeoutException as error:
            raise TransientApiError("timeout", type(error).__name__) from error
        except httpx.TransportError as error:  # connect errors, resets, truncated bodies
            detail = f"{type(error).__name__}: {excerpt(str(error).encode())}"
            raise TransientApiError("connection_error", detail) from error
