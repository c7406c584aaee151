"""Builds the running service from settings: Kafka clients, the API client, workers, HTTP, signals."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from types import FrameType
from typing import Any

import httpx
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from service.api.classify import ResponsePolicy
from service.api.client import DeleteClient, new_http_client
from service.api.fatal_gate import FatalGate
from service.api.models import BatchResult, DeleteBatch, ItemResult, ItemStatus
from service.api.quota import QuotaGate
from service.api.rate_limit import RateLimiter
from service.api.retry import RetryPolicy
from service.api.signing import Credentials
from service.budget import Allowance, AllowanceKind
from service.collector import tune_collector
from service.control.replica import ReplicaControls, open_controls
from service.health import HealthServer, HealthState
from service.internal_topics import create_command, ensure_topics, internal_topics
from service.kafka_clients import (
    admin_config,
    budget_producer_config,
    budget_reader_config,
    changelog_reader_config,
    consumer_config,
    demand_producer_config,
    demand_reader_config,
)
from service.logs import configure_logging
from service.metrics import Metrics
from service.pipeline.budget_state import BudgetBoard
from service.pipeline.changelog import ChangelogReader
from service.pipeline.events import ERROR_CLASSES, EventDecoder, decode_event
from service.pipeline.poison import PoisonMarks
from service.pipeline.processor import AccountCalls, Pipeline
from service.pipeline.share import DemandShare, Paced, PartitionShare, QpsShare
from service.pipeline.unread_age import AgeNotingConsumer, UnreadAge
from service.router import RouterStage, pipeline_settings
from service.settings import DEFAULT_ACCOUNT, Account, ConfigError, Settings, masked_config
from service.startup import Begun, begin
from service.tracing import Tracing, response_hook, start_tracing

__all__ = ["EXIT_CONFIG", "run_service"]

EXIT_CONFIG = 2

log = logging.getLogger(__name__)


def _dry_run_delete(limiter: RateLimiter, stop: threading.Event) -> Any:
    def delete(batch: DeleteBatch) -> BatchResult:
        limiter.acquire(stop).sent()  # paced like real calls, so a dry run shows real timing
        items = tuple(ItemResult(item, ItemStatus.DELETED, "dry_run") for item in batch.items)
        return BatchResult(items=items, api_calls=0, attempts=1, codes=("dry_run",))

    return delete


def _account_calls(
    account: Account, *, settings: Settings, http: httpx.Client, metrics: Metrics, stop_calls: threading.Event
) -> AccountCalls:
    """One account's client: its keys, endpoint, rate limiter and quota gate (the reset is the same for all)."""
    api = account.api
    limiter = RateLimiter(api.qps)
    quota = QuotaGate(api.quota_reset_zone, api.quota_reset_time, payment_probe_seconds=api.payment_probe_seconds)
    fatal = FatalGate(first_probe_seconds=api.fatal_probe_seconds, max_probe_seconds=api.fatal_probe_max_seconds)
    if settings.dry_run:
        return AccountCalls(account, _dry_run_delete(limiter, stop_calls), quota, limiter, fatal)
    if api.access_key is None or api.secret_key is None:  # require_credentials said so already, at start-up
        raise ConfigError(f"account {account.name!r} has no access key and secret key")
    client = DeleteClient(
        http=http,
        endpoint=str(api.endpoint),
        credentials=Credentials(api.access_key.get_secret_value(), api.secret_key.get_secret_value()),
        region=api.region,
        service=api.service,
        policy=ResponsePolicy(api.absent_reasons, api.retryable_item_reasons),
        retry=RetryPolicy(
            max_attempts=api.max_attempts,
            max_elapsed_seconds=api.max_elapsed_seconds,
            initial_seconds=api.backoff_initial_seconds,
            max_seconds=api.backoff_max_seconds,
        ),
        limiter=limiter,
        quota=quota,
        stop=stop_calls,
        observer=metrics.account(account.name),
    )
    return AccountCalls(account, client.delete, quota, limiter, fatal)


def _internal_topics(settings: Settings, consumer: Consumer) -> ChangelogReader | None:
    """Makes imgsweep's internal topics when missing (or says how, when it may not); the reader of the deletions
    changelog, or None when a topic imgsweep needs is missing (the process then ends with status 2)."""
    kafka = settings.kafka
    metadata = consumer.list_topics(kafka.input_topic, timeout=30).topics.get(kafka.input_topic)
    partitions = len(metadata.partitions) if metadata is not None and metadata.partitions else 1
    topics = internal_topics(settings, partitions)
    missing = ensure_topics(AdminClient(admin_config(settings)), topics, create=kafka.create_topics)
    for topic in missing:
        log.log(
            logging.ERROR if topic.required else logging.WARNING,
            "%s: topic %s is missing%s; create it: %s",
            topic.variable,
            topic.name,
            "" if kafka.create_topics else " (IMGSWEEP_KAFKA__CREATE_TOPICS is false)",
            create_command(topic, kafka.bootstrap_servers),
        )
    if any(topic.required for topic in missing):
        return None
    return ChangelogReader(Consumer(changelog_reader_config(settings)), kafka.deletions_topic)


def _budget_board(settings: Settings, member: str, metrics: Metrics) -> BudgetBoard | None:
    """The budget topic's reader and writer, when an account has a call budget and the topic is there (missing,
    and not required by a spending limit: each process counts its own calls, as the start-up log warned)."""
    kafka = settings.kafka
    if not any(account.api.budgeted for account in settings.api_accounts()):
        return None
    reader = Consumer(budget_reader_config(settings))
    found = reader.list_topics(kafka.budget_topic_name, timeout=30).topics.get(kafka.budget_topic_name)
    if found is None or found.error is not None or not found.partitions:
        reader.close()
        return None
    producer = Producer(budget_producer_config(settings))
    return BudgetBoard(topic=kafka.budget_topic_name, member=member, producer=producer, reader=reader, metrics=metrics)


def _shared_budgets(board: BudgetBoard | None, accounts: list[AccountCalls]) -> list[AccountCalls]:
    """Each budgeted account's calls with its budget day as every replica counts it (its day: the reset that ends
    it), and the budget topic read back: every replica's calls of today, this member's count and planner state."""
    if board is None:
        return accounts

    def shared(calls: AccountCalls) -> AccountCalls:
        api, quota = calls.account.api, calls.quota
        if not api.budgeted:
            return calls
        cap = Allowance(AllowanceKind(api.allowance), api.daily_calls, price_per_call=api.price_per_call,
                        daily_spend_limit=api.daily_spend_limit).day_cap()  # fmt: skip

        def today() -> int:
            return round((time.time() + quota.seconds_until_daily_reset()) / 60.0) * 60

        return replace(calls, spend=board.account(calls.account.name, cap, today))

    shared_accounts = [shared(calls) for calls in accounts]
    board.restore()
    return shared_accounts


def _event_decoder(settings: Settings) -> EventDecoder:
    """With a Schema Registry configured, its decoder; else plain ``decode_event``, without importing the registry's
    deserializers (Avro, Protobuf, JSON Schema: tens of MB a replica that reads only JSON never needs)."""
    if not settings.schema_registry.enabled:
        return decode_event
    from service.registry.decoder import event_decoder  # noqa: PLC0415 - only with a registry

    return event_decoder(settings.schema_registry)


def _log_mode(settings: Settings, accounts: Sequence[Account]) -> None:
    """What a reader of the start-up log should know first: a dry run, and the accounts."""
    if settings.dry_run:
        log.warning("DRY RUN: no API call is made; outcomes say dry_run: true")
    if len(accounts) > 1 or accounts[0].name != DEFAULT_ACCOUNT:
        log.info(
            "accounts: %s",
            "; ".join(f"{account.name}: {', '.join(account.collections)}" for account in accounts),
            extra={"count": len(accounts)},
        )


def _controls_or_exit(settings: Settings, metrics: Metrics) -> ReplicaControls:
    """The pauses and brakes this replica obeys; blocks (seconds) until the control topic is there and readable.
    Without it, one line and exit 2: no call may start without knowing the pauses in force."""
    try:
        return open_controls(settings, metrics)
    except ConfigError as error:
        log.error("cannot start: %s", error)  # noqa: TRY400 - one line, no traceback: a configuration error
        raise SystemExit(EXIT_CONFIG) from None


class _PipelineCallbacks:
    """librdkafka's callbacks of the consumer, made before the pipeline they report to."""

    def __init__(self, unread: UnreadAge) -> None:
        self.unread = unread
        self.pipeline: Pipeline | None = None

    def on_stats(self, stats: str) -> None:
        self.unread.on_stats(stats)
        if self.pipeline is not None:
            self.pipeline.on_stats(stats)

    def on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        if self.pipeline is not None:
            self.pipeline.on_commit(error, partitions)


def _run_stages(pipeline: Pipeline, router: RouterStage | None) -> None:
    """The router (if any) and the pipeline until shutdown. A signal stops the router first (its turn committed, it
    leaves its group), which then asks the pipeline to drain; a second signal drains, a third abandons."""

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: shutting down (a second signal abandons in-flight work)", signal.Signals(signum).name)
        if router is not None and not router.router.stopping:
            router.stop()
            return
        pipeline.request_shutdown()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if router is not None:
        router.start(on_end=pipeline.request_shutdown)
    pipeline.run()
    if router is not None:
        router.stop()
        router.join(10)


def _http_client(settings: Settings, workers: int, tracing: Tracing) -> httpx.Client:
    """One HTTP client for every account's calls: a connection per worker, each response traced."""
    api = settings.api
    http = new_http_client(
        connect=api.connect_timeout_seconds,
        read=api.read_timeout_seconds,
        write=api.write_timeout_seconds,
        pool=api.pool_timeout_seconds,
        connections=workers,
    )
    http.event_hooks = {**http.event_hooks, "response": [*http.event_hooks["response"], response_hook(tracing)]}
    return http


def _qps_share(settings: Settings, member: str) -> Callable[[Sequence[Paced]], QpsShare]:
    """How this replica's share of each account's QPS is set: by demand (the demand topic), else by partitions."""
    if settings.api.qps_share != "demand":
        return PartitionShare

    def share(accounts: Sequence[Paced]) -> QpsShare:
        return DemandShare(
            member=member,
            topic=settings.kafka.demand_topic,
            producer=Producer(demand_producer_config(settings)),
            reader=Consumer(demand_reader_config(settings)),
            accounts=accounts,
        )

    return share


def run_service(settings: Settings, begun: Begun | None = None) -> int:
    """``begun``: the outcome producer made first thing (``service.startup``; made now if None)."""
    configure_logging(settings.log.level, settings.log.format)
    tune_collector()  # the garbage collector's full collections held the GIL 60-130 ms each (decision 0025)
    log.info("starting imgsweep", extra={"state": masked_config(settings)})
    user_group = settings.kafka.group_id  # the outcomes' source, whichever topic the pipeline reads
    given, settings = settings, pipeline_settings(settings)  # behind the router: the collections topic (0022)
    accounts = settings.api_accounts()
    metrics = Metrics(
        error_classes=ERROR_CLASSES, accounts=[account.name for account in accounts],
        by_partition=settings.kafka.repartition,  # each collections-topic partition is one account's (0022)
    )  # fmt: skip
    health = HealthState()
    controls = _controls_or_exit(settings, metrics)
    stop_calls = threading.Event()
    workers = sum(account.api.workers for account in accounts)
    tracing = start_tracing(settings.tracing)  # ConfigError without the otel extra
    http = _http_client(settings, workers, tracing)
    calls = [
        _account_calls(account, settings=settings, http=http, metrics=metrics, stop_calls=stop_calls)
        for account in accounts
    ]
    _log_mode(settings, accounts)

    unread = UnreadAge(topic=settings.kafka.input_topic, metrics=metrics, committed=lambda: health.committed)
    callbacks = _PipelineCallbacks(unread)
    # librdkafka's log lines and errors go through the JSON logger (kafka_clients: logger, error_cb), once each.
    config = consumer_config(settings, stats_cb=callbacks.on_stats, on_commit=callbacks.on_commit)
    consumer = AgeNotingConsumer(config, unread)
    kafka = settings.kafka
    begun = begun or begin(settings)
    process_id, producer = begun.process_id, begun.producer
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="api-call")
    share = _qps_share(settings, kafka.group_instance_id or process_id)
    decoder, router = _event_decoder(settings), None
    if given.kafka.repartition:
        router = RouterStage.open(given, decoder=decoder, health=health, metrics=metrics, process_id=process_id)
        if router is None:
            return 2
    changelog = _internal_topics(settings, consumer)
    if changelog is None:
        return 2
    board = _budget_board(settings, kafka.group_instance_id or process_id, metrics)
    calls = _shared_budgets(board, calls)
    pipeline = Pipeline(
        settings=settings,
        changelog=changelog,
        consumer=consumer,
        producer=producer,
        renew_producer=begun.renew,
        accounts=calls,
        executor=executor,
        metrics=metrics,
        health=health,
        stop_calls=stop_calls,
        source=f"imgsweep/{user_group}",
        tracing=tracing,
        share=share,
        controls=controls,
        marks=PoisonMarks.in_temp_dir(settings.kafka.group_id),
        decoder=decoder,
    )
    callbacks.pipeline = pipeline
    server = HealthServer(settings.http.host, settings.http.port, health=health, metrics=metrics)
    server.start()
    log.info("metrics and health on port %d", server.port)

    started = time.monotonic()
    try:
        _run_stages(pipeline, router)
    finally:
        if board is not None:
            board.close()  # the planners' last state; no tombstone: the day's calls still count
        server.stop()
        http.close()
        tracing.shutdown()
    log.info("imgsweep stopped after %.1f s", time.monotonic() - started)
    return 1 if router is not None and router.router.failed else pipeline.exit_code
