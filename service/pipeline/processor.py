"""The pipeline, wired: decode -> hold (relist grace) -> route to the collection's account -> batch by collection
-> call the API -> publish -> commit.

Each step lives in its own module under ``service.pipeline.steps`` and keeps one contract (``Step``: submit,
which may refuse with ``MessageRejected``; poll, which never blocks; join, which honours its deadline). One
thread, the poll loop below, drives them all; worker threads only run API calls. The loop keeps calling
``consume()`` while partitions are paused (backpressure, quota wait, fatal state), so
``max.poll.interval.ms`` never expires.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Final

from confluent_kafka import Consumer, Producer

from service.api.models import BatchResult, DeleteBatch
from service.api.quota import QuotaGate
from service.api.rate_limit import RateLimiter
from service.budget import QuotaView
from service.health import HealthState
from service.metrics import Metrics
from service.pipeline.batcher import Batcher
from service.pipeline.consumer_stats import ConsumerStats
from service.pipeline.decisions import drain_plan
from service.pipeline.events import EventTypes
from service.pipeline.gauges import Gauges
from service.pipeline.halt import Halt
from service.pipeline.intake import Intake
from service.pipeline.partitions import Partitions
from service.pipeline.pending import PendingEvent
from service.pipeline.rebalance import Rebalance
from service.pipeline.share import Paced, PartitionShare, QpsShare
from service.pipeline.steps.batch import BatchStep, call_planner
from service.pipeline.steps.call import CallStep
from service.pipeline.steps.commit import CommitStep
from service.pipeline.steps.decode import DecodeStep
from service.pipeline.steps.hold import HoldStep, RecentDeletions
from service.pipeline.steps.publish import PublishStep, Topics
from service.pipeline.steps.route import Lane, Routes, RouteStep
from service.registry.decoder import event_decoder
from service.settings import Account, Settings
from service.tracing import NO_TRACING, Tracing

__all__ = ["AccountCalls", "Pipeline"]

log = logging.getLogger(__name__)

CONSUME_BATCH: Final = 500
LEAVE_SECONDS: Final = 5.0
HELD_ACCOUNTS_SECONDS: Final = 0.5


@dataclass(frozen=True, slots=True)
class AccountCalls:
    """One account as the pipeline calls it: its settings, how a batch is deleted, and what paces its calls."""

    account: Account
    delete: Callable[[DeleteBatch], BatchResult]
    quota: QuotaGate
    limiter: RateLimiter


class Pipeline:
    def __init__(
        self,
        *,
        settings: Settings,
        consumer: Consumer,
        producer: Producer,
        accounts: Sequence[AccountCalls],
        executor: Executor,
        metrics: Metrics,
        health: HealthState,
        stop_calls: threading.Event,
        source: str,
        tracing: Tracing = NO_TRACING,
        share: QpsShare | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``accounts``: each account's calls, one lane of batches and calls each (``RouteStep``); ``share``: how
        this replica's QPS share of each account is set (default: by its fraction of the partitions);
        ``clock``: the batches' and the budget's time."""
        kafka, batch = settings.kafka, settings.batch
        self._topic, self._grace = kafka.input_topic, settings.shutdown_grace_seconds
        self._consumer, self._producer, self._executor = consumer, producer, executor
        self._health, self._stop_calls = health, stop_calls
        self._partitions = Partitions()
        self._halt = Halt(health, metrics)
        self._wake = threading.Event()
        """Set when a call finishes or a rate limiter's slot comes free: the loop then turns at once."""
        self._intake = Intake(
            consumer=consumer, topic=self._topic, partitions=self._partitions, max_pending=kafka.max_pending_events
        )
        # The flow, built from its end: each step is given the step it hands its work to.
        topics = Topics(outcomes=kafka.outcome_topic, dead_letters=kafka.dlq_topic)
        self._publish = PublishStep(
            producer=producer, topics=topics, partitions=self._partitions, source=source,
            dry_run=settings.dry_run, halt=self._halt, metrics=metrics,
        )  # fmt: skip
        self._commit = CommitStep(
            consumer=consumer, topic=self._topic, partitions=self._partitions, publish=self._publish,
            health=health, metrics=metrics,
        )  # fmt: skip
        deletions = RecentDeletions()
        lanes = [
            self._lane(calls, settings=settings, metrics=metrics, deletions=deletions, tracing=tracing, clock=clock)
            for calls in accounts
        ]
        self._route = RouteStep(
            lanes=lanes, routes=Routes((calls.account.name, calls.account.collections) for calls in accounts),
            partitions=self._partitions, finished=self._publish, wake=self._wake, metrics=metrics,
        )  # fmt: skip
        self._max_items = batch.max_items
        self._hold = HoldStep(
            partitions=self._partitions, send=self._route, withdraw=self._route.withdraw, finished=self._publish,
            pending_of=self._route.pending_of, deletions=deletions, grace_seconds=batch.relist_grace_seconds,
            max_age_seconds=settings.max_event_age_seconds, caught_up=self._intake.caught_up, metrics=metrics,
        )  # fmt: skip
        events = settings.events
        self._decode = DecodeStep(
            topic=self._topic, partitions=self._partitions, events=self._hold, invalid=self._publish.invalid,
            types=EventTypes(events.delist_types, events.relist_types, events.type_field),
            max_pending=kafka.max_pending_events, halt=self._halt, metrics=metrics,
            decode=event_decoder(settings.schema_registry),
        )  # fmt: skip
        self._stats = ConsumerStats(topic=self._topic, health=health, metrics=metrics)
        self._share = share or PartitionShare(
            [Paced(calls.account.name, calls.limiter, calls.account.api.qps, metrics.account(calls.account.name))
             for calls in accounts]
        )  # fmt: skip
        self._rebalance = Rebalance(
            consumer=consumer, topic=self._topic, partitions=self._partitions, calls=self._route,
            commit=self._commit, share=self._share, revoke_seconds=self._grace,
            stats=self._stats, health=health, metrics=metrics, dropped=self._intake.drop,
        )  # fmt: skip
        self._gauges = Gauges(
            metrics=metrics, health=health,
            accounts=[(metrics.account(calls.account.name), calls.quota, calls.limiter) for calls in accounts],
        )  # fmt: skip
        self._stopping = self._abandon = False
        self._held_accounts_seen: set[str] = set()
        self._held_accounts_until = 0.0

    def _lane(
        self,
        calls: AccountCalls,
        *,
        settings: Settings,
        metrics: Metrics,
        deletions: RecentDeletions,
        tracing: Tracing,
        clock: Callable[[], float],
    ) -> Lane:
        """One account's batch and call steps, paced by its own rate limiter, quota gate and budget."""
        api, batch, quota, limiter = calls.account.api, settings.batch, calls.quota, calls.limiter
        limiter.when_free(self._wake.set)
        call = CallStep(
            account=calls.account.name, delete=calls.delete, executor=self._executor, workers=api.workers,
            limiter=limiter, quota=quota, max_attempts=api.max_attempts, partitions=self._partitions,
            finished=self._publish, halt=self._halt, stop_calls=self._stop_calls, wake=self._wake,
            deletions=deletions, metrics=metrics, tracing=tracing,
        )  # fmt: skip
        batcher: Batcher[PendingEvent] = Batcher(
            max_items=batch.max_items, max_bytes=batch.max_bytes, linger_seconds=batch.linger_seconds
        )
        batch_step = BatchStep(
            batcher=batcher, calls=call, planner=call_planner(api, batch), clock=clock,
            metrics=metrics.account(calls.account.name),
            quota=lambda: QuotaView(
                quota.seconds_until_daily_reset(), limiter.rate, quota.state().exhausted, self._rebalance.fraction()
            ),
        )  # fmt: skip
        call.feed_back_to(batch_step)
        return Lane(calls.account.name, batch_step, call, quota, limiter)

    def request_shutdown(self) -> None:
        """First call: stop fetching and drain. Second call: abandon in-flight work now. Signal-safe."""
        if self._stopping:
            self._abandon = True
            self._stop_calls.set()
        self._stopping = True

    def on_stats(self, stats_json: str) -> None:
        """librdkafka's ``stats_cb``: lag per partition and broker reachability."""
        self._stats.on_stats(stats_json)

    def run(self) -> None:
        """Consumes until shutdown is requested, then drains within the grace period and closes."""
        rebalance = self._rebalance
        self._consumer.subscribe(
            [self._topic], on_assign=rebalance.on_assign, on_revoke=rebalance.on_revoke, on_lost=rebalance.on_lost
        )
        self._health.subscribed = True
        log.info("consuming", extra={"topic": self._topic})
        while not self._stopping:
            self._turn()
        self._drain()

    def _turn(self, *, fetch: bool = True) -> None:
        """One turn of the loop: every step in the order the data flows."""
        self._health.heartbeat = time.monotonic()
        if fetch:
            self._fetch()
        if self._rebalance.changed:
            self._rebalance.settle()
            self._intake.pause(self._intake.paused)  # newly assigned partitions start unpaused
        rejected = self._intake.offer(self._decode)  # decode -> hold (invalid records -> publish, as dead letters)
        self._hold.poll(pressed=rejected)  # hold -> route to the collection's account, once the relist grace passed
        self._route.poll()  # each account: batch -> call, as its call slots come free; call -> publish (and retries)
        self._publish.poll()  # publish -> acknowledgements, which move the commit watermark
        self._commit.poll()  # commit
        stopping, fatal, exhausted = self._stopping, self._halt.reason is not None, self._route.all_exhausted()
        self._intake.control(rejected=rejected, stopping=stopping, fatal=fatal, quota_exhausted=exhausted)
        self._share.poll(self._demand())  # each account's QPS, shared by what each replica could send now
        self._gauges.update(
            inflight=self._route.inflight(),
            pending=self._partitions.pending_events(),
            paused=len(self._partitions) if self._intake.paused else 0,
        )

    def _demand(self) -> dict[str, int]:
        """Calls this replica could make now, by account: its waiting images in full calls and its calls under
        way; an account with neither asks for one while delists of its collections are held (the relist grace),
        as they will want a call soon. None while no call of the account can start."""
        stopped = self._stopping or self._halt.reason is not None
        lanes = self._route.lanes
        demand = {lane.account: 0 if stopped or lane.exhausted() else lane.demand(self._max_items) for lane in lanes}
        idle = {lane.account for lane in lanes if not demand[lane.account] and not stopped and not lane.exhausted()}
        if idle and self._hold.held():
            for account in self._held_accounts() & idle:
                demand[account] = 1
        return demand

    def _held_accounts(self) -> set[str]:
        """The accounts of the delists held, looked up at most twice a second (demand is announced once a
        second; a busy partition's grace may hold thousands of delists)."""
        now = time.monotonic()
        if now >= self._held_accounts_until:
            self._held_accounts_seen = self._route.accounts_of(self._hold.collections())
            self._held_accounts_until = now + HELD_ACCOUNTS_SECONDS
        return self._held_accounts_seen

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
        waits = [wait for wait in (held, due) if wait is not None]
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
        events = self._partitions.all_events()
        started = self._route.events_in_calls() | {event for event in events if event.results}
        self._partitions.abandon(drain_plan(events, started))
        self._route.forget(lambda pending: pending.abandoned)
        self._route.drain()
        log.info(
            "draining before shutdown",
            extra={"count": self._partitions.pending_events(), "wait_seconds": self._grace},
        )
        while self._partitions.pending_events() and not self._abandon and time.monotonic() < deadline:
            if self._halt.reason is not None or self._route.stuck_on_quota():
                break  # nothing more can finish; what is pending stays uncommitted
            self._route.wait(0.02)
            self._turn(fetch=False)
        self._stop_calls.set()
        if self._partitions.pending_events():
            log.warning(
                "shutdown leaves events unfinished; they will be redelivered",
                extra={"count": self._partitions.pending_events()},
            )
        self._commit.join(max(deadline, time.monotonic() + 1.0))
        self._rebalance.closing = True
        self._share.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._leave_group()
        self._consumer.close()
        self._producer.flush(5)
        log.info("stopped")

    def _leave_group(self) -> None:
        """Leaves the group before closing: a static member (``group.instance.id``) does not on ``close()``, and
        its partitions would wait out the session timeout for a replacement pod of another name."""
        self._consumer.unsubscribe()
        deadline = time.monotonic() + LEAVE_SECONDS
        while self._consumer.assignment() and time.monotonic() < deadline:
            self._consumer.consume(CONSUME_BATCH, timeout=0.1)  # serves the revoke; records are not taken
