"""Answers in hand for lost partitions: kept through a loss, used again if the same partitions come back unmoved.

A Kafka outage longer than the session timeout makes librdkafka declare the partitions *lost* (its own session
timer, ``rd_kafka_cgrp_session_timeout_check``: "revoking assignment and rejoining group"). The open transaction
must not commit their records (a new owner may be doing them), so it is aborted; before this module, what the
API had answered for them was forgotten, and when the cluster came back and the same replica got the same
partitions again (static membership), it called the API again for every event the aborted transaction carried.

On a loss, the records the transaction carried for the lost partitions (outcomes, dead-letter copies, the
changelog records of the memory of deletions) are kept here with the partition's *baseline*: the position the
group last committed for it, as this replica knows it. When partitions are assigned, a partition whose committed
position (read with ``isolation.level=read_committed``: librdkafka then asks for stable offsets) is still exactly
the baseline was committed by nobody in between: nothing of what was kept is in the outcome topic, so its records
are used again (``Ledger.recall``): each kept offset's records are produced when it is read again, with no call,
and the memory of deletions gets the kept changes back. A partition whose position moved was committed by another
owner, who did that work: its answers are discarded. Kafka Streams instead closes lost tasks dirty and redoes
their uncommitted input (``TaskManager.handleLostAll``); its processing is cheap to redo, an API call is not.

Not kept: a partition whose answers hold a relist's outcome (the hold step must see that relist again, in order,
to cancel the delists read again before it: the partition is redone as before), and partitions over ``max_bytes``
(64 MiB by default; the open transaction is already bounded by ``IMGSWEEP_KAFKA__MAX_UNACKNOWLEDGED``). Answers
are dropped after ``keep_seconds`` (10 minutes) if the partitions never came back. Calls in flight at the loss are
not kept: their events are read again and called again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

from service.pipeline.carried import Entry
from service.pipeline.deletions import ChangelogRecord
from service.pipeline.ledger import Ledger
from service.pipeline.partitions import PartitionState, Position
from service.pipeline.records import Record
from service.vocabulary import OutcomeStatus

__all__ = ["KEEP_BYTES", "KEEP_SECONDS", "LostAnswers", "lost_answers"]

log = logging.getLogger(__name__)

KEEP_BYTES: Final = 64 * 1024 * 1024
"""At most this much is kept over every lost partition (records' keys, values and headers)."""
KEEP_SECONDS: Final = 600.0
"""Answers of partitions that have not come back by then are dropped."""


class Carrier(Protocol):
    """What carries the records not yet committed (``Transaction``)."""

    def carried(self, partitions: frozenset[int]) -> list[Entry]: ...


class Settles(Protocol):
    """The checkpoint (``TransactionStep``): waits for the commit under way and records its positions."""

    def settle(self) -> None: ...


@dataclass(slots=True)
class _Answers:
    """One lost partition's answers: the records of each offset, the memory's changes, and the baseline."""

    baseline: Position | None
    at: float
    events: dict[int, list[Record]] = field(default_factory=dict)
    changes: list[ChangelogRecord] = field(default_factory=list)
    size: int = 0

    def add(self, entry: Entry) -> None:
        record = entry.record
        self.size += record.size()
        if entry.state is None:
            self.changes.append(ChangelogRecord(entry.partition or 0, record.key or b"", record.value))
        else:
            self.events.setdefault(entry.offset, []).append(record)

    def relists(self) -> bool:
        """Whether a relist's outcome is among them (see the module's docstring)."""
        records = (record for records in self.events.values() for record in records)
        return any(record.kind == "outcome" and record.label == OutcomeStatus.RE_ADD_REQUIRED for record in records)


class LostAnswers:
    def __init__(
        self, carrier: Carrier, checkpoint: Settles, ledger: Ledger, *, max_bytes: int = KEEP_BYTES,
        keep_seconds: float = KEEP_SECONDS, clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self._carrier = carrier
        self._checkpoint = checkpoint
        self._ledger = ledger
        self._max_bytes = max_bytes
        self._keep_seconds = keep_seconds
        self._clock = clock
        self._kept: dict[int, _Answers] = {}

    @property
    def partitions(self) -> frozenset[int]:
        """The partitions whose answers are kept now."""
        return frozenset(self._kept)

    def lost(self, partitions: frozenset[int]) -> None:
        """Before the lost partitions are dropped: their carried records and their baselines are kept."""
        self._checkpoint.settle()  # a commit under way moves the baselines it covers
        self._expire()
        now = self._clock()
        kept: dict[int, _Answers] = {}
        for number in partitions:
            state = self._ledger.get(number)
            if state is None:
                continue
            answers = kept[number] = _Answers(state.committed, now)
            for offset, records in state.recalled.items():  # recalled after an earlier loss, not read again yet
                for record in records:
                    answers.add(Entry(state, offset, record))
        for entry in self._carrier.carried(partitions):
            if entry.partition in kept:
                kept[entry.partition].add(entry)
        events, dropped = 0, 0
        for number, answers in sorted(kept.items()):
            held = sum(other.size for other in self._kept.values())
            if not (answers.events or answers.changes):
                continue
            if answers.relists() or held + answers.size > self._max_bytes:
                dropped += len(answers.events)
                continue
            self._kept[number] = answers
            events += len(answers.events)
        if events or dropped:
            log.warning(
                "partitions lost: the answers in hand are kept for when they come back",
                extra={"count": events, "state": f"{len(self._kept)} partitions kept, {dropped} events' answers not"},
            )

    def assigned(self, states: Iterable[PartitionState], committed: Mapping[int, Position | None]) -> None:
        """Partitions just assigned (their memory of deletions restored): the kept answers of each one whose group
        position is still its baseline are used again (``Ledger.recall``); the others' are discarded.
        ``committed``: the positions read, a partition missing if it could not be read."""
        self._expire()
        for state in states:
            answers = self._kept.pop(state.number, None)
            if answers is None:
                continue
            if state.number not in committed or committed[state.number] != answers.baseline:
                log.warning(
                    "a lost partition came back committed by another owner: its kept answers are discarded",
                    extra={"partition": state.number, "count": len(answers.events)},
                )
                continue
            start = answers.baseline.offset if answers.baseline is not None else 0
            events = {
                offset: records
                for offset, records in answers.events.items()
                if offset >= start and offset not in state.inherited_done
            }
            self._ledger.recall(state, events, answers.changes)
            log.info(
                "a lost partition came back unmoved: its answers in hand are used again, without calls",
                extra={"partition": state.number, "count": len(events)},
            )

    def _expire(self) -> None:
        horizon = self._clock() - self._keep_seconds
        for number in [number for number, answers in self._kept.items() if answers.at < horizon]:
            del self._kept[number]
            log.info("answers kept for a lost partition dropped: it never came back", extra={"partition": number})


def lost_answers(carrier: Carrier | None, checkpoint: Settles, ledger: Ledger) -> LostAnswers | None:
    """Exactly-once's keeper of lost answers; None with at-least-once: there each record is produced on its own
    and librdkafka still delivers it after the outage, but the events' offsets are not committed, so they are read
    again and called again, their outcomes published twice (at-least-once allows it; docs/decisions/0024)."""
    return None if carrier is None else LostAnswers(carrier, checkpoint, ledger)
