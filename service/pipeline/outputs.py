"""The outputs' backlog: when outcomes cannot be delivered, no more calls start.

Records produced for outcomes and dead letters wait in the producer until the broker acknowledges them (with
exactly-once, until the open transaction's records are delivered). While the outcome topic is gone or unwritable,
or no broker answers, they pile up; each of them is a call's answer in hand that must not be asked of the API
again. Once ``IMGSWEEP_KAFKA__MAX_UNACKNOWLEDGED`` of them wait (``Ledger.unacknowledged``), every lane's call
step counts as blocked (no new call starts; those under way finish), ``/readyz`` turns 503 with the reason and
``imgsweep_outputs_blocked`` is 1. Acknowledgements bring the count down and calls start again by themselves:
the records were kept and produced again (``Acknowledged``, ``Transaction``), never redone by a call.
"""

from __future__ import annotations

import logging

from service.health import HealthState
from service.metrics import Metrics
from service.pipeline.ledger import Ledger

__all__ = ["OutputsBacklog"]

log = logging.getLogger(__name__)


class OutputsBacklog:
    def __init__(self, *, ledger: Ledger, limit: int, health: HealthState, metrics: Metrics) -> None:
        self._ledger = ledger
        self._limit = limit
        self._health = health
        self._metrics = metrics
        self._blocked = False

    def full(self) -> bool:
        """Whether no call may start: the bound of records waiting for acknowledgement is reached. Cheap (a sum
        over the partitions held); asked by every call step."""
        return self._ledger.unacknowledged() >= self._limit

    def update(self, gone: frozenset[str] = frozenset()) -> None:
        """Once per turn of the loop: the gauges, readiness and a log line when calls stop or start again;
        ``gone``: the output topics that are gone, their records waiting for them (named in the reason)."""
        waiting = self._ledger.unacknowledged()
        blocked = waiting >= self._limit
        self._metrics.unacknowledged_records.set(waiting)
        self._metrics.outputs_blocked.set(1 if blocked else 0)
        if blocked:
            self._health.outputs_blocked = (
                f"{waiting} records wait for Kafka's acknowledgement (IMGSWEEP_KAFKA__MAX_UNACKNOWLEDGED="
                f"{self._limit}): the outcome or dead-letter topic, or the brokers, are unavailable; no call starts"
            )
            if gone:
                self._health.outputs_blocked += f"; topics gone: {', '.join(sorted(gone))}"
        else:
            self._health.outputs_blocked = None
        if blocked != self._blocked:
            self._blocked = blocked
            if blocked:
                log.error(
                    "outcomes cannot be delivered (%d records unacknowledged, the bound): no more API calls start "
                    "until Kafka acknowledges them",
                    waiting,
                    extra={"count": waiting},
                )
            else:
                log.warning("outcomes are delivered again: API calls start again", extra={"count": waiting})
