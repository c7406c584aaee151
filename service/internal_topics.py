"""imgsweep's internal topics: made by imgsweep when missing, as Kafka Connect and Kafka Streams make theirs.

- the control topic (``IMGSWEEP_KAFKA__CONTROL_TOPIC``): the pauses and tripped brakes every replica obeys
  (compacted, one partition; always: no replica starts a call before it has read it, ``service.control``);
- the demand topic (``IMGSWEEP_KAFKA__DEMAND_TOPIC``): replicas announce the calls they could make, to share
  each account's QPS (compacted, one partition; only with ``IMGSWEEP_API__QPS_SHARE=demand``);
- the deletions changelog (``IMGSWEEP_KAFKA__DELETIONS_TOPIC``): the memory of deletions for relists, as many
  partitions as the input topic (co-partitioned), compacted and deleted after the memory's window;
- the budget topic (``IMGSWEEP_KAFKA__BUDGET_TOPIC``): each account's budget day, every replica's calls and
  planner state (one partition, compacted after a day; only when an account has a call budget; required when one
  has a daily spending limit);
- the collections topic (``IMGSWEEP_KAFKA__COLLECTIONS_TOPIC``): the router's output, by collection (only with
  ``IMGSWEEP_KAFKA__REPARTITION=true``; cleanup.policy=delete, a week; ``collections_topic``).

On a locked-down cluster (``IMGSWEEP_KAFKA__CREATE_TOPICS=false``) imgsweep creates nothing and says which
topics to create, with the command (``imgsweep check-config --probe`` and the start-up log).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic  # confluent_kafka.admin re-exports it implicitly only

from service.settings import Settings

__all__ = [
    "CONTROL_TOPIC_CONFIG",
    "DEMAND_TOPIC_CONFIG",
    "InternalTopic",
    "collections_topic",
    "control_topic",
    "create_command",
    "ensure_topics",
    "internal_topics",
]

log = logging.getLogger(__name__)

ADMIN_TIMEOUT_SECONDS: Final = 30.0
BUDGET_TOPIC_CONFIG: Final = {
    "cleanup.policy": "compact",
    # a day's records stay whole (every replica resolves the day's claims from the same records), then only each
    # member's latest is kept: its planner state for its next start
    "min.compaction.lag.ms": str(26 * 3_600_000),
    "segment.ms": str(24 * 3_600_000),
}
"""The budget topic: one partition (one order of every claim), compacted once a record is over a day old."""
CONTROL_TOPIC_CONFIG: Final = {"cleanup.policy": "compact", "segment.ms": "3600000", "min.cleanable.dirty.ratio": "0.1"}
"""The control topic: one record per stopped account or collection kept; a segment rolls every hour and is compacted
once a tenth of it is stale, so a replica's start reads little more than the stops in force."""
DEMAND_TOPIC_CONFIG: Final = {"cleanup.policy": "compact", "segment.ms": "600000", "min.cleanable.dirty.ratio": "0.1"}
"""The demand topic: every replica announces about once a second (86,400 records a day each); a segment rolls every
10 minutes and is compacted once a tenth of it is stale, so the topic keeps about one record per replica instead of
a week's announcements (the broker's default segment.ms). Readers start 6 s back (decision 0009)."""
COLLECTIONS_RETENTION_MS: Final = 7 * 86_400_000
"""The collections topic keeps a week: the pipeline's group reads it within seconds; a week leaves room for an
outage of the pipeline's stage, as the input topic's own retention does (decision 0022)."""


@dataclass(frozen=True, slots=True)
class InternalTopic:
    name: str
    variable: str
    """The setting that names it."""
    partitions: int
    config: dict[str, str] = field(default_factory=dict)
    required: bool = True
    """Whether imgsweep cannot run without it (the demand topic only degrades the QPS share)."""


def internal_topics(settings: Settings, input_partitions: int) -> list[InternalTopic]:
    """The internal topics these settings use, for an input topic of ``input_partitions`` partitions."""
    kafka = settings.kafka
    topics = [
        control_topic(settings),
        InternalTopic(
            kafka.deletions_topic,
            "IMGSWEEP_KAFKA__DELETIONS_TOPIC",
            input_partitions,
            {
                "cleanup.policy": "compact,delete",
                "retention.ms": str(int(settings.state.deletions_window_seconds * 1000)),
            },
        ),
    ]
    budgeted = [account.api for account in settings.api_accounts() if account.api.budgeted]
    if budgeted:
        topics.append(
            InternalTopic(
                kafka.budget_topic_name,
                "IMGSWEEP_KAFKA__BUDGET_TOPIC",
                1,
                BUDGET_TOPIC_CONFIG,
                required=any(api.daily_spend_limit is not None for api in budgeted),
            )
        )
    if settings.api.qps_share == "demand":
        topics.append(
            InternalTopic(kafka.demand_topic, "IMGSWEEP_KAFKA__DEMAND_TOPIC", 1, DEMAND_TOPIC_CONFIG, required=False)
        )
    return topics


def control_topic(settings: Settings) -> InternalTopic:
    """The pauses and brakes (``service.control``): made (or named, with the command) before anything else, since no
    call starts before it is read."""
    return InternalTopic(settings.kafka.control_topic, "IMGSWEEP_KAFKA__CONTROL_TOPIC", 1, CONTROL_TOPIC_CONFIG)


def collections_topic(settings: Settings, partitions: int) -> InternalTopic:
    """The router's output (``IMGSWEEP_KAFKA__REPARTITION``): ``partitions`` from ``CollectionPartitions.sized``."""
    return InternalTopic(
        settings.kafka.collections_topic,
        "IMGSWEEP_KAFKA__COLLECTIONS_TOPIC",
        partitions,
        {"cleanup.policy": "delete", "retention.ms": str(COLLECTIONS_RETENTION_MS)},
    )


def create_command(topic: InternalTopic, bootstrap_servers: str) -> str:
    """The command an operator runs to create ``topic`` by hand."""
    configs = "".join(f" --config {name}={value}" for name, value in topic.config.items())
    return (
        f"kafka-topics.sh --bootstrap-server {bootstrap_servers} --create --topic {topic.name} "
        f"--partitions {topic.partitions}{configs}"
    )


def ensure_topics(admin: AdminClient, topics: Sequence[InternalTopic], *, create: bool) -> list[InternalTopic]:
    """Creates the missing ones (when ``create``); returns those still missing. Blocks for the brokers."""
    existing = admin.list_topics(timeout=ADMIN_TIMEOUT_SECONDS).topics
    missing = [topic for topic in topics if topic.name not in existing]
    if not missing or not create:
        return missing
    futures = admin.create_topics(
        [NewTopic(topic.name, num_partitions=topic.partitions, config=topic.config) for topic in missing],
        operation_timeout=ADMIN_TIMEOUT_SECONDS,
    )
    still: list[InternalTopic] = []
    for topic in missing:
        try:
            futures[topic.name].result(ADMIN_TIMEOUT_SECONDS)
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() == error.TOPIC_ALREADY_EXISTS:  # another replica was first
                continue
            log.error(  # noqa: TRY400 - the broker's answer says it all
                "could not create topic %s: %s", topic.name, error.str(), extra={"topic": topic.name}
            )
            still.append(topic)
        else:
            log.info("created internal topic %s", topic.name, extra={"topic": topic.name, "count": topic.partitions})
    return still
