"""One event's failure stays that event's: an error raised while it is handled dead-letters it, the loop goes on.

The decode step guards its own ``submit`` (decoding, and handing the event to hold and route); ``GuardedLanes``
guards the hand-over from the hold step to the route step, which also happens in the hold step's ``poll``; the
publish step guards the building of an event's records. Each failure is ``Ledger.fail`` (an ``internal_error``
dead letter, the event out of the pipeline), a log line with the traceback and
``imgsweep_internal_errors_total{step}``. Errors of the process (the consumer, the producer, the loop) are not
caught here.
"""

from __future__ import annotations

import logging

from service.api.models import DeleteItem
from service.metrics import Metrics
from service.pipeline.ledger import Ledger
from service.pipeline.pending import PendingEvent, SourceRecord
from service.pipeline.poison import HandlingFailed, handling_failed
from service.pipeline.steps.hold import Lanes

__all__ = ["GuardedLanes", "fail_record"]

log = logging.getLogger(__name__)


def fail_record(
    ledger: Ledger,
    metrics: Metrics,
    record: SourceRecord,
    error: HandlingFailed,
    pending: PendingEvent | None = None,
    *,
    step: str,
    cause: BaseException | None = None,
) -> None:
    """Dead-letters an admitted record as ``internal_error`` (its event, if opened, leaves the pipeline)."""
    metrics.internal_errors.labels(step).inc()
    log.error(
        "record sent to the dead-letter topic as internal_error: %s",
        error.reason,
        exc_info=cause,
        extra={"partition": record.partition, "offset": record.offset, "error_class": error.error_class},
    )
    ledger.fail(record, error, pending)


class GuardedLanes:
    """The route step as the hold step sees it (``Lanes``), with an error routing one delist kept to that delist."""

    def __init__(self, *, lanes: Lanes, ledger: Ledger, metrics: Metrics) -> None:
        self._lanes = lanes
        self._ledger = ledger
        self._metrics = metrics

    def submit(self, pending: PendingEvent) -> None:
        with self._ledger.handling(pending.source):
            try:
                self._lanes.submit(pending)
            except Exception as error:  # noqa: BLE001 - one event's failure is never the process's
                fail_record(
                    self._ledger, self._metrics, pending.source, handling_failed("route", error), pending,
                    step="route", cause=error,
                )  # fmt: skip

    def poll(self) -> None:
        self._lanes.poll()

    def close(self) -> None:
        self._lanes.close()

    def join(self, deadline: float) -> None:
        self._lanes.join(deadline)

    def terminate(self) -> None:
        self._lanes.terminate()

    def pending_of(self, collection: str, product_id: str) -> list[PendingEvent]:
        return self._lanes.pending_of(collection, product_id)

    def withdraw(self, pending: PendingEvent) -> list[DeleteItem]:
        return self._lanes.withdraw(pending)
