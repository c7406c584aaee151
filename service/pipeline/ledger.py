"""The ledger: the one owner of every event between consumption and commit.

Steps report to it and never change an event or a partition's offsets themselves:

- decode ``admit``\\s a record (its partition is held, it was not finished by a previous owner), ``open``\\s the
  event it carries, or ``skip``\\s or ``reject``\\s the record;
- hold, route and call ``decide`` images (``cancel`` for images never sent), ``settle`` a relist; call says what
  was deleted (``remember_deleted``) and hold asks it back for a relist (``take_deleted``): the memory of
  deletions (``deletions.py``), whose every change is due for its changelog topic like an outcome;
- publish takes what is finished from ``outbox`` (the single hand-off to publishing), reports what it produced
  (``produced``) and what the broker acknowledged (``acknowledged``);
- commit asks for each partition's ``positions`` and records what was ``committed``;
- a rebalance ``assign``\\s and ``drop``\\s partitions, and ``recall``\\s the answers kept for a lost partition that
  came back; a drain ``abandon``\\s events no call has touched.

Everything here runs on the poll loop's thread. The state behind it (``Partitions``: per partition, the commit
watermark, the events in flight, the done offsets inherited from a previous owner) is the boundary that a
transactional, durable ledger replaces: whatever it must survive passes through these methods.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

from service.api.models import DeleteItem, ItemResult, ItemStatus
from service.pipeline.deletions import ChangelogRecord, DeletionMemory, Product
from service.pipeline.events import InvalidEvent
from service.pipeline.partitions import Partitions, PartitionState, Position
from service.pipeline.pending import PendingEvent, SourceRecord
from service.pipeline.poison import HandlingFailed, PoisonMarks
from service.pipeline.records import Record
from service.settings import StateSettings
from service.vocabulary import CancelReason

__all__ = ["Due", "Finished", "Ledger", "Recalled", "Rejected", "StateChange"]


@dataclass(frozen=True, slots=True)
class Finished:
    """An event whose every image is decided: its outcome (and a dead-letter copy if one failed) is due."""

    pending: PendingEvent


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that is not a usable event, or whose handling failed: it goes to the dead-letter topic as it came
    (``invalid_event``, or ``internal_error`` for a ``HandlingFailed``)."""

    record: SourceRecord
    error: InvalidEvent | HandlingFailed


@dataclass(frozen=True, slots=True)
class StateChange:
    """A change of the state kept on Kafka (the memory of deletions), for its changelog topic."""

    record: ChangelogRecord


@dataclass(frozen=True, slots=True)
class Recalled:
    """A record read again after its partition came back from a loss: the records this replica had in hand for
    it are produced again as they were, with no call (``LostAnswers``)."""

    record: SourceRecord
    records: tuple[Record, ...]


Due = Finished | Rejected | StateChange | Recalled
"""What the outbox hands to publishing."""


class Ledger:
    def __init__(
        self, topic: str, memory: DeletionMemory | None = None, *, marks: PoisonMarks | None = None,
        share_of: Callable[[int], int] | None = None,
    ) -> None:  # fmt: skip
        """``memory``: the memory of deletions (default: the defaults' bounds); ``marks``: which record is being
        handled, remembered across a restart (default: in memory only); ``share_of``: which account's share of
        the partitions a partition is in, when each account has its own (the collections topic, decision 0022;
        default: one share, all of them)."""
        self.topic = topic
        self.share_of = share_of
        self._partitions = Partitions()
        self._memory = memory or DeletionMemory.from_settings(StateSettings())
        self._outbox: deque[Due] = deque()
        self._marks = marks or PoisonMarks(None, group="")

    # ---- decode ----------------------------------------------------------------------------------------------

    def held(self, record: SourceRecord) -> bool:
        """Whether a consumed record's partition is held here (else it was fetched before a revoke and its new
        owner reads it)."""
        return record.topic == self.topic and record.partition in self._partitions

    def admit(self, record: SourceRecord) -> bool:
        """A held record was consumed: whether it is to be processed, False if a previous owner finished it (the
        commit's metadata says so) or if this replica had its answer in hand when it lost the partition (its records
        are due again: ``recall``)."""
        state = self._partitions.get(record.partition)
        if state is None:
            return False
        state.consumed(record.offset, record.timestamp_ms)
        if state.already_done(record.offset):
            return False
        state.offsets.track(record.offset)
        recalled = state.recalled.pop(record.offset, None)
        if recalled:
            self._outbox.append(Recalled(record, tuple(recalled)))
            return False
        return True

    def open(self, pending: PendingEvent) -> None:
        """A decoded event enters the pipeline (its record was admitted)."""
        self._partitions.add(pending)

    def skip(self, record: SourceRecord) -> None:
        """An admitted record that needs no outcome (an event of another type): done as it is."""
        self._finish_without_outcome(record)

    def reject(self, record: SourceRecord, error: InvalidEvent) -> None:
        """An admitted record that is not a usable event: its dead letter is due."""
        self._outbox.append(Rejected(record, error))

    # ---- poison records: any step (docs/decisions/0018-poison-records.md) -----------------------------------

    def handling(self, record: SourceRecord) -> AbstractContextManager[None]:
        """Marks an admitted record as being handled while the block runs: if the process dies inside, the next
        one counts a failure for its offset."""
        return self._marks.handling(record)

    def condemned(self, record: SourceRecord) -> int:
        """How many processes an admitted record stopped, if it is not to be tried again (else 0)."""
        return self._marks.failures(record) if self._marks.condemned(record) else 0

    def fail(self, record: SourceRecord, error: HandlingFailed, pending: PendingEvent | None = None) -> None:
        """Handling an admitted record raised, or it stopped the process before: its dead letter is due
        (``internal_error``). The event, if it was opened and is not finished, leaves the pipeline; late results
        for it are ignored."""
        if pending is not None:
            state = self._partitions.get(record.partition)
            if state is None or state.events.get(record.offset) is not pending:
                return  # finished already (its outcome is due), or no longer this replica's
            self._partitions.abandon([pending])
        self._marks.forget(record)
        self._outbox.append(Rejected(record, error))

    # ---- hold, route, call -----------------------------------------------------------------------------------

    def decide(self, pending: PendingEvent, results: Iterable[ItemResult]) -> None:
        """Images of an event are decided; once all are, and the event is still this replica's, it is finished."""
        if pending.abandoned:
            return
        for result in results:
            pending.decide(result)
        if pending.complete and self._partitions.finish(pending):
            self._outbox.append(Finished(pending))

    def cancel(self, pending: PendingEvent, items: Iterable[DeleteItem], reason: CancelReason) -> None:
        """Images never sent; a relist also stops later tries of the event's images under way."""
        if reason is CancelReason.RELISTED:
            pending.relisted = True
        self.decide(pending, (ItemResult(item, ItemStatus.CANCELLED, reason) for item in items))

    def took_part(self, pending: PendingEvent, *, attempts: int, api_calls: int) -> None:
        """Once per call the event had images in: the calls it cost and the tries it took."""
        pending.took_part(attempts=attempts, api_calls=api_calls)

    def settle_relist(self, relist: PendingEvent, readd: list[ItemResult]) -> None:
        """A relist is handled: an outcome naming the images deleted before it (``readd``), or none.

        A relist is never named done in the commit's metadata: a new owner of the partition must see it again
        to cancel the delists it will redo."""
        state = self._partitions.get(relist.source.partition)
        if state is not None:
            state.redo_on_restart.add(relist.source.offset)
        for result in readd:  # a relist's images are not its event's: it is finished whatever they are
            relist.decide(result)
        if not self._partitions.finish(relist):
            return
        if readd:
            self._outbox.append(Finished(relist))
        else:
            self._finish_without_outcome(relist.source)

    def remember_deleted(self, partition: int, collection: str, product_id: str, images: Sequence[str]) -> None:
        """Images of a product of ``partition`` were deleted (by one call): remembered for a later relist."""
        if partition in self._partitions:
            self._outbox.append(StateChange(self._memory.deleted(partition, collection, product_id, images)))

    def take_deleted(self, partition: int, product: Product) -> list[str]:
        """The images of ``product`` deleted before its relist (on ``partition``), forgotten once told."""
        images, tombstone = self._memory.take(partition, product)
        if tombstone is not None:
            self._outbox.append(StateChange(tombstone))
        return images

    def restore(self, partition: int, records: Iterable[tuple[bytes | None, bytes | None]]) -> int:
        """A partition just assigned: its memory of deletions, from the changelog. Returns products remembered."""
        return self._memory.restore(partition, records)

    def recall(
        self, state: PartitionState, answers: Mapping[int, list[Record]], changes: Sequence[ChangelogRecord]
    ) -> None:
        """A partition back from a loss, its committed position unmoved: the records this replica had in hand for
        its offsets are produced when they are read again (``admit``), and the changes of its memory of deletions
        that the aborted transaction carried are remembered again and due for the changelog once more."""
        state.recalled.update(answers)
        self._memory.restore(state.number, ((change.key, change.value) for change in changes))
        self._outbox.extend(StateChange(change) for change in changes)

    def remembered(self) -> int:
        """Products whose deletions are remembered, over the partitions held."""
        return len(self._memory)

    # ---- publish ---------------------------------------------------------------------------------------------

    def outbox(self) -> list[Due]:
        """What is due for publishing, taken once, in the order it was finished."""
        due = list(self._outbox)
        self._outbox.clear()
        return due

    def produced(self, source: SourceRecord, records: int) -> PartitionState | None:
        """``records`` were produced for the record at ``source``; None if its partition is no longer held."""
        state = self._partitions.get(source.partition)
        if state is not None:
            state.offsets.published(source.offset, records)
        return state

    def holds(self, state: PartitionState) -> bool:
        """Whether ``state`` is still the partition's (revoked and assigned again is another one)."""
        return self._partitions.get(state.number) is state

    @staticmethod
    def acknowledged(state: PartitionState, offset: int) -> None:
        """The broker acknowledged one record produced for ``offset``."""
        state.offsets.acknowledged(offset)

    # ---- commit ----------------------------------------------------------------------------------------------

    def positions(self, only: Collection[int] | None = None) -> list[tuple[PartitionState, Position]]:
        """The partitions whose position moved since their last commit, with that position."""
        states = [state for state in self._partitions if only is None or state.number in only]
        return [(state, position) for state in states if (position := state.position()) is not None]

    @staticmethod
    def committed(moved: Iterable[tuple[PartitionState, Position]]) -> None:
        for state, position in moved:
            state.committed = position

    def committed_offsets(self) -> dict[int, int]:
        return {state.number: state.committed.offset for state in self._partitions if state.committed}

    def truncated(self) -> int:
        """Done offsets left out of the last positions' metadata because the map did not fit."""
        return sum(state.truncated for state in self._partitions)

    # ---- rebalance and drain ---------------------------------------------------------------------------------

    def assign(self, states: Iterable[PartitionState]) -> None:
        self._partitions.assign(states)

    def drop(self, numbers: Iterable[int]) -> list[PendingEvent]:
        """Revoked or lost partitions: their unfinished events are abandoned (late results are ignored)."""
        numbers = list(numbers)
        dropped = self._partitions.drop(numbers)
        self._memory.forget(numbers)
        self._outbox = deque(item for item in self._outbox if self.get(_partition(item)) is not None)
        return dropped

    def abandon(self, events: Iterable[PendingEvent]) -> None:
        """Gives up on events (a drain): they stay uncommitted and their next owner does them."""
        self._partitions.abandon(events)

    # ---- what the loop asks ----------------------------------------------------------------------------------

    def get(self, number: int) -> PartitionState | None:
        return self._partitions.get(number)

    def states(self) -> list[PartitionState]:
        return list(self._partitions)

    def numbers(self) -> frozenset[int]:
        return self._partitions.numbers()

    def pending_events(self) -> int:
        """Events in the pipeline: decoded, not yet handed to publishing."""
        return self._partitions.pending_events()

    def pending_beside(self, partition: int) -> int:
        """Events in the pipeline from the partitions of ``partition``'s share: what ``MAX_PENDING_EVENTS`` bounds,
        so that one account's waiting events never stop another account's partitions."""
        if self.share_of is None:
            return self._partitions.pending_events()
        share = self.share_of(partition)
        return sum(len(state.events) for state in self._partitions if self.share_of(state.number) == share)

    def unacknowledged(self) -> int:
        """Records produced for events of the partitions held and not yet acknowledged by the broker (with
        exactly-once, the open transaction's records not yet delivered): the outputs' backlog."""
        return sum(state.offsets.unacknowledged() for state in self._partitions)

    def events(self) -> list[PendingEvent]:
        return self._partitions.all_events()

    def _finish_without_outcome(self, record: SourceRecord) -> None:
        state = self._partitions.get(record.partition)
        if state is not None:
            state.offsets.published(record.offset, 0)


def _partition(item: Due) -> int:
    if isinstance(item, Finished):
        return item.pending.source.partition
    return item.record.partition
