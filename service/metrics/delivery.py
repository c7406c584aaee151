"""How outcomes reach Kafka: commits, transactions (exactly-once), the state kept on Kafka, and what failed."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["DeliveryMetrics"]


class DeliveryMetrics:
    """The commit step's series, exactly-once delivery's (``service.pipeline.transaction``), the memory of
    deletions' (``service.pipeline.deletions``) and the failures of one record or one commit; a part of
    ``Metrics``."""

    def _declare_state(self, r: CollectorRegistry) -> None:
        """The state kept on Kafka: the memory of deletions (``service.pipeline.deletions``)."""
        self.state_restore_seconds = Histogram(
            "imgsweep_state_restore_seconds",
            "Time to restore the memory of deletions from its changelog after partitions were assigned.",
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.state_restored_records = Counter(
            "imgsweep_state_restored_records", "Changelog records read back on assignment.", registry=r
        )
        self.state_remembered_products = Gauge(
            "imgsweep_state_remembered_products",
            "Products whose deleted images are remembered for a relist, over the partitions held.",
            registry=r,
        )

    def _declare_outputs(self, r: CollectorRegistry) -> None:
        """The outputs' backlog (``service.pipeline.outputs``)."""
        self.unacknowledged_records = Gauge(
            "imgsweep_unacknowledged_records",
            "Records produced (outcomes, dead letters) not yet acknowledged by Kafka.",
            registry=r,
        )
        self.outputs_blocked = Gauge(
            "imgsweep_outputs_blocked",
            "1 while no API call starts because IMGSWEEP_KAFKA__MAX_UNACKNOWLEDGED records wait for Kafka.",
            registry=r,
        )

    def _declare_checkpoints(self, r: CollectorRegistry) -> None:
        """The commit step's series, exactly-once delivery's (``service.pipeline.transaction``), the state's and
        the outputs' backlog."""
        self._declare_state(r)
        self._declare_outputs(r)
        self.commits = Counter("imgsweep_offset_commits", "Offset commits sent.", registry=r)
        self.transaction_commits = Counter(
            "imgsweep_transaction_commits",
            "Transactions committed (exactly-once delivery): outcomes, dead letters and input offsets at once.",
            registry=r,
        )
        self.transaction_aborts = Counter(
            "imgsweep_transaction_aborts",
            "Transactions aborted, by reason; their records were produced again in the next one.",
            ["reason"],
            registry=r,
        )
        self.transaction_commit_seconds = Histogram(
            "imgsweep_transaction_commit_seconds",
            "Time a transaction's commit takes (offsets sent, commit acknowledged), on a thread of its own: the "
            "poll loop goes on meanwhile.",
            buckets=(0.002, 0.005, 0.01, 0.025, 0.04, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 10),
            registry=r,
        )
        self.transaction_loop_seconds = Histogram(
            "imgsweep_transaction_loop_seconds",
            "Time the poll loop spends on each transaction's checkpoint (closing it, reading the offsets, starting "
            "its commit, reading the outcome and opening the next one): what a commit costs the loop.",
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 1),
            registry=r,
        )

    def _failure_counters(self, r: CollectorRegistry) -> None:
        """What went wrong with one record or one commit, and what was done about it."""
        self.commit_failures = Counter(
            "imgsweep_commit_failures",
            "Offset commits the broker refused or that failed on the way (the position is sent again).",
            registry=r,
        )
        self.internal_errors = Counter(
            "imgsweep_internal_errors",
            "Records dead-lettered as internal_error because handling them raised, by step (restart: the record "
            "stopped the process before and was not tried again).",
            ["step"],
            registry=r,
        )
        self.publish_failures = Counter(
            "imgsweep_publish_failures",
            "Records the producer could not write as built, by kind (outcome, dead_letter) and what was done "
            "instead (dead_letter: the event's dead letter; truncated: a shorter copy; dropped: nothing).",
            ["kind", "instead"],
            registry=r,
        )
        self.dead_letters_truncated = Counter(
            "imgsweep_dead_letters_truncated",
            "Dead letters written with a prefix of the record's value (the whole copy was over the producer's "
            "message.max.bytes); the original stays on the input topic.",
            registry=r,
        )
