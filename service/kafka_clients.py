"""librdkafka's configuration for imgsweep's consumer and producer: every dotted name in one place."""

from __future__ import annotations

import socket
from typing import Any

from service.settings import Settings

__all__ = ["STATS_INTERVAL_MS", "consumer_config", "producer_config"]

STATS_INTERVAL_MS = 5000


def consumer_config(settings: Settings, **callbacks: Any) -> dict[str, Any]:
    """librdkafka's dotted names for the consumer, all in one place."""
    kafka = settings.kafka
    return {
        # Prefetch at most 16 MB per consumer (librdkafka's default is 64 MB): imgsweep holds its own bounded
        # backlog of pending events, so a deep fetch queue only costs memory. Overridable in properties.
        "queued.max.messages.kbytes": 16384,
        **kafka.librdkafka_common(),
        "group.id": kafka.group_id,
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


def producer_config(settings: Settings, **callbacks: Any) -> dict[str, Any]:
    return {
        **{k: v for k, v in settings.kafka.librdkafka_common().items() if not k.startswith("auto.offset")},
        "client.id": f"imgsweep-{socket.gethostname()}",
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        **callbacks,
    }
