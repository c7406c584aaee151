"""What this replica knows about each partition it holds: one object a partition, made on assign, dropped once.

A ``PartitionState`` holds the partition's commit watermark (``PartitionOffsets``), the events it has in the
pipeline, the offsets a previous owner already finished (read from the committed offset's metadata) and the
position last committed. ``Partitions`` creates them when partitions are assigned and drops them in one place
(``drop``) when they are revoked or lost, marking their unfinished events abandoned so late results for them
are ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from service.pipeline.offset_metadata import decode_done, encode_done
from service.pipeline.offsets import PartitionOffsets
from service.pipeline.pending import PendingEvent
from service.pipeline.records import Record

__all__ = ["PartitionState", "Partitions", "Position"]


class Position(NamedTuple):
    """A committed offset (the next to read) and the metadata naming done offsets above it."""

    offset: int
    metadata: str


@dataclass(eq=False, slots=True)
class PartitionState:
    number: int
    offsets: PartitionOffsets = field(default_factory=PartitionOffsets)
    events: dict[int, PendingEvent] = field(default_factory=dict)
    """Events in the pipeline (decoded, not yet published), by offset."""
    inherited_done: set[int] = field(default_factory=set)
    """Offsets a previous owner finished above its commit, not yet consumed here: skipped when they come."""
    committed: Position | None = None
    event_time_ms: int | None = None
    """The latest record timestamp seen on the partition: its event time while it has a backlog."""
    next_offset: int | None = None
    """The offset after the last record consumed (compared with the high watermark: caught up or not)."""
    redo_on_restart: set[int] = field(default_factory=set)
    """Finished offsets never named done in the metadata: relists, which a new owner must see again to cancel
    the delists it will redo."""
    truncated: int = 0
    """Done offsets left out of the last position's metadata because the map did not fit."""
    recalled: dict[int, list[Record]] = field(default_factory=dict)
    """Offsets whose records this replica had in hand when it lost the partition, nobody having committed it
    since (``LostAnswers``): when read again, their records are produced instead of calling the API again."""

    @classmethod
    def resumed_from(cls, number: int, committed: Position | None) -> PartitionState:
        """The state of a partition just assigned, from what its previous owner committed."""
        if committed is None:
            return cls(number)
        return cls(number, inherited_done=set(decode_done(*committed)), committed=committed)

    def consumed(self, offset: int, timestamp_ms: int | None) -> None:
        """A record arrived: the partition's position and event time move on."""
        self.next_offset = offset + 1
        if timestamp_ms is not None and (self.event_time_ms is None or timestamp_ms > self.event_time_ms):
            self.event_time_ms = timestamp_ms

    def already_done(self, offset: int) -> bool:
        """Whether a previous owner finished ``offset``; if so it is recorded done here without processing."""
        if offset not in self.inherited_done:
            return False
        self.inherited_done.discard(offset)
        self.offsets.track(offset)
        self.offsets.published(offset, 0)
        return True

    def position(self) -> Position | None:
        """What to commit now: the watermark and the done offsets above it; None if nothing new to say."""
        base = self.offsets.low_watermark()
        if base is None:
            return None
        done = [
            *(offset for offset in self.offsets.finished_above_watermark() if offset not in self.redo_on_restart),
            *self.inherited_done,
        ]
        if self.redo_on_restart:
            self.redo_on_restart = {offset for offset in self.redo_on_restart if offset >= base}
        encoded = encode_done(base, done)
        self.truncated = len([offset for offset in done if offset > base]) - encoded.kept
        if self.committed is None and self.offsets.committable() is None and not encoded.metadata:
            return None  # nothing finished yet: the group's position is where this replica began
        position = Position(base, encoded.metadata)
        return None if position == self.committed else position


class Partitions:
    """The partitions this replica holds now, by number."""

    def __init__(self) -> None:
        self._states: dict[int, PartitionState] = {}
        self._events = 0

    def add(self, event: PendingEvent) -> None:
        """An event entered the pipeline (its partition is held: the decode step checked)."""
        self._states[event.source.partition].events[event.source.offset] = event
        self._events += 1

    def finish(self, event: PendingEvent) -> bool:
        """The event leaves the pipeline for publishing; False if it was abandoned meanwhile."""
        state = self._states.get(event.source.partition)
        # By identity: the same offset read again after the partition came back is another event.
        if event.abandoned or state is None or state.events.get(event.source.offset) is not event:
            return False
        del state.events[event.source.offset]
        self._events -= 1
        return True

    def assign(self, states: Iterable[PartitionState]) -> None:
        for state in states:
            self._states[state.number] = state

    def drop(self, numbers: Iterable[int]) -> list[PendingEvent]:
        """Forgets revoked or lost partitions; returns their unfinished events, now marked abandoned."""
        abandoned: list[PendingEvent] = []
        for number in numbers:
            state = self._states.pop(number, None)
            if state is not None:
                abandoned.extend(state.events.values())
        self._events -= len(abandoned)
        for event in abandoned:
            event.abandoned = True
        return abandoned

    def abandon(self, events: Iterable[PendingEvent]) -> None:
        """Gives up on events (a drain): they stay uncommitted and their next owner does them."""
        for event in events:
            state = self._states.get(event.source.partition)
            if state is not None and state.events.get(event.source.offset) is event:
                del state.events[event.source.offset]
                self._events -= 1
            event.abandoned = True

    def get(self, number: int) -> PartitionState | None:
        return self._states.get(number)

    def __contains__(self, number: int) -> bool:
        return number in self._states

    def __iter__(self) -> Iterator[PartitionState]:
        return iter(list(self._states.values()))

    def __len__(self) -> int:
        return len(self._states)

    def numbers(self) -> frozenset[int]:
        return frozenset(self._states)

    def pending_events(self) -> int:
        return self._events

    def all_events(self) -> list[PendingEvent]:
        return [event for state in self._states.values() for event in state.events.values()]
