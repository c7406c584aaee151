"""librdkafka's configuration for imgsweep's consumer and producer: every dotted name in one place."""

from __future__ import annotations

import socket
from typing import Any

from service.settings import Settings

__all__ = ["STATS_INTERVAL_MS", "consumer_config", "producer_config", "reader_config"]

STATS_INTERVAL_MS = 5000

# What only a member of a classic group may set: with group.protocol=consumer (KIP-848) the broker assigns
# partitions and keeps the session, and librdkafka refuses to create a consumer that sets these.
_CLASSIC_GROUP_ONLY = ("partition.assignment.strategy", "session.timeout.ms", "heartbeat.interval.ms")


def consumer_config(settings: Settings, **callbacks: Any) -> dict[str, Any]:
    """librdkafka's dotted names for the consumer, all in one place."""
    kafka = settings.kafka
    config: dict[str, Any] = {
        # Prefetch at most 16 MB per consumer (librdkafka's default is 64 MB): imgsweep holds its own bounded
        # backlog of pending events, so a deep fetch queue only costs memory. Overridable in properties.
        "queued.max.messages.kbytes": 16384,
        **kafka.librdkafka_common(),
        "group.id": kafka.group_id,
        "group.protocol": kafka.group_protocol,
        "client.id": f"imgsweep-{socket.gethostname()}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": kafka.properties.get("auto.offset.reset", "earliest"),
        "partition.assignment.strategy": "cooperative-sticky",
        "max.poll.interval.ms": kafka.max_poll_interval_ms,
        "session.timeout.ms": kafka.session_timeout_ms,
        "statistics.interval.ms": STATS_INTERVAL_MS,
        **callbacks,
    }
    if kafka.group_instance_id is not None:
        # Static membership: a restarted replica with the same id takes its partitions back without waiting
        # for the dead member's session to expire (docs/decisions/0005-group-membership.md).
        config["group.instance.id"] = kafka.group_instance_id
    if kafka.group_protocol == "consumer":
        for name in _CLASSIC_GROUP_ONLY:
            config.pop(name, None)
    return config


def reader_config(settings: Settings, group_id: str) -> dict[str, Any]:
    """A consumer that assigns partitions itself (replay-dlq): never a member of the service's group."""
    config = consumer_config(settings)
    for name in ("group.instance.id", "group.protocol", *_CLASSIC_GROUP_ONLY):
        config.pop(name, None)
    config["group.id"] = group_id
    return config


def producer_config(settings: Settings, **callbacks: Any) -> dict[str, Any]:
    return {
        **{k: v for k, v in settings.kafka.librdkafka_common().items() if not k.startswith("auto.offset")},
        "client.id": f"imgsweep-{socket.gethostname()}",
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        **callbacks,
    }
