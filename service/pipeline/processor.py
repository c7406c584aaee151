"""The pipeline, wired: decode -> hold (relist grace) -> route to the collection's account -> (each account's
lane: batch by collection -> call the API) -> publish -> commit.

Each step lives in its own module under ``service.pipeline.steps`` and keeps one contract (``Step``, arroyo's:
submit, which may refuse with ``MessageRejected``; poll, which never blocks and polls the next step; close,
join and terminate, which pass on down the chain). The chain is built once, from its end, below; the loop
turns it by polling its head. Every event is owned by the ledger (``service.pipeline.ledger``): steps report
their decisions to it, and the publish step takes what it finished. One thread, the poll loop, drives it all;
worker threads only run API calls. The loop keeps calling ``consume()`` while partitions are paused
(backpressure, quota wait, fatal state), so ``max.poll.interval.ms`` never expires.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Final

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from service.health import HealthState
from service.kafka_clients import max_record_bytes
from service.metrics import Metrics
from service.pipeline.changelog import ChangelogReader, restore
from service.pipeline.consumer_stats import ConsumerStats
from service.pipeline.decisions import drain_plan
from service.pipeline.deletions import DeletionMemory
from service.pipeline.demand import ReplicaDemand
from service.pipeline.events import EventDecoder, EventTypes, decode_event
from service.pipeline.gauges import Gauges
from service.pipeline.halt import Halt
from service.pipeline.intake import Intake
from service.pipeline.kept import lost_answers
from service.pipeline.lane import AccountCalls, AccountLane, LaneShared
from service.pipeline.ledger import Ledger
from service.pipeline.outputs import OutputsBacklog
from service.pipeline.pending import PendingEvent
from service.pipeline.poison import PoisonMarks
from service.pipeline.rebalance import Rebalance
from service.pipeline.share import Paced, PartitionShare, QpsShare
from service.pipeline.steps.call import Workers
from service.pipeline.steps.commit import delivery
from service.pipeline.steps.decode import DecodeStep, EventFormat
from service.pipeline.steps.gate import NO_CONTROLS, Controls
from service.pipeline.steps.guard import GuardedLanes
from service.pipeline.steps.hold import EventClock, HoldStep, HoldTimes
from service.pipeline.steps.publish import PublishStep, Topics
from service.pipeline.steps.route import RouteStep
from service.settings import Settings
from service.settings.kafka import KafkaSettings
from service.tracing import NO_TRACING, Tracing

__all__ = ["AccountCalls", "Pipeline"]

log = logging.getLogger(__name__)

CONSUME_BATCH: Final = 500
LEAVE_SECONDS: Final = 5.0


class Pipeline:
    def __init__(
        self,
        *,
        settings: Settings,
        consumer: Consumer,
        producer: Producer,
        accounts: Sequence[AccountCalls],
        renew_producer: Callable[[], Producer] | None = None,
        executor: Executor,
        metrics: Metrics,
        health: HealthState,
        stop_calls: threading.Event,
        source: str,
        tracing: Tracing = NO_TRACING,
        share: Callable[[Sequence[Paced]], QpsShare] = PartitionShare,
        changelog: ChangelogReader | None = None,
        clock: Callable[[], float] = time.monotonic,
        controls: Controls = NO_CONTROLS,
        marks: PoisonMarks | None = None,
        decoder: EventDecoder = decode_event,
    ) -> None:
        """``accounts``: each account's calls, one lane of batches and calls each; ``share``: makes how this
        replica's QPS share of each account is set, from the lanes' slots (default: by its fraction of the
        partitions); ``changelog``: reads the memory of deletions back for partitions assigned (None: each replica
        starts with none); ``clock``: the batches' and the budget's time; ``controls``: the pauses and brakes every
        lane obeys (the control topic); ``marks``: where a record that stops the process is remembered (default:
        in memory only, nothing across a restart; the service passes files in its temporary directory); ``decoder``:
        what reads a record's value (``decode_event``; the service's reads the Schema Registry's format first);
        ``renew_producer``: a producer like ``producer``, to replace one librdkafka made fatal (None: exit)."""
        kafka, batch = settings.kafka, settings.batch
        self._grace = settings.shutdown_grace_seconds
        self._consumer, self._executor, self._health, self._stop_calls = consumer, executor, health, stop_calls
        memory = DeletionMemory.from_settings(settings.state)
        self._ledger = ledger = Ledger(kafka.input_topic, memory, marks=marks, share_of=_shares(kafka, len(accounts)))
        self._changelog = changelog
        self._metrics = metrics
        self._halt = halt = Halt(health, metrics)
        self._wake = threading.Event()
        """Set when a call finishes or a rate limiter's slot comes free: the loop then turns at once."""
        self._outputs = OutputsBacklog(ledger=ledger, limit=kafka.max_unacknowledged, health=health, metrics=metrics)
        self._intake = Intake(consumer=consumer, ledger=ledger, max_pending=kafka.max_pending_events)
        self._stats = ConsumerStats(topic=kafka.input_topic, health=health, metrics=metrics, states=ledger.get)
        self._max_items = batch.max_items
        self._stopping = self._abandon = False

        # The chain, built from its end: each step is given the step it hands its work to. How records reach
        # Kafka and how offsets are committed depends on the delivery: one transaction for both (exactly-once), or
        # records acknowledged, then offsets committed by the consumer (at-least-once).
        self._transaction, self._outlet, self._commit = delivery(
            kafka, producer=producer, consumer=consumer, ledger=ledger, health=health, halt=halt,
            metrics=metrics, wake=self._wake, renew=renew_producer,
        )  # fmt: skip
        topics = Topics(
            kafka.outcome_topic,
            kafka.dlq_topic,
            kafka.deletions_topic,
            source=source,
            dry_run=settings.dry_run,
            max_record_bytes=max_record_bytes(settings),
        )
        self._publish = PublishStep(
            outlet=self._outlet, topics=topics, ledger=ledger, next_step=self._commit, metrics=metrics
        )
        workers = Workers(executor, self._wake, stop_calls, halt, tracing, outputs_full=self._outputs.full)
        shared = LaneShared(
            batch=batch, workers=workers, ledger=ledger, metrics=metrics, share_fraction=self._share_fraction,
            clock=clock, controls=controls,
        )  # fmt: skip
        self._controls = controls
        self._lanes = [AccountLane(calls, shared) for calls in accounts]
        self._route = RouteStep(
            lanes=self._lanes, next_step=self._publish, ledger=ledger, wake=self._wake, metrics=metrics
        )
        self._hold = HoldStep(
            next_step=GuardedLanes(lanes=self._route, ledger=ledger, metrics=metrics), ledger=ledger,
            times=HoldTimes(batch.relist_grace_seconds, settings.max_event_age_seconds),
            clock=EventClock(self._intake.caught_up), metrics=metrics,
        )  # fmt: skip
        events = settings.events
        self._decode = DecodeStep(
            next_step=self._hold, ledger=ledger, max_pending=kafka.max_pending_events, halt=halt, metrics=metrics,
            events=EventFormat(EventTypes(events.delist_types, events.relist_types, events.type_field), decoder),
        )  # fmt: skip

        self._share = share([lane.paced for lane in self._lanes])
        self._rebalance = Rebalance(
            consumer=consumer, ledger=ledger, flow=self, share=self._share, stats=self._stats, health=health,
            metrics=metrics, revoke_seconds=self._grace, kept=lost_answers(self._transaction, self._commit, ledger),
        )  # fmt: skip
        self._gauges = Gauges(metrics=metrics, health=health, lanes=self._lanes)
        self._demand_now = ReplicaDemand(
            lanes=self._lanes, hold=self._hold, route=self._route, max_items=batch.max_items
        )

    def _share_fraction(self) -> float:
        return self._rebalance.fraction()

    @property
    def exit_code(self) -> int:
        """The process's exit status once ``run`` returned: 1 when a fatal producer error ended it."""
        return 1 if self._halt.exit else 0

    def request_shutdown(self) -> None:
        """First call: stop fetching and drain. Second call: abandon in-flight work now. Signal-safe."""
        if self._stopping:
            self._abandon = True
            self._stop_calls.set()
        self._stopping = True

    def on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """The consumer's ``on_commit``: a failed commit is sent again (``Checkpoint.on_commit``)."""
        self._commit.on_commit(error, partitions)

    def on_stats(self, stats_json: str) -> None:
        """librdkafka's ``stats_cb``: lag per partition and broker reachability."""
        self._stats.on_stats(stats_json)

    def run(self) -> None:
        """Consumes until shutdown is requested, then drains within the grace period and closes."""
        if self._transaction is not None:
            self._transaction.start()  # fences a predecessor of the same id, aborting its open transaction
            self._health.brokers_up = True  # the transaction coordinator answered
        rebalance = self._rebalance
        self._consumer.subscribe(
            [self._ledger.topic],
            on_assign=rebalance.on_assign,
            on_revoke=rebalance.on_revoke,
            on_lost=rebalance.on_lost,
        )
        self._health.subscribed = True
        log.info("consuming", extra={"topic": self._ledger.topic})
        while not self._stopping:
            self._turn()
            if self._halt.exit:  # the producer can do nothing more: end, for a fresh process to take over
                self._stopping = self._abandon = True
        self._drain()

    def _turn(self, *, fetch: bool = True) -> None:
        """One turn of the loop: every step in the order the data flows."""
        self._health.heartbeat = time.monotonic()
        if fetch:
            self._fetch()
        if self._rebalance.changed:
            self._rebalance.settle()
            self._intake.repause()  # newly assigned partitions start unpaused
        rejected = self._intake.offer(self._decode)  # records -> decode -> hold (invalid records -> the ledger)
        self._decode.poll()  # the chain: hold -> route -> each lane (batch -> call) -> publish -> commit
        stopping, fatal = self._stopping, self._halt.reason is not None
        self._intake.control(rejected=rejected, stopping=stopping, fatal=fatal, waiting=self._route.waiting)
        self._controls.poll()  # pauses and brakes from the control topic; this replica's trips onto it
        self._share.poll(self._demand())  # each account's QPS, shared by what each replica could send now
        self._outputs.update(self._outlet.missing_topics)
        self._gauges.update(
            inflight=self._route.inflight(),
            pending=self._ledger.pending_events(),
            paused=self._intake.paused_partitions(),
            remembered=self._ledger.remembered(),
        )

    def _demand(self) -> dict[str, int]:
        """Calls this replica could make now, by account (``ReplicaDemand``)."""
        return self._demand_now.now(stopped=self._stopping or self._halt.reason is not None)

    def _fetch(self) -> None:
        """New records; while calls are under way, without blocking in librdkafka, so that a finished call or a
        free rate-limiter slot (``_wake``) starts the next turn at once."""
        timeout = self._poll_timeout()
        if not self._route.busy():
            self._intake.fetch(CONSUME_BATCH, timeout)
            return
        if not self._intake.fetch(CONSUME_BATCH, 0):
            self._wake.wait(timeout)
        self._wake.clear()

    def _poll_timeout(self) -> float:
        if self._intake.carrying or self._route.busy():
            return 0.02
        held = self._hold.seconds_until_due()
        due = self._route.seconds_until_due(time.monotonic())
        waits = [wait for wait in (held, due, self._commit.seconds_until_due()) if wait is not None]
        return min(0.2, max(0.005, min(waits))) if waits else 0.2

    def _drain(self) -> None:
        """Finishes the events calls have started, within the grace period; commits; closes.

        Events no call has touched are given up (``drain_plan``): uncommitted, their next owner does them.
        Outcomes published above them are named in the commit's metadata, so nothing is published twice.
        """
        deadline = time.monotonic() + self._grace
        self._health.draining = True
        self._intake.pause(True)
        self._intake.clear()
        events = self._ledger.events()
        started = self._route.events_in_calls() | {event for event in events if event.results}
        self._ledger.abandon(drain_plan(events, started))
        self._decode.close()  # down the chain: held delists given up, every lane's batches due as they are
        log.info(
            "draining before shutdown",
            extra={"count": self._ledger.pending_events(), "wait_seconds": self._grace},
        )
        while self._ledger.pending_events() and not self._abandon and time.monotonic() < deadline:
            if self._halt.reason is not None or self._route.stuck_on_quota():
                break  # nothing more can finish; what is pending stays uncommitted
            self._route.wait(0.02)
            self._turn(fetch=False)
        self._stop_calls.set()
        if self._ledger.pending_events():
            log.warning(
                "shutdown leaves events unfinished; they will be redelivered",
                extra={"count": self._ledger.pending_events()},
            )
        self._decode.join(max(deadline, time.monotonic() + 1.0))  # publishes what is finished, then commits
        self._rebalance.closing = True
        self._share.close()
        self._controls.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._intake.leave_group(LEAVE_SECONDS)
        self._consumer.close()
        self._outlet.flush(5)  # (exactly-once: the producer now, a new one if librdkafka made the first fatal)
        log.info("stopped")

    # ---- what a rebalance asks (``rebalance.Flow``) --------------------------------------------------------

    def assigned(self, partitions: frozenset[int]) -> None:
        """Partitions just assigned: their memory of deletions, restored from the changelog (Kafka Streams'
        restore before processing; blocks the loop for the read)."""
        if self._changelog is not None and partitions:
            restore(self._changelog, self._ledger, partitions, self._metrics)

    def revoke(self, partitions: frozenset[int], deadline: float) -> None:
        """The revoked partitions' unsent images leave their batches; their calls under way are waited for until
        ``deadline``; what is finished is published and committed before the partitions go."""

        def gone(pending: PendingEvent) -> bool:
            return pending.source.partition in partitions

        self._route.forget(gone)
        while self._route.carries(partitions) and time.monotonic() < deadline:
            self._route.wait(0.05)
            self._route.forget(gone)  # retries the results put back
        self._publish.flush(max(deadline, time.monotonic() + 0.5))
        self._commit.commit(sync=True, only=partitions)

    def dropped(self, partitions: frozenset[int]) -> None:
        self._route.forget(lambda pending: pending.abandoned)
        if self._transaction is not None:
            self._transaction.dropped()
        self._intake.drop(partitions)


def _shares(kafka: KafkaSettings, accounts: int) -> Callable[[int], int] | None:
    """Behind the router each account owns the collections topic's partitions ``p % accounts`` (decision 0022)."""
    if not kafka.repartition or accounts < 2:
        return None
    return lambda partition: partition % accounts
