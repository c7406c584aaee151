"""A new transactional producer, in the same process, when librdkafka made the old one fatal without a fence.

Why the process does not just exit: its successor would read the input from the last committed offsets and call
the API again for every event whose outcome was in hand but not committed (the images are then absent: the calls
are paid twice). A producer's fatal state is librdkafka's, not the transactional id's: a new producer with the
same ``transactional.id`` fences the old one (``init_transactions`` bumps the epoch, and the coordinator aborts
whatever transaction it still has open), and the records the ``Transaction`` kept go into its first transaction.

The case that needs it (docs/decisions/0020): an output topic deleted while a transaction is open. The
AddPartitionsToTxn that names it fails with UNKNOWN_TOPIC_OR_PART; librdkafka still counts the request as sent
(``txn_req_cnt``, src/rdkafka_txnmgr.c, "increase the txn_req_cnt back up as if they were received"), so
``abort_transaction`` sends EndTxn(abort) for a transaction the coordinator never saw begin (its state is
CompleteCommit, or Empty); the coordinator refuses with INVALID_TXN_STATE and librdkafka's EndTxn handler makes
that fatal (librdkafka issue #4849, open). A fence (another producer with this id: a second pod of the same
name) is not renewed: the other one owns the id, and this process exits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

from confluent_kafka import KafkaError, KafkaException, Producer

from service.metrics import Metrics
from service.pipeline.halt import Halt
from service.pipeline.inflight import InFlight
from service.vocabulary import AbortReason

__all__ = ["FENCED", "INIT_TIMEOUT_SECONDS", "ProducerRenewal", "Producers", "fenced"]

log = logging.getLogger(__name__)

INIT_TIMEOUT_SECONDS: Final = 30.0
"""``init_transactions`` of a new producer: the coordinator first aborts the old one's open transaction."""
RETRY_SECONDS: Final = (1.0, 30.0)
"""A new producer that could not start (no broker answered): the next one is made this long after, doubling."""
FENCED: Final = frozenset({KafkaError._FENCED, KafkaError.PRODUCER_FENCED})


def fenced(error: KafkaError) -> bool:
    """Another producer with this ``transactional.id`` took over: this process must stop producing."""
    return error.code() in FENCED


class ProducerRenewal:
    """Makes a new transactional producer on a thread of its own (``init_transactions`` blocks for round trips
    to the coordinator, longer while it aborts the old producer's transaction); the loop asks ``outcome``."""

    def __init__(self, make: Callable[[], Producer], *, finished: Callable[[], None] = lambda: None) -> None:
        """``make``: a producer with the same configuration (and ``transactional.id``) as the first;
        ``finished``: called from the thread once a new producer is ready or failed (wakes the loop)."""
        self._make = make
        self._finished = finished
        self._under_way: InFlight[Producer] | None = None
        self._failures = 0

    @property
    def under_way(self) -> bool:
        return self._under_way is not None

    def begin(self, old: Producer) -> None:
        """Starts making the new producer; ``old`` (fatal, its records purged) is let go on that thread."""
        if self._under_way is not None:
            return
        wait = 0.0 if not self._failures else min(RETRY_SECONDS[1], RETRY_SECONDS[0] * 2 ** (self._failures - 1))
        make = self._make

        def renew() -> Producer:
            try:
                old.purge()  # its queued records belong to no transaction any more: never delivered
            except (KafkaException, RuntimeError) as error:
                log.debug("purging the old producer: %s", error)
            time.sleep(wait)
            producer = make()
            producer.init_transactions(INIT_TIMEOUT_SECONDS)
            return producer

        self._under_way = InFlight(renew, finished=self._finished)

    def outcome(self) -> Producer | KafkaError | None:
        """None while the new producer is being made; then the new producer (initialised), or why it could not
        start (``begin`` again, unless it is a fence)."""
        under_way = self._under_way
        if under_way is None or not under_way.done():
            return None
        self._under_way = None
        try:
            producer = under_way.result()
        except KafkaException as exc:
            self._failures += 1
            error: KafkaError = exc.args[0]
            return error
        self._failures = 0
        return producer


class Producers:
    """The transaction's producer now, and what a fatal error of it means: the process's end (a fence, or no way to
    make another), or a new producer made while the transaction keeps its records (``renewing``)."""

    def __init__(
        self, first: Producer, make: Callable[[], Producer] | None, *, halt: Halt, metrics: Metrics,
        wake: Callable[[], None],
    ) -> None:  # fmt: skip
        self.current = first
        self._halt = halt
        self._metrics = metrics
        self._renewal = None if make is None else ProducerRenewal(make, finished=wake)

    @property
    def renewing(self) -> bool:
        return self._renewal is not None and self._renewal.under_way

    def fatal(self, error: KafkaError, *, renew: bool = True, carrying: int = 0, overdue: bool = False) -> bool:
        """Whether ``error`` ends this producer: a fatal one, or any when ``overdue`` (an abort of a transaction
        that surely did not commit never finished: ``ending.Aborting``). Fenced (or ``renew`` False, or no
        ``make``): the halt trips for an exit. Else a new producer is being made from now on (``took_over``);
        ``carrying``: records kept for it."""
        if not (error.fatal() or fenced(error) or overdue):
            return False
        if fenced(error) or not renew or self._renewal is None:
            self._halt.trip(f"Kafka producer fatal error in its transaction: {error.str()}", exit=True)
            return True
        if not self._renewal.under_way:
            log.error(
                "the producer failed for good, or its abort never finished (%s): a new one with the same "
                "transactional.id takes over; the records of its transaction are kept and produced again, no API "
                "call is made again",
                error.str(),
                extra={"count": carrying},
            )
            self._metrics.transaction_aborts.labels(AbortReason.PRODUCER_FAILED).inc()
            self._renewal.begin(self.current)
        return True

    def took_over(self) -> bool | None:
        """None while a new producer is being made (it may have failed to start: then another is begun, after a
        wait); True the first time it is asked once a new one is ``current``; else False. Never blocks."""
        renewal = self._renewal
        if renewal is None or not renewal.under_way:
            return False
        outcome = renewal.outcome()
        if outcome is None:
            return None
        if isinstance(outcome, KafkaError):
            if fenced(outcome):
                self._halt.trip(f"Kafka producer fenced while taking over: {outcome.str()}", exit=True)
            else:
                log.warning("a new producer could not start, trying again: %s", outcome.str())
                renewal.begin(self.current)
            return None
        self.current = outcome
        return True
