"""Call: ready batches -> the delete API on worker threads -> each image's result to the events waiting for it.

A batch is taken only when its call can start at once: a worker is free, the quota is open and the rate
limiter grants a slot now (``try_acquire``); the slot goes with the call to its worker. Retries of a call
(transient errors) wait in the worker; items that another call may fix go back to the batch step. Every
image's result goes to the ledger, which hands an event to publishing once all of its images are decided.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Protocol

from service.api.errors import CallAbandoned, FatalApiError, RetriesExhausted
from service.api.fatal_gate import FatalGate
from service.api.models import BatchResult, DeleteBatch, DeleteItem, ItemResult, ItemStatus
from service.api.quota import QuotaGate
from service.api.rate_limit import RateLimiter, SendSlot
from service.budget.shared import SharedSpend
from service.logs import log_context
from service.metrics import Metrics
from service.pipeline.batcher import ReadyBatch
from service.pipeline.decisions import route_results
from service.pipeline.halt import Halt
from service.pipeline.ledger import Ledger
from service.pipeline.pending import PendingEvent
from service.pipeline.steps.abstract import MessageRejected
from service.settings import Account
from service.tracing import NO_TRACING, Tracing
from service.vocabulary import CancelReason, DeadLetterReason, TraceContext

__all__ = ["AccountCalls", "CallStep", "Workers"]

log = logging.getLogger(__name__)


class Feedback(Protocol):
    """What a finished call tells the batch step: items worth another call, and what the account has left."""

    def retry(self, collection: str, item: DeleteItem, waiters: list[PendingEvent], attempt: int) -> None: ...
    def learned(self, remain_times: int, calls_in_flight: int) -> None: ...
    def spent(self, calls: int) -> None: ...


@dataclass(frozen=True, slots=True)
class AccountCalls:
    """One account as the service calls it: its settings, how a batch is deleted, and what paces its calls."""

    account: Account
    delete: Callable[[DeleteBatch], BatchResult]
    quota: QuotaGate
    limiter: RateLimiter
    fatal: FatalGate = field(default_factory=FatalGate)
    """The account's fatal state: a fatal answer holds its calls until a probe's answer is not fatal."""
    spend: SharedSpend | None = None
    """The account's budget day as every replica's records count it (the budget topic); None: this process's own."""


@dataclass(frozen=True, slots=True)
class Workers:
    """What every account's calls share: the worker threads, the loop's wake-up, the stops, the tracer."""

    executor: Executor
    wake: threading.Event
    """Set when a call finishes: the loop then turns at once."""
    stop_calls: threading.Event
    halt: Halt
    tracing: Tracing = NO_TRACING
    outputs_full: Callable[[], bool] = lambda: False
    """Whether too many records wait for Kafka's acknowledgement for another call to start (``OutputsBacklog``)."""


class CallStep:
    def __init__(self, *, calls: AccountCalls, workers: Workers, ledger: Ledger, metrics: Metrics) -> None:
        self._account = calls.account.name
        self._delete = calls.delete
        self._limiter = calls.limiter
        self._quota = calls.quota
        self._fatal = calls.fatal
        self._probe: Future[BatchResult] | None = None
        self._workers = calls.account.api.workers
        self._max_attempts = calls.account.api.max_attempts
        self._executor = workers.executor
        self._wake = workers.wake
        self._stop_calls = workers.stop_calls
        self._halt = workers.halt
        self._tracing = workers.tracing
        self._outputs_full = workers.outputs_full
        self._ledger = ledger
        self._metrics = metrics
        self._feedback: Feedback | None = None
        self._inflight: dict[Future[BatchResult], ReadyBatch[PendingEvent]] = {}
        self._completions: queue.SimpleQueue[Future[BatchResult]] = queue.SimpleQueue()

    def feed_back_to(self, feedback: Feedback) -> None:
        """Where items that a later call may fix go, and what the account has left (the batch step): the one
        loop back in the flow."""
        self._feedback = feedback

    def accepting(self) -> bool:
        """Whether a call could start now; ``submit`` may still refuse if the slot is taken meanwhile."""
        return len(self._inflight) < self._workers and not self.blocked() and self._limiter.seconds_until_free() <= 0

    def blocked(self) -> bool:
        """Whether no call can start until something outside the flow changes (a fatal error, shutdown, the
        quota, the account's fatal state until its probe is due), as opposed to waiting for a worker or the rate
        limiter."""
        return (
            self._halt.reason is not None
            or self._stop_calls.is_set()
            or self._quota.state().exhausted
            or self._fatal.holding()
            or self._outputs_full()
        )

    def submit(self, ready: ReadyBatch[PendingEvent]) -> None:
        if not self.accepting():
            raise MessageRejected
        slot = self._limiter.try_acquire()
        if slot is None:
            raise MessageRejected
        # Gathered only when tracing is on: nothing per event otherwise.
        contexts = _trace_contexts(ready) if self._tracing.enabled else ()
        future = self._executor.submit(self._call, ready.batch, slot, contexts=contexts)
        self._inflight[future] = ready
        if self._fatal.starting():  # the account is halted: this call is its probe
            self._probe = future
            log.info("probe call of a halted account", extra={**_batch_ids(ready), "account": self._account})
        future.add_done_callback(self._completed)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("call starts", extra={**_batch_ids(ready), "items": len(ready.batch.items)})

    def _completed(self, future: Future[BatchResult]) -> None:
        """On the worker thread: the result waits for the poll loop, which is woken for it."""
        self._completions.put(future)
        self._wake.set()

    def _call(self, batch: DeleteBatch, slot: SendSlot, *, contexts: tuple[TraceContext, ...]) -> BatchResult:
        """On a worker thread: the call, its first send in the slot granted when the batch was taken.

        Every line logged during the call (the client's too) carries the batch's id, account and collection, and JD's
        request id of the latest answer once there is one.
        """
        with (
            log_context(batch_id=batch.batch_id, account=self._account, collection=batch.collection),
            self._tracing.call(batch, contexts) as span,
            self._limiter.granted(slot),
        ):
            result = self._delete(batch)
            span.finished(result)
            log.debug(
                "call finished",
                extra={"items": len(batch.items), "code": ",".join(result.codes), "attempt": result.attempts},
            )
            return result

    def poll(self) -> None:
        """Hands the results of finished calls on. Never blocks."""
        while True:
            try:
                future = self._completions.get_nowait()
            except queue.Empty:
                return
            self._finish(future)

    def wait(self, seconds: float) -> None:
        """Blocks up to ``seconds`` for a call to finish (a revoke's bounded wait)."""
        try:
            future = self._completions.get(timeout=seconds)
        except queue.Empty:
            return
        self._finish(future)

    def close(self) -> None:
        pass  # calls under way finish; the batch step sends what is left

    def join(self, deadline: float) -> None:
        """Waits for the calls under way until ``deadline`` (not for calls that cannot finish: stopped, halted, or
        held for the quota), handing their results on as they come."""
        while self._inflight and not self.blocked() and (left := deadline - time.monotonic()) > 0:
            self.wait(min(left, 0.05))

    def terminate(self) -> None:
        self._stop_calls.set()

    def finished_waiting(self) -> bool:
        """Whether a finished call's results wait for ``poll``."""
        return not self._completions.empty()

    def busy(self) -> bool:
        """Whether a call's results wait, or a call is under way that can finish soon: a call held in its worker
        for the quota (10040, until the reset) does not keep the loop turning fast."""
        return self.finished_waiting() or (bool(self._inflight) and not self.blocked())

    def inflight(self) -> int:
        return len(self._inflight)

    def carries(self, partitions: Collection[int]) -> bool:
        """Whether a call under way has an image of an unabandoned event of these partitions."""
        return any(
            not waiter.abandoned and waiter.source.partition in partitions
            for ready in self._inflight.values()
            for waiters in ready.waiters.values()
            for waiter in waiters
        )

    def calling_for(self, collection: str, product_id: str) -> list[PendingEvent]:
        """Events with images of this product in a call under way."""
        found: dict[int, PendingEvent] = {}
        for ready in self._inflight.values():
            if ready.batch.collection == collection:
                for item, waiters in ready.waiters.items():
                    if item.product_id == product_id:
                        found.update((id(waiter), waiter) for waiter in waiters)
        return list(found.values())

    def events_in_calls(self) -> set[PendingEvent]:
        return {waiter for ready in self._inflight.values() for waiters in ready.waiters.values() for waiter in waiters}

    def _finish(self, future: Future[BatchResult]) -> None:
        ready = self._inflight.pop(future)
        probe = future is self._probe
        if probe:
            self._probe = None
        try:
            result = future.result()
        except CallAbandoned:
            self._fatal.abandoned(probe=probe)
            return  # shutting down: these events stay uncommitted
        except FatalApiError as error:
            self._halted(ready, error, probe=probe)
            return
        except RetriesExhausted as error:
            log.error(  # noqa: TRY400 - the cause is the API's answer, not a stack worth printing
                "retries exhausted; events fail and go to the dead-letter topic",
                extra={**_batch_ids(ready), "code": error.last.code, "attempt": error.attempts},
            )
            result = _failed(ready.batch, DeadLetterReason.RETRIES_EXHAUSTED, error.attempts)
        except Exception:  # a bug must not lose events: they fail loudly and are dead-lettered
            log.exception("unexpected error in a delete call", extra=_batch_ids(ready))
            result = _failed(ready.batch, DeadLetterReason.INTERNAL_ERROR, 1)
        if self._fatal.answered(probe=probe):
            log.warning(
                "the account's probe was answered, not fatal: its calls resume", extra={"account": self._account}
            )
        self._report(result)
        self._apply(ready, result)

    def _halted(self, ready: ReadyBatch[PendingEvent], error: FatalApiError, *, probe: bool) -> None:
        """A fatal answer: the account halts (``FatalGate``), its items go back to their batches unchanged (no
        try counted) to wait, uncommitted, for the probe that resumes it."""
        first = not self._fatal.halted
        self._fatal.fatal(error.code, error.message, probe=probe)
        state = self._fatal.state()
        if (first or probe) and state is not None:
            log.critical(
                "FATAL for this account: %s. Its calls stop; a probe call in %.0f s re-checks it.",
                state.reason(),
                state.next_probe_in_seconds,
                extra={**_batch_ids(ready), "account": self._account, "code": error.code},
            )
        decided: dict[PendingEvent, list[ItemResult]] = {}
        for item, waiters in ready.waiters.items():
            live = [waiter for waiter in waiters if not waiter.abandoned]
            again = [waiter for waiter in live if not waiter.relisted]
            if again and self._feedback is not None:
                self._feedback.retry(ready.batch.collection, item, again, ready.attempts[item])
            for waiter in live:
                if waiter.relisted:  # a relist came while the item was in this call: no second try
                    decided.setdefault(waiter, []).append(ItemResult(item, ItemStatus.CANCELLED, CancelReason.RELISTED))
        for pending, results in decided.items():
            self._ledger.decide(pending, results)

    def _report(self, result: BatchResult) -> None:
        """What the answer says the account has left, and the calls beyond the batch's first, to the budget."""
        if self._feedback is None:
            return
        if result.quota.remain_times is not None:
            self._feedback.learned(result.quota.remain_times, len(self._inflight))
        if result.api_calls > 1:
            self._feedback.spent(result.api_calls - 1)

    def _apply(self, ready: ReadyBatch[PendingEvent], result: BatchResult) -> None:
        """Each image's result to the events waiting for it, through the ledger; items worth another call back to
        the batch step."""
        routing = route_results(result.items, ready.waiters, ready.attempts, self._max_attempts)
        decided: dict[PendingEvent, list[ItemResult]] = {}  # in order of first touch; hashed by identity
        counts: Counter[tuple[ItemStatus, str | None]] = Counter()
        for item, waiters, attempt in routing.retry:
            live = [waiter for waiter in waiters if not waiter.abandoned]
            again = [waiter for waiter in live if not waiter.relisted]
            if again and self._feedback is not None:
                self._feedback.retry(ready.batch.collection, item, again, attempt)
            for waiter in live:
                results = decided.setdefault(waiter, [])
                if waiter.relisted:  # a relist came while the item was in this call: no second try
                    results.append(ItemResult(item, ItemStatus.CANCELLED, CancelReason.RELISTED))
                    counts[ItemStatus.CANCELLED, CancelReason.RELISTED] += 1
        deleted: dict[tuple[int, str], list[str]] = {}  # (partition, product) -> images: one change per product
        for item_result, waiters in routing.decided:
            counts[item_result.status, item_result.reason] += 1
            if item_result.status is ItemStatus.DELETED and waiters:  # a product's events share its partition
                item = item_result.item
                deleted.setdefault((waiters[0].source.partition, item.product_id), []).append(item.image_id)
            for waiter in waiters:
                if not waiter.abandoned:
                    decided.setdefault(waiter, []).append(item_result)
        if routing.exhausted:
            log.warning(
                "images still failing after %d calls each",
                self._max_attempts,
                extra={**_batch_ids(ready), "count": routing.exhausted, "reason": DeadLetterReason.RETRIES_EXHAUSTED},
            )
        for (partition, product_id), images in deleted.items():
            self._ledger.remember_deleted(partition, ready.batch.collection, product_id, images)
        for (status, reason), count in counts.items():
            self._metrics.image_decided(status, reason, count)
        for pending, results in decided.items():
            self._ledger.took_part(pending, attempts=result.attempts, api_calls=result.api_calls)
            self._ledger.decide(pending, results)


MAX_LOGGED_EVENT_IDS = 20
"""A line about a batch names at most this many of its events (a batch carries up to 200)."""


def _batch_ids(ready: ReadyBatch[PendingEvent]) -> dict[str, object]:
    """The ids a line about a batch carries: the batch, its collection and (some of) its events."""
    events = {waiter.event.event_id: None for waiters in ready.waiters.values() for waiter in waiters}
    return {
        "batch_id": ready.batch.batch_id,
        "collection": ready.batch.collection,
        "event_ids": list(events)[:MAX_LOGGED_EVENT_IDS],
        "count": len(events),
    }


def _trace_contexts(ready: ReadyBatch[PendingEvent]) -> tuple[TraceContext, ...]:
    """The distinct trace contexts of the events a call carries (its span's links), first seen first."""
    found: dict[str, TraceContext] = {}
    for waiters in ready.waiters.values():
        for waiter in waiters:
            if waiter.trace is not None:
                found.setdefault(waiter.trace.traceparent, waiter.trace)
    return tuple(found.values())


def _failed(batch: DeleteBatch, reason: str, attempts: int) -> BatchResult:
    items = tuple(ItemResult(item, ItemStatus.FAILED, reason) for item in batch.items)
    return BatchResult(items=items, api_calls=attempts, attempts=attempts)
