"""How a transaction's commit call failed, and an abort under way: what each allows when the coordinator is gone.

librdkafka (``src/rdkafka.h``): ``send_offsets_to_transaction`` is "retriable but not resumable"; when it fails,
``commit_transaction`` was never called, so the transaction certainly did not commit and may be aborted, its
records produced again by any producer. ``commit_transaction`` and ``abort_transaction`` that time out go on in
the background and may be called again to resume. A failed ``commit_transaction`` whose outcome is unknown is
different: the coordinator may hold it committed, so its records must not go again (``Transaction._fatal``).

Seen in the broker-restart reliability test (docs/reliability.md): the broker stopped while AddOffsetsToTxn waited
in librdkafka's out-queue; ``send_offsets_to_transaction`` timed out after 30 s, and the abort that followed never
completed, its EndTxn left in the TxnCoordinator's out-queue (``REQTMOUT … 1 out-queue`` every 30 s, minutes after
the broker was back). ``Aborting.overdue`` says when to stop waiting for it: a new producer with the same
``transactional.id`` (``Producers.fatal``, ``overdue``) fences the old one and the coordinator aborts its transaction.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from service.vocabulary import AbortReason

__all__ = ["Aborting", "CommitFailure", "commit_call"]


@dataclass(frozen=True, slots=True)
class CommitFailure:
    """Why a commit failed; ``maybe_committed``: ``commit_transaction`` itself failed (the outcome is unknown)."""

    error: KafkaError
    maybe_committed: bool


def commit_call(
    producer: Producer, offsets: Sequence[TopicPartition], metadata: object
) -> Callable[[], CommitFailure | None]:
    """The offsets into the open transaction, then its commit: run on a thread of its own (``InFlight``)."""

    def commit() -> CommitFailure | None:
        if offsets:
            try:
                producer.send_offsets_to_transaction(list(offsets), metadata)
            except KafkaException as exc:
                return CommitFailure(exc.args[0], maybe_committed=False)
        try:
            producer.commit_transaction()
        except KafkaException as exc:
            return CommitFailure(exc.args[0], maybe_committed=True)
        return None

    return commit


class Aborting:
    """An abort no coordinator answered yet: librdkafka goes on with it, and each checkpoint asks again."""

    def __init__(self) -> None:
        self.reason: AbortReason | None = None
        self.maybe_committed = False
        """A failed ``commit_transaction`` came first: the transaction may be committed, its records must not go
        again from a new producer."""
        self._since = 0.0

    def begin(self, reason: AbortReason, *, maybe_committed: bool = False) -> bool:
        """Notes an abort asked for; True if none was under way (the first ask: logged)."""
        first = self.reason is None
        if first:
            self._since = time.monotonic()
        self.maybe_committed = self.maybe_committed or maybe_committed
        self.reason = AbortReason.COMMIT_FAILED if AbortReason.COMMIT_FAILED in (self.reason, reason) else reason
        return first

    def overdue(self, seconds: float) -> bool:
        """Under way longer than ``seconds``, for a transaction that certainly did not commit: a new producer may
        take its records over."""
        return self.reason is not None and not self.maybe_committed and time.monotonic() - self._since > seconds

    def end(self) -> None:
        self.reason, self.maybe_committed = None, False
