"""The router stage's series (``service.router``, decision 0022): what it forwarded to the collections topic and
its commits of the input's offsets."""

from __future__ import annotations

import json
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["FORWARD_KINDS", "RouterMetrics", "router_lag"]

FORWARD_KINDS = ("event", "unroutable", "truncated")
"""A forwarded record: an event of a known collection; a record with no account's collection (not an event, not
readable: the pipeline dead-letters or skips it); a record too large to forward whole (a truncated copy)."""


class RouterMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.forwarded = Counter(
            "imgsweep_router_forwarded_records",
            "Input records the router forwarded to the collections topic, by kind (event, unroutable, truncated).",
            ["kind"],
            registry=registry,
        )
        for kind in FORWARD_KINDS:
            self.forwarded.labels(kind)
        self.commits = Counter(
            "imgsweep_router_commits",
            "Commits of the input's offsets by the router (with exactly-once, its transactions).",
            registry=registry,
        )
        self.commit_failures = Counter(
            "imgsweep_router_commit_failures",
            "Router commits (transactions) that failed and were aborted: their records are read and forwarded again.",
            registry=registry,
        )
        self.lag = Gauge(
            "imgsweep_router_lag_messages",
            "Input records the router has not read yet, over the partitions it holds (what it has not forwarded).",
            registry=registry,
        )
        self.purged = Counter(
            "imgsweep_router_purged_records",
            "Records of the collections topic deleted below the pipeline's committed offsets (DeleteRecords, every "
            "30 s, as Kafka Streams purges repartition topics); from the second purge of each partition on.",
            registry=registry,
        )
        self.purge_failures = Counter(
            "imgsweep_router_purge_failures",
            "Rounds of the collections topic's purge that failed (tried again 30 s later; retention bounds it).",
            registry=registry,
        )
        self.last_commit = Gauge(
            "imgsweep_router_last_commit_timestamp_seconds",
            "When the router last committed the input's offsets (Unix time; 0 before the first).",
            registry=registry,
        )


def router_lag(stats_json: str, topic: str) -> int | None:
    """From librdkafka's statistics: the last stable offset less the router's position, summed over the partitions
    it reads (the router commits what it read each turn, in its transaction, which librdkafka's own
    ``consumer_lag`` does not see); None if the statistics say nothing of them."""
    try:
        stats: dict[str, Any] = json.loads(stats_json)
    except ValueError:
        return None
    partitions = stats.get("topics", {}).get(topic, {}).get("partitions", {})
    lags = [
        max(0, end - position)
        for name, partition in partitions.items()
        if name != "-1"
        and isinstance(end := partition.get("ls_offset", -1), int)
        and isinstance(position := partition.get("app_offset", -1), int)
        and end >= 0
        and position >= 0
    ]
    return sum(lags) if lags else None
