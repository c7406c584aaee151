"""What the open transaction carries: every record, kept until the transaction commits, and sent again after an
abort or by a new producer; records for a topic that is gone wait for it (``TopicWait``) instead.

The ``Transaction`` owns the transaction's states (open, closed for a commit, committing) and ends it; this owns the
records: producing them, reading their delivery reports (an acknowledgement moves their event's offset; a failure
dooms the transaction), and what goes again into the next one.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass

from confluent_kafka import KafkaError, Message

from service.pipeline.ledger import Ledger
from service.pipeline.outlet import REFUSED_FOR_GOOD, Acked, Refused, produce_now
from service.pipeline.partitions import PartitionState
from service.pipeline.records import Record
from service.pipeline.renewal import Producers
from service.pipeline.topic_wait import MISSING, TopicWait

__all__ = ["Carried", "Entry"]


@dataclass(eq=False, slots=True)
class Entry:
    """A record of the open transaction, kept until it commits: an event's (``state``, ``offset``), or a
    changelog record (``state`` None: no offset waits for it)."""

    state: PartitionState | None
    offset: int
    record: Record
    acked: bool = False

    @property
    def partition(self) -> int | None:
        """The input partition it answers (a changelog record's is its own, co-partitioned with the input)."""
        return self.state.number if self.state is not None else self.record.partition


class Carried:
    """The open transaction's records (``entries``) and the ones waiting for their topic (``missing``)."""

    def __init__(
        self, producers: Producers, *, ledger: Ledger, acked: Acked, begin: Callable[[], None],
        fatal: Callable[[KafkaError], bool], wake: Callable[[], None],
    ) -> None:  # fmt: skip
        """``begin``: opens a transaction if none is (before a record is produced); ``fatal``: whether an error
        ends the producer (the transaction then deals with it); ``wake``: turns the loop (a topic looked at)."""
        self._producers = producers
        self._ledger = ledger
        self._acked = acked
        self._begin = begin
        self._fatal = fatal
        self.entries: list[Entry] = []
        self.failed: str | None = None
        """An error that dooms the open transaction (a failed delivery): it is aborted and produced again."""
        self.generation = 0
        """Counts ended transactions: a delivery report of a record sent before is of no transaction now."""
        self.refused: Refused = lambda _state, _offset, _record, _error: None
        self.missing = TopicWait[Entry](lambda entry: entry.record.topic, wake=wake)
        self._suspect: set[str] = set()
        """Topics a delivery failed for in the open transaction: their records wait in ``missing`` after it."""

    def add(self, entry: Entry) -> None:
        """Into the open transaction (behind the records waiting for its topic, if any: the order is kept)."""
        if self.missing.holds(entry.record.topic):
            self.missing.hold(entry, "")
            return
        self.entries.append(entry)
        self.send(entry)

    def back(self) -> Sequence[Entry]:
        """Records whose topics are back (``TopicWait.back``): to be added again."""
        return self.missing.back(self._producers.current)

    def stuck(self) -> None:
        """The open transaction's records were not delivered in time: after its abort, they all wait for a look at
        their topics' metadata (the healthy ones go again at the first look)."""
        self._suspect.update(entry.record.topic for entry in self.entries)

    def ended(self) -> None:
        """The open transaction is over without a commit (aborted, or its producer gone): reports of its records
        are ignored from now on."""
        self.failed = None
        self.generation += 1

    def again(self) -> None:
        """What the ended transaction carried, for partitions still held, goes into the next; records for topics
        a delivery failed for wait for them instead (``missing``), rather than failing the next one too."""
        entries, self.entries = [entry for entry in self.entries if self.held(entry)], []
        suspect, self._suspect = self._suspect, set()
        for entry in entries:
            if entry.record.topic in suspect or self.missing.holds(entry.record.topic):
                self.missing.hold(entry, "a delivery failed or was late")
            else:
                self.entries.append(entry)
                self.send(entry)

    def keep_held(self) -> None:
        """Drops the records of partitions no longer held, in the transaction and waiting for a topic."""
        self.entries = [entry for entry in self.entries if self.held(entry)]
        self.missing.keep(self.held)

    def of(self, partitions: Collection[int], waiting: Iterable[Entry]) -> list[Entry]:
        """The records of ``partitions``, still held: waiting for their topic, in the open transaction, then those
        ``waiting`` for the next one."""
        return [
            entry
            for entry in [*self.missing.waiting, *self.entries, *waiting]
            if entry.partition in partitions and self.held(entry)
        ]

    def held(self, entry: Entry) -> bool:
        if entry.state is not None:
            return self._ledger.holds(entry.state)
        return entry.record.partition is not None and self._ledger.get(entry.record.partition) is not None

    def send(self, entry: Entry) -> None:
        if self._producers.renewing:
            return  # kept in ``entries``: the new producer sends it
        generation = self.generation

        def delivered(error: KafkaError | None, _message: Message) -> None:
            if generation == self.generation:  # else purged or discarded by an abort: sent again since
                self._delivered(entry, error)

        self._begin()
        refusal = produce_now(self._producers.current, entry.record, delivered)
        if refusal is None:
            return
        if isinstance(refusal, KafkaError) and self._fatal(refusal):
            return
        if isinstance(refusal, KafkaError) and refusal.code() in MISSING:  # the topic is gone: not the record's fault
            self.entries = [other for other in self.entries if other is not entry]
            self.missing.hold(entry, refusal.str())
            return
        if isinstance(refusal, KafkaError) and refusal.code() not in REFUSED_FOR_GOOD:
            # The producer's state, not the record (``_STATE`` while an abort is under way): it stays, unacknowledged,
            # and the transaction is aborted and produces it again; replaced, its event would commit with no outcome.
            self.failed = self.failed or refusal.str()
            return
        self._replace(entry, refusal.str() if isinstance(refusal, KafkaError) else refusal)
        if entry in self.entries:
            self.send(entry)

    def _delivered(self, entry: Entry, error: KafkaError | None) -> None:
        if error is not None:
            if self._fatal(error):
                return
            if error.code() in REFUSED_FOR_GOOD:  # producing it again cannot help: what replaces it goes next time
                self._replace(entry, error.str())
            elif error.code() in MISSING or error.code() == KafkaError._MSG_TIMED_OUT:
                self._suspect.add(entry.record.topic)
            self.failed = self.failed or error.str()
            return
        if entry.state is not None and not entry.acked and self._ledger.holds(entry.state):
            entry.acked = True
            self._acked(entry.state, entry.offset, entry.record)

    def _replace(self, entry: Entry, error: str) -> None:
        """A record refused for good: what the publish step writes in its place, or nothing."""
        instead = None if entry.state is None else self.refused(entry.state, entry.offset, entry.record, error)
        if instead is None:
            self.entries = [other for other in self.entries if other is not entry]
        else:
            entry.record = instead
