"""The router stage beside the pipeline in one process (``IMGSWEEP_KAFKA__REPARTITION=true``, decision 0022).

``pipeline_settings`` is what the pipeline runs with behind the router: it consumes the collections topic in the
group ``<group_id>.collections`` and keeps its memory of deletions on ``<deletions_topic>.by-collection``,
co-partitioned with the collections topic. ``RouterStage`` makes the collections topic when missing, builds the
router's own consumer (the user's group, the configured instance id) and producer (transactional with exactly-once,
``<group_id>.<instance>-router``) and runs it on a thread of its own, with the collections topic's purge below the
pipeline's commits (``service.router.purge``) on another.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Final

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from service.health import HealthState
from service.internal_topics import collections_topic, create_command, ensure_topics
from service.kafka_clients import admin_config, consumer_config, max_record_bytes, producer_config
from service.metrics import Metrics
from service.metrics.router import RouterMetrics, router_lag
from service.pipeline.collections_topic import CollectionPartitions
from service.pipeline.events import EventDecoder, EventTypes
from service.pipeline.poison import PoisonMarks
from service.pipeline.steps.decode import EventFormat
from service.router.forward import Destination, Router
from service.router.purge import Purge
from service.settings import Settings

__all__ = ["RouterStage", "pipeline_settings"]

log = logging.getLogger(__name__)

METADATA_TIMEOUT_SECONDS: Final = 30.0
COLLECTIONS_GROUP_SUFFIX: Final = ".collections"
DELETIONS_SUFFIX: Final = ".by-collection"


def pipeline_settings(settings: Settings) -> Settings:
    """The settings the pipeline runs with: itself without the router; behind it, the collections topic as input,
    its own group, and the deletions changelog co-partitioned with the collections topic."""
    kafka = settings.kafka
    if not kafka.repartition:
        return settings
    behind = kafka.model_copy(
        update={
            "input_topic": kafka.collections_topic,
            "group_id": kafka.group_id + COLLECTIONS_GROUP_SUFFIX,
            "deletions_topic": kafka.deletions_topic + DELETIONS_SUFFIX,
        }
    )
    return settings.model_copy(update={"kafka": behind})


class RouterStage:
    """The router on its thread: ``start`` once the collections topic is there, ``stop`` from a signal."""

    def __init__(self, router: Router, settings: Settings, purge: Purge) -> None:
        self.router = router
        self._settings = settings
        self._purge = purge
        self._thread: threading.Thread | None = None

    @classmethod
    def open(
        cls, settings: Settings, *, decoder: EventDecoder, health: HealthState, metrics: Metrics, process_id: str
    ) -> RouterStage | None:
        """The router, with the collections topic made when missing; None (logged) when it is missing and may not
        be made. Blocks for the brokers' metadata."""
        kafka = settings.kafka
        health.router = "router starting"
        series = RouterMetrics(metrics.registry)

        def on_stats(stats: str) -> None:
            lag = router_lag(stats, kafka.input_topic)
            if lag is not None:
                series.lag.set(lag)

        consumer = Consumer(consumer_config(settings, stats_cb=on_stats))
        partitions = _collections_partitions(settings, consumer)
        if partitions is None:
            consumer.close()
            return None
        accounts = settings.api_accounts()
        transactional_id = None
        if kafka.delivery == "exactly_once":
            transactional_id = kafka.transactional_id(process_id) + "-router"
        destination = Destination(
            topic=kafka.collections_topic,
            partitions=CollectionPartitions(partitions, len(accounts)),
            accounts=[(account.name, account.collections) for account in accounts],
            max_record_bytes=max_record_bytes(settings),
        )
        events = settings.events
        router = Router(
            consumer=consumer,
            producer=Producer(producer_config(settings, transactional_id=transactional_id)),
            destination=destination,
            events=EventFormat(EventTypes(events.delist_types, events.relist_types, events.type_field), decoder),
            health=health,
            metrics=series,
            marks=PoisonMarks(Path(tempfile.gettempdir()), group=f"{kafka.group_id}.router", limit=1),
        )
        log.info(
            "router: %s -> %s (%d partitions, %d per account)",
            kafka.input_topic, kafka.collections_topic, partitions, destination.partitions.per_account,
        )  # fmt: skip
        purge = Purge(
            AdminClient(admin_config(settings)),
            topic=kafka.collections_topic,
            group=pipeline_settings(settings).kafka.group_id,
            purged=series.purged,
            failures=series.purge_failures,
            interval=kafka.purge_interval_seconds,
        )
        return cls(router, settings, purge)

    def start(self, on_end: Callable[[], None]) -> None:
        kafka = self._settings.kafka

        def run() -> None:
            self.router.run(kafka.input_topic, transactional=kafka.delivery == "exactly_once", on_end=on_end)

        self._thread = threading.Thread(target=run, name="router", daemon=True)
        self._thread.start()
        self._purge.start()

    def stop(self) -> None:
        self.router.stop()
        self._purge.stop()

    def join(self, seconds: float) -> None:
        if self._thread is not None:
            self._thread.join(seconds)


def _collections_partitions(settings: Settings, consumer: Consumer) -> int | None:
    """The collections topic's partitions: as it is, or as made now (``CollectionPartitions.sized``)."""
    kafka = settings.kafka
    topics = consumer.list_topics(timeout=METADATA_TIMEOUT_SECONDS).topics
    existing = topics.get(kafka.collections_topic)
    if existing is not None and existing.partitions:
        return len(existing.partitions)
    source = topics.get(kafka.input_topic)
    input_partitions = len(source.partitions) if source is not None and source.partitions else 1
    topic = collections_topic(settings, CollectionPartitions.sized(input_partitions, len(settings.api_accounts())))
    if ensure_topics(AdminClient(admin_config(settings)), [topic], create=kafka.create_topics):
        log.error(
            "%s: topic %s is missing; create it: %s",
            topic.variable, topic.name, create_command(topic, kafka.bootstrap_servers),
        )  # fmt: skip
        return None
    return topic.partitions
