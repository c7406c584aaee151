"""What the pipeline reads, commits and answers (consumer lag, records consumed, invalid and committed, outcomes),
labelled by the account whose partitions the records are on, so that a stall alert fires for the account that
stalls and only that account's own wait (quota, pack, halt, budget) excuses it (issue 21, decision 0022).

Behind the router (``IMGSWEEP_KAFKA__REPARTITION``) every partition of the collections topic is one account's:
account ``i`` of the settings' ``A`` accounts owns the partitions ``p % A == i``
(``service.pipeline.collections_topic.CollectionPartitions``). With one account every partition is that
account's. Without the router and with several accounts each partition carries every account's events, so the
label is ``*`` (``SHARED``): those series are any account's, and so are their alerts' excuses. The label's values
are the configured accounts, or ``*`` alone: as few as the accounts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge

from service.vocabulary import OutcomeStatus

__all__ = ["SHARED", "ReadingMetrics", "partition_accounts"]

SHARED: Final = "*"
"""The ``account`` label of a partition every account's events are on (several accounts, no router)."""


def partition_accounts(accounts: Sequence[str], *, by_partition: bool) -> tuple[str, ...]:
    """The ``account`` label's values, in the order that deals the partitions out (``p % len(result)``)."""
    if by_partition or len(accounts) == 1:
        return tuple(accounts)
    return (SHARED,)


class ReadingMetrics:
    """The series by the account of a partition; ``Metrics`` declares them with ``_declare_reading``."""

    _owners: tuple[str, ...]

    def _declare_reading(self, r: CollectorRegistry, owners: tuple[str, ...], error_classes: Sequence[str]) -> None:
        self._owners = owners
        self.events_consumed = Counter(
            "imgsweep_events_consumed", "Input records consumed, by the account of their partition.", ["account"],
            registry=r,
        )  # fmt: skip
        self.invalid_events = Counter(
            "imgsweep_invalid_events",
            "Input records that could not be decoded, by error class and the account of their partition.",
            ["error_class", "account"],
            registry=r,
        )
        self.outcomes = Counter(
            "imgsweep_outcomes",
            "Outcome events acknowledged by the broker, by status and the account of their event's partition.",
            ["status", "account"],
            registry=r,
        )
        self.committed_records = Counter(
            "imgsweep_committed_records",
            "Records the committed offsets moved past, by the account of their partition (seen at each "
            "statistics report of librdkafka's, from the first commit of the partition seen on this replica).",
            ["account"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "imgsweep_consumer_lag_messages",
            "Consumer lag per assigned partition, with the account whose partition it is.",
            ["partition", "account"],
            registry=r,
        )
        for account in owners:
            self.events_consumed.labels(account)
            self.committed_records.labels(account)
            for status in OutcomeStatus:
                self.outcomes.labels(status, account)
            for error_class in error_classes:
                self.invalid_events.labels(error_class, account)

    def partition_account(self, partition: int) -> str:
        """The ``account`` label of a partition of what the pipeline reads."""
        return self._owners[partition % len(self._owners)]

    def consumed(self, partition: int) -> None:
        self.events_consumed.labels(self.partition_account(partition)).inc()

    def outcome_acknowledged(self, status: str, partition: int) -> None:
        self.outcomes.labels(status, self.partition_account(partition)).inc()
