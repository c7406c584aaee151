"""The router stage's series (``service.router``, decision 0022): what it forwarded to the collections topic and
its commits of the input's offsets."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["FORWARD_KINDS", "RouterMetrics"]

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
        self.last_commit = Gauge(
            "imgsweep_router_last_commit_timestamp_seconds",
            "When the router last committed the input's offsets (Unix time; 0 before the first).",
            registry=registry,
        )
