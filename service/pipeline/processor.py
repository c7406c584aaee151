"""The whole data flow in one place: decode -> batch by collection -> call the API -> publish outcomes -> commit.

One thread (the poll loop) owns every piece of state here; worker threads only run API calls and hand
their results back through a queue. The loop never blocks on HTTP: it keeps calling ``consume()`` while
partitions are paused (backpressure, quota wait, fatal state), so ``max.poll.interval.ms`` never expires.

Offsets never run ahead of outcomes: an offset becomes committable only when the broker acknowledged every
record its event produced (outcome, dead-letter copy), and only over a contiguous prefix per partition.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from service.api.errors import CallAbandoned, FatalApiError, RetriesExhausted
from service.api.models import BatchResult, DeleteBatch, ItemResult, ItemStatus
from service.api.quota import QuotaGate
from service.api.rate_limit import RateLimiter
from service.health import HealthState
from service.metrics import Metrics
from service.pipeline.batcher import Batcher, ReadyBatch
from service.pipeline.events import InvalidEvent, decode_event
from service.pipeline.offsets import PartitionOffsets
from service.pipeline.outcomes import build_outcome, dead_letter_headers, outcome_headers
from service.pipeline.pending import RETRIES_EXHAUSTED, Headers, PendingEvent, SourceRecord
from service.settings import Settings

__all__ = ["Pipeline"]

log = logging.getLogger(__name__)

CONSUME_BATCH = 500
COMMIT_INTERVAL_SECONDS = 1.0
REVOKE_TIMEOUT_SECONDS = 10.0
RESUME_FRACTION = 0.8
INTERNAL_ERROR = "internal_error"


class Pipeline:
    def __init__(
        self,
        *,
        settings: Settings,
        consumer: Consumer,
        producer: Producer,
        delete: Callable[[DeleteBatch], BatchResult],
        executor: Executor,
        quota: QuotaGate,
        limiter: RateLimiter,
        metrics: Metrics,
        health: HealthState,
        stop_calls: threading.Event,
        source: str,
    ) -> None:
        self._settings = settings
        self._topic = settings.kafka.input_topic
        self._consumer = consumer
        self._producer = producer
        self._delete = delete
        self._executor = executor
        self._quota = quota
        self._limiter = limiter
        self._metrics = metrics
        self._health = health
        self._stop_calls = stop_calls
        self._source = source
        self._batcher: Batcher[PendingEvent] = Batcher(
            max_items=settings.batch.max_items,
            max_bytes=settings.batch.max_bytes,
            linger_seconds=settings.batch.linger_seconds,
        )
        self._offsets: dict[int, PartitionOffsets] = {}
        self._committed: dict[int, int] = {}
        self._pending: dict[tuple[int, int], PendingEvent] = {}
        self._inflight: dict[Future[BatchResult], ReadyBatch[PendingEvent]] = {}
        self._completions: queue.SimpleQueue[Future[BatchResult]] = queue.SimpleQueue()
        self._paused = False
        self._fatal: str | None = None
        self._stopping = False
        self._abandon = False
        self._closing = False
        self._last_commit = 0.0
        self._rebalanced = False
        self._topic_partitions: int | None = None
        self._lag_labels: set[str] = set()
        self._in_order = False
        self._held: list[PendingEvent] = []
        self._charged_reported = 0

    # ---- lifecycle -------------------------------------------------------------------------------------

    def request_shutdown(self) -> None:
        """First call: stop fetching and drain. Second call: abandon in-flight work now. Signal-safe."""
        if self._stopping:
            self._abandon = True
            self._stop_calls.set()
        self._stopping = True

    def run(self) -> None:
        """Consumes until shutdown is requested, then drains within the grace period and closes."""
        self._consumer.subscribe(
            [self._topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        self._health.subscribed = True
        log.info("consuming", extra={"topic": self._topic})
        while not self._stopping:
            self._step()
        self._drain()

    def _step(self, *, fetch: bool = True) -> None:
        self._health.heartbeat = time.monotonic()
        messages = self._consumer.consume(CONSUME_BATCH, timeout=self._poll_timeout()) if fetch else []
        if self._rebalanced:
            self._after_rebalance()
        for message in messages:
            self._accept(message)
        self._collect_results()
        self._dispatch(drain=self._stopping)
        self._producer.poll(0)
        self._apply_pause()
        self._commit(force=False)
        self._update_gauges()

    def _poll_timeout(self) -> float:
        if self._inflight or not self._completions.empty():
            return 0.02
        due = self._batcher.seconds_until_due(time.monotonic())
        return 0.2 if due is None else min(0.2, max(0.005, due))

    def _drain(self) -> None:
        """Finish what an outcome was already published past, publish in order, commit, close.

        An outcome published above an unfinished event cannot be committed, and would be published again
        after a restart. So the drain finishes exactly the events below each partition's highest published
        offset (the gaps), publishes from now on strictly in offset order, and leaves every event above
        that frontier unstarted and uncommitted: the next owner does it, and no outcome is duplicated.
        """
        grace = self._settings.shutdown_grace_seconds
        deadline = time.monotonic() + grace
        self._health.draining = True
        self._set_paused(True)
        self._in_order = True
        frontier = {partition: tracker.highest_published() for partition, tracker in self._offsets.items()}

        def beyond_frontier(pending: PendingEvent) -> bool:
            highest = frontier.get(pending.source.partition)
            return highest is None or pending.source.offset > highest

        for key, pending in list(self._pending.items()):
            if beyond_frontier(pending):
                pending.abandoned = True
                del self._pending[key]
        self._batcher.discard_waiters(lambda pending: pending.abandoned)
        log.info(
            "draining before shutdown",
            extra={"count": len(self._pending), "wait_seconds": grace, "state": "finishing gaps only"},
        )
        while self._has_gaps(frontier) and not self._abandon and time.monotonic() < deadline:
            if self._fatal is not None or self._quota.state().exhausted:
                break  # nothing more can finish; what is pending stays uncommitted
            self._step(fetch=False)
        self._stop_calls.set()
        if self._has_gaps(frontier):
            log.warning(
                "shutdown leaves events unfinished below published outcomes; they will be redelivered",
                extra={"count": len(self._pending)},
            )
        self._producer.flush(max(1.0, deadline - time.monotonic()))
        self._commit(force=True, synchronous=True)
        self._closing = True
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._consumer.close()
        self._producer.flush(5)
        log.info("stopped", extra={"count": len(self._held)})

    def _has_gaps(self, frontier: dict[int, int | None]) -> bool:
        return any(
            highest is not None
            and partition in self._offsets
            and self._offsets[partition].unpublished_at_or_below(highest)
            for partition, highest in frontier.items()
        )

    # ---- input -----------------------------------------------------------------------------------------

    def _accept(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", error.str(), extra={"code": str(error.code())})
                if error.fatal():
                    self._enter_fatal(f"Kafka consumer fatal error: {error.str()}")
            return
        record = _source_record(message)
        partition = record.partition
        offsets = self._offsets.get(partition)
        if offsets is None or record.topic != self._topic:
            return  # fetched before a revoke: the partition's new owner will read it
        self._metrics.events_consumed.inc()
        offsets.track(record.offset)
        try:
            event = decode_event(record.value, record.headers)
        except InvalidEvent as invalid:
            self._metrics.invalid_event(invalid.error_class)
            log.warning(
                "invalid event sent to the dead-letter topic: %s",
                invalid.reason,
                extra={"partition": partition, "offset": record.offset, "error_class": invalid.error_class},
            )
            self._publish(record, [self._dead_letter(record, invalid.error_class, invalid.reason)])
            return
        pending = PendingEvent(event=event, source=record, first_seen_at=datetime.now(UTC))
        self._pending[(partition, record.offset)] = pending
        now = time.monotonic()
        for item in pending.items():
            self._batcher.add(event.collection_name, item, pending, now)

    # ---- calls -----------------------------------------------------------------------------------------

    def _dispatch(self, *, drain: bool) -> None:
        if self._fatal is not None or self._abandon or self._quota.state().exhausted:
            return
        now = time.monotonic()
        while len(self._inflight) < self._settings.api.workers:
            ready = self._batcher.take(now, drain=drain)
            if ready is None:
                return
            self._metrics.batch_flushes.labels(ready.flush_reason.value).inc()
            future = self._executor.submit(self._delete, ready.batch)
            self._inflight[future] = ready
            future.add_done_callback(self._completions.put)

    def _collect_results(self) -> None:
        while True:
            try:
                future = self._completions.get_nowait()
            except queue.Empty:
                return
            ready = self._inflight.pop(future)
            try:
                result = future.result()
            except CallAbandoned:
                continue  # shutting down: these events stay uncommitted
            except FatalApiError as error:
                self._enter_fatal(f"API error {error.code}: {error.message}")
                continue
            except RetriesExhausted as error:
                log.error(  # noqa: TRY400 - the cause is the API's answer, not a stack worth printing
                    "retries exhausted; events fail and go to the dead-letter topic",
                    extra={"batch_id": ready.batch.batch_id, "code": error.last.code, "attempt": error.attempts},
                )
                result = self._failed_result(ready, RETRIES_EXHAUSTED, error.attempts)
            except Exception:  # a bug must not lose events: they fail loudly and are dead-lettered
                log.exception("unexpected error in a delete call", extra={"batch_id": ready.batch.batch_id})
                result = self._failed_result(ready, INTERNAL_ERROR, 1)
            self._apply(ready, result)

    def _failed_result(self, ready: ReadyBatch[PendingEvent], reason: str, attempts: int) -> BatchResult:
        items = tuple(ItemResult(item, ItemStatus.FAILED, reason) for item in ready.batch.items)
        return BatchResult(items=items, api_calls=attempts, attempts=attempts)

    def _apply(self, ready: ReadyBatch[PendingEvent], result: BatchResult) -> None:
        """Hands each item's result to the events waiting for it; retryable failures go into a later call."""
        now = time.monotonic()
        touched: dict[PendingEvent, None] = {}  # in order of first touch; a PendingEvent hashes by identity
        decided: Counter[tuple[ItemStatus, str | None]] = Counter()
        exhausted = 0
        for answered in result.items:
            item_result = answered
            waiters = ready.waiters[item_result.item]
            if item_result.status is ItemStatus.FAILED and item_result.retryable:
                attempt = ready.attempts[item_result.item]
                if attempt < self._settings.api.max_attempts:
                    for waiter in waiters:
                        if not waiter.abandoned:
                            self._batcher.add(ready.batch.collection, item_result.item, waiter, now, attempt + 1)
                            touched[waiter] = None
                    continue
                exhausted += 1
                item_result = ItemResult(item_result.item, ItemStatus.FAILED, RETRIES_EXHAUSTED)
            decided[item_result.status, item_result.reason] += 1
            for waiter in waiters:
                if not waiter.abandoned:
                    waiter.decide(item_result)
                    touched[waiter] = None
        if exhausted:
            log.warning(
                "images still failing after %d calls each",
                self._settings.api.max_attempts,
                extra={"batch_id": ready.batch.batch_id, "count": exhausted, "reason": RETRIES_EXHAUSTED},
            )
        for (status, reason), count in decided.items():
            self._metrics.image_decided(status.value, reason, count)
        for pending in touched:
            pending.took_part(attempts=result.attempts, api_calls=result.api_calls)
            if pending.complete:
                self._finish(pending)

    # ---- output ----------------------------------------------------------------------------------------

    def _finish(self, pending: PendingEvent) -> None:
        key = (pending.source.partition, pending.source.offset)
        if self._pending.pop(key, None) is None:
            return
        if self._in_order:
            self._held.append(pending)
            self._publish_in_order()
            return
        self._publish_outcome(pending)

    def _publish_in_order(self) -> None:
        """While draining: publish held events only where that leaves no gap below them."""
        progress = True
        while progress:
            progress = False
            for pending in sorted(self._held, key=lambda p: p.source.offset):
                offsets = self._offsets.get(pending.source.partition)
                if offsets is None:
                    self._held.remove(pending)
                elif offsets.is_next_to_publish(pending.source.offset):
                    self._held.remove(pending)
                    self._publish_outcome(pending)
                    progress = True

    def _publish_outcome(self, pending: PendingEvent) -> None:
        outcome = build_outcome(pending, completed_at=datetime.now(UTC), dry_run=self._settings.dry_run)
        records = [
            _Record(
                topic=self._settings.kafka.outcome_topic,
                key=pending.event.product_id.encode(),
                value=outcome.value,
                headers=outcome_headers(outcome, source=self._source),
                kind="outcome",
                label=outcome.status,
                timestamp_ms=pending.source.timestamp_ms,
            )
        ]
        if pending.dead_letter_reason is not None:
            records.append(
                self._dead_letter(pending.source, pending.dead_letter_reason, "the API kept failing; replay later")
            )
        self._publish(pending.source, records)

    def _dead_letter(self, record: SourceRecord, error_class: str, reason: str) -> _Record:
        kind = "retries_exhausted" if error_class in (RETRIES_EXHAUSTED, INTERNAL_ERROR) else "invalid_event"
        return _Record(
            topic=self._settings.kafka.dlq_topic,
            key=record.key,
            value=record.value,
            headers=dead_letter_headers(record, error_class=error_class, reason=reason, at=datetime.now(UTC)),
            kind="dead_letter",
            label=kind,
            timestamp_ms=None,
        )

    def _publish(self, source: SourceRecord, records: list[_Record]) -> None:
        self._offsets[source.partition].published(source.offset, len(records))
        for record in records:
            self._produce(source.partition, source.offset, record)

    def _produce(self, partition: int, offset: int, record: _Record) -> None:
        def delivered(error: KafkaError | None, _message: Message) -> None:
            self._delivered(partition, offset, record, error)

        while True:
            try:
                self._producer.produce(
                    record.topic, value=record.value, key=record.key, headers=[*record.headers], on_delivery=delivered
                )
            except BufferError:  # the producer's queue is full: let it deliver, then try again
                self._producer.poll(0.1)
            else:
                return

    def _delivered(self, partition: int, offset: int, record: _Record, error: KafkaError | None) -> None:
        offsets = self._offsets.get(partition)
        if error is not None:
            if error.fatal():
                self._enter_fatal(f"Kafka producer fatal error: {error.str()}")
                return
            log.warning(
                "publishing failed, trying again: %s", error.str(), extra={"partition": partition, "offset": offset}
            )
            if offsets is not None:
                self._produce(partition, offset, record)
            return
        if offsets is None:
            return  # the partition was revoked meanwhile; the new owner redoes the event
        offsets.acknowledged(offset)
        if record.kind == "outcome":
            self._metrics.outcomes.labels(record.label).inc()
            if record.timestamp_ms is not None:
                self._metrics.end_to_end_latency.observe(max(0.0, time.time() - record.timestamp_ms / 1000))
        else:
            self._metrics.dead_letters.labels(record.label).inc()

    # ---- offsets ---------------------------------------------------------------------------------------

    def _commit(self, *, force: bool, synchronous: bool = False, partitions: Iterable[int] | None = None) -> None:
        now = time.monotonic()
        if not force and now - self._last_commit < COMMIT_INTERVAL_SECONDS:
            return
        self._last_commit = now
        wanted = self._offsets.keys() if partitions is None else partitions
        offsets = []
        for partition in wanted:
            tracker = self._offsets.get(partition)
            committable = tracker.committable() if tracker is not None else None
            if committable is not None and committable > self._committed.get(partition, -1):
                offsets.append(TopicPartition(self._topic, partition, committable))
        if not offsets:
            return
        try:
            if synchronous:
                self._consumer.commit(offsets=offsets, asynchronous=False)
            else:
                self._consumer.commit(offsets=offsets, asynchronous=True)
        except Exception as error:  # noqa: BLE001 - a failed commit is retried with the next watermark
            log.warning("offset commit failed: %s", error)
            return
        for topic_partition in offsets:
            self._committed[topic_partition.partition] = topic_partition.offset
        self._health.committed = dict(self._committed)
        self._metrics.commits.inc()

    # ---- rebalancing -----------------------------------------------------------------------------------

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for topic_partition in partitions:
            self._offsets[topic_partition.partition] = PartitionOffsets()
            self._committed.pop(topic_partition.partition, None)
        self._rebalanced = True
        log.info("partitions assigned", extra={"count": len(partitions)})

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Finish the revoked partitions' in-flight work within a bound and commit; abandon the rest."""
        revoked = {tp.partition for tp in partitions}
        if not self._closing and not self._abandon:
            self._batcher.discard_waiters(lambda pending: pending.source.partition in revoked)
            deadline = time.monotonic() + min(REVOKE_TIMEOUT_SECONDS, self._settings.shutdown_grace_seconds)
            while self._inflight_for(revoked) and time.monotonic() < deadline:
                self._completions_wait(0.05)
                self._collect_results()
                self._batcher.discard_waiters(lambda pending: pending.source.partition in revoked)
                self._producer.poll(0)
            self._producer.flush(max(0.5, deadline - time.monotonic()))
            self._commit(force=True, synchronous=True, partitions=revoked)
        self._forget(revoked)
        log.info("partitions revoked", extra={"count": len(revoked)})

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Lost partitions belong to someone else already: never commit for them."""
        self._forget({tp.partition for tp in partitions})
        log.warning("partitions lost", extra={"count": len(partitions)})

    def _forget(self, partitions: set[int]) -> None:
        for key in [key for key in self._pending if key[0] in partitions]:
            self._pending.pop(key).abandoned = True
        self._batcher.discard_waiters(lambda pending: pending.abandoned)
        for partition in partitions:
            self._offsets.pop(partition, None)
            self._committed.pop(partition, None)
            if str(partition) in self._lag_labels:
                self._metrics.consumer_lag.remove(str(partition))
                self._lag_labels.discard(str(partition))
        self._rebalanced = True

    def _inflight_for(self, partitions: set[int]) -> bool:
        return any(
            not waiter.abandoned and waiter.source.partition in partitions
            for ready in self._inflight.values()
            for waiters in ready.waiters.values()
            for waiter in waiters
        )

    def _completions_wait(self, seconds: float) -> None:
        try:
            future = self._completions.get(timeout=seconds)
        except queue.Empty:
            return
        self._completions.put(future)

    def _after_rebalance(self) -> None:
        """Recompute this replica's share of the account's QPS: assigned partitions / all partitions."""
        self._rebalanced = False
        assigned = frozenset(self._offsets)
        self._health.assigned = assigned
        self._metrics.assigned_partitions.set(len(assigned))
        total = self._partition_count()
        share = len(assigned) / total if total else 1.0
        qps = self._settings.api.qps * share if assigned else self._settings.api.qps
        self._limiter.set_ceiling(max(qps, 0.01))
        if self._paused and assigned:
            self._consumer.pause([TopicPartition(self._topic, partition) for partition in assigned])
        log.info("QPS share recomputed", extra={"count": len(assigned), "state": f"{qps:.3f} qps"})

    def _partition_count(self) -> int | None:
        try:
            metadata = self._consumer.list_topics(self._topic, timeout=5)
        except Exception as error:  # noqa: BLE001 - keep the previous share until metadata is back
            log.warning("could not read the input topic's partition count: %s", error)
            return self._topic_partitions
        topic = metadata.topics.get(self._topic)
        if topic is not None and topic.partitions:
            self._topic_partitions = len(topic.partitions)
        return self._topic_partitions

    # ---- flow control ----------------------------------------------------------------------------------

    def _apply_pause(self) -> None:
        limit = self._settings.kafka.max_pending_events
        crowded = len(self._pending) >= (limit * RESUME_FRACTION if self._paused else limit)
        want = self._stopping or self._fatal is not None or self._quota.state().exhausted or crowded
        if want != self._paused:
            self._set_paused(want)

    def _set_paused(self, paused: bool) -> None:
        partitions = [TopicPartition(self._topic, partition) for partition in self._offsets]
        if partitions:
            (self._consumer.pause if paused else self._consumer.resume)(partitions)
        self._paused = paused

    def _enter_fatal(self, reason: str) -> None:
        if self._fatal is not None:
            return
        self._fatal = reason
        self._health.fatal_reason = reason
        self._metrics.fatal.set(1)
        log.critical(
            "FATAL: %s. Calling stopped, consumption paused, nothing more is committed; "
            "fix the configuration and restart.",
            reason,
        )
        self._set_paused(True)

    def _update_gauges(self) -> None:
        state = self._quota.state()
        self._metrics.quota_exhausted.set(1 if state.exhausted else 0)
        self._metrics.quota_reset_seconds.set(state.seconds_until_reset)
        self._metrics.quota_remaining.set(math.nan if state.remaining is None else state.remaining)
        if state.charged_calls > self._charged_reported:
            self._metrics.quota_charged.inc(state.charged_calls - self._charged_reported)
            self._charged_reported = state.charged_calls
        self._metrics.ready.set(1 if self._health.ready else 0)
        self._metrics.brokers_up.set(1 if self._health.brokers_up else 0)
        self._metrics.inflight_batches.set(len(self._inflight))
        self._metrics.pending_events.set(len(self._pending))
        self._metrics.paused_partitions.set(len(self._offsets) if self._paused else 0)
        self._metrics.rate_limit_qps.set(self._limiter.rate)

    def on_stats(self, stats_json: str) -> None:
        """librdkafka statistics (stats_cb): consumer lag per partition and broker reachability."""
        try:
            stats: dict[str, Any] = json.loads(stats_json)
        except ValueError:
            return
        brokers = stats.get("brokers", {})
        if brokers:
            self._health.brokers_up = any(
                broker.get("state") == "UP" for broker in brokers.values() if broker.get("nodeid", -1) >= 0
            )
        partitions = stats.get("topics", {}).get(self._topic, {}).get("partitions", {})
        for name, partition in partitions.items():
            if name == "-1" or int(name) not in self._offsets:
                continue
            # consumer_lag counts from the committed offset: offsets are committed, never stored, so
            # consumer_lag_stored stays -1.
            lag = partition.get("consumer_lag", -1)
            if isinstance(lag, int) and lag >= 0:
                self._metrics.consumer_lag.labels(name).set(lag)
                self._lag_labels.add(name)


@dataclass(frozen=True, slots=True)
class _Record:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers
    kind: str
    label: str
    timestamp_ms: int | None


def _source_record(message: Message) -> SourceRecord:
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    if topic is None or partition is None or offset is None:
        raise ValueError("a consumed message without topic, partition or offset")
    _, timestamp = message.timestamp()
    headers: Headers = []
    raw = message.headers() or []
    for name, value in raw.items() if isinstance(raw, dict) else raw:
        headers.append((name, value.encode() if isinstance(value, str) else value))
    return SourceRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        key=_bytes(message.key()),
        value=_bytes(message.value()),
        headers=headers,
        timestamp_ms=timestamp if timestamp > 0 else None,
    )


def _bytes(value: str | bytes | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value
