"""One state per held partition: resuming from a previous owner's metadata, positions to commit, event counts."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from service.pipeline.events import DelistEvent
from service.pipeline.offset_metadata import decode_done, encode_done
from service.pipeline.partitions import Partitions, PartitionState, Position
from service.pipeline.pending import PendingEvent, SourceRecord

TOPIC = "catalog.product-delisted"
_EVENT = DelistEvent(event_id="e", collection_name="shop", product_id="p", image_ids=("1.jpg",), source_format="json")


def pending(partition: int, offset: int) -> PendingEvent:
    source = SourceRecord(TOPIC, partition, offset, b"p", b"{}", [], None)
    return PendingEvent(_EVENT, source, datetime(2026, 11, 27, tzinfo=UTC))


def committed_with_done(base: int, done: set[int]) -> Position:
    return Position(base, encode_done(base, done).metadata)


def finish(state: PartitionState, offset: int, records: int = 1) -> None:
    """The event at ``offset`` published ``records`` records and the broker acknowledged them all."""
    state.offsets.published(offset, records)
    for _ in range(records):
        state.offsets.acknowledged(offset)


# --- PartitionState ----------------------------------------------------------------------------------------------


def test_a_partition_nobody_committed_starts_empty() -> None:
    state = PartitionState.resumed_from(4, None)
    assert (state.number, state.committed, state.inherited_done) == (4, None, set())
    assert state.position() is None  # nothing consumed


def test_resuming_reads_the_done_offsets_from_the_metadata() -> None:
    committed = committed_with_done(100, {102, 105})
    state = PartitionState.resumed_from(3, committed)
    assert state.committed == committed
    assert state.inherited_done == {102, 105}


def test_metadata_of_another_tool_means_nothing_is_inherited() -> None:
    state = PartitionState.resumed_from(3, Position(100, "checkpoint=42"))
    assert state.inherited_done == set()
    assert state.committed == Position(100, "checkpoint=42")


def test_an_offset_done_before_is_skipped_and_counts_as_finished() -> None:
    state = PartitionState.resumed_from(0, committed_with_done(100, {102, 105}))
    state.offsets.track(100)
    assert not state.already_done(100)  # not in the map: processed here
    state.offsets.track(101)
    assert state.already_done(102)
    assert not state.already_done(102)  # recorded once: it is no longer inherited but done here
    assert state.inherited_done == {105}
    assert state.offsets.finished_above_watermark() == [102]
    # Nothing moved yet: 100 is still under way and the map names the same offsets as the committed one.
    assert state.position() is None

    finish(state, 100)
    assert state.position() == committed_with_done(101, {102, 105})  # 105 is not consumed yet, still named
    finish(state, 101)
    # 102 was done before: the watermark passes over it; 105, inherited but not yet consumed, stays in the map.
    assert state.position() == committed_with_done(103, {105})
    state.committed = state.position()
    assert state.position() is None  # nothing new since that commit

    state.offsets.track(103)
    state.offsets.track(104)
    assert state.already_done(105)
    finish(state, 104)
    finish(state, 103)
    assert state.position() == Position(106, "")
    assert state.truncated == 0


def test_no_position_until_something_finished() -> None:
    state = PartitionState.resumed_from(0, None)
    state.offsets.track(7)
    state.offsets.track(8)
    assert state.position() is None  # the group's position stays where this replica began
    finish(state, 8)
    position = state.position()
    assert position is not None
    assert position.offset == 7  # 7 holds the watermark back; 8 is named in the metadata
    assert decode_done(7, position.metadata) == {8}
    finish(state, 7)
    assert state.position() == Position(9, "")


def test_a_resumed_partition_says_nothing_new_until_it_moves() -> None:
    committed = committed_with_done(50, {52})
    state = PartitionState.resumed_from(0, committed)
    assert state.position() is None  # nothing consumed
    state.offsets.track(50)
    assert state.position() is None  # the same base, the same map
    finish(state, 50)
    assert state.position() == committed_with_done(51, {52})


def test_a_map_too_long_for_the_metadata_counts_what_was_left_out() -> None:
    state = PartitionState.resumed_from(0, None)
    for offset in range(0, 40_000):
        state.offsets.track(offset)
    for offset in range(2, 40_000, 2):
        finish(state, offset)
    position = state.position()
    assert position is not None
    done_above = 19_999
    kept = len(decode_done(0, position.metadata))
    assert 0 < kept < done_above
    assert state.truncated == done_above - kept


# --- Partitions: a state machine over add, finish, drop, abandon --------------------------------------------------


class PartitionsMachine(RuleBasedStateMachine):
    """Drives ``Partitions`` as the pipeline does and checks its count against a model of what it holds.

    A dropped partition may be assigned again and its offsets consumed again: late ``finish`` calls for the old
    events must then leave the new ones alone.
    """

    events = Bundle("events")

    def __init__(self) -> None:
        super().__init__()
        self.partitions = Partitions()
        self.held: dict[int, dict[int, PendingEvent]] = {}
        self.next_offset: dict[int, int] = {}
        self.finished: list[PendingEvent] = []
        self.abandoned: list[PendingEvent] = []
        self.added: list[PendingEvent] = []

    @rule(number=st.integers(0, 3), start=st.integers(0, 5))
    def assign(self, number: int, start: int) -> None:
        if number in self.held:
            return  # the consumer only assigns partitions this replica does not hold
        self.partitions.assign([PartitionState.resumed_from(number, None)])
        self.held[number] = {}
        self.next_offset[number] = start  # a new owner reads again from what was committed

    @rule(target=events, number=st.integers(0, 3), gap=st.integers(1, 3))
    def add(self, number: int, gap: int) -> PendingEvent:
        if number not in self.held:
            number = min(self.held, default=-1)
        if number < 0:
            self.assign(0, 0)
            number = 0
        offset = self.next_offset[number]
        self.next_offset[number] = offset + gap
        event = pending(number, offset)
        self.partitions.add(event)
        self.held[number][offset] = event
        self.added.append(event)
        return event

    @rule(event=events)
    def finish(self, event: PendingEvent) -> None:
        holds = self.held.get(event.source.partition, {}).get(event.source.offset) is event
        assert self.partitions.finish(event) is holds
        if holds:
            del self.held[event.source.partition][event.source.offset]
            self.finished.append(event)

    @rule(numbers=st.sets(st.integers(0, 4), max_size=3))
    def drop(self, numbers: set[int]) -> None:
        expected = [event for number in numbers for event in self.held.get(number, {}).values()]
        dropped = self.partitions.drop(numbers)
        assert sorted(map(id, dropped)) == sorted(map(id, expected))
        assert all(event.abandoned for event in dropped)
        for number in numbers:
            self.held.pop(number, None)
        self.abandoned.extend(dropped)

    @rule(data=st.data())
    def abandon(self, data: st.DataObject) -> None:
        """A drain gives up on some of the events held now (``drain_plan`` over ``all_events``)."""
        current = self.partitions.all_events()
        chosen = data.draw(st.lists(st.sampled_from(current), unique_by=id)) if current else []
        self.partitions.abandon(chosen)
        for event in chosen:
            assert event.abandoned
            del self.held[event.source.partition][event.source.offset]
        self.abandoned.extend(chosen)

    @rule(event=consumes(events))
    def abandon_again(self, event: PendingEvent) -> None:
        """Giving up twice on an event (or on one already finished or dropped) changes no count."""
        if not event.abandoned and self.held.get(event.source.partition, {}).get(event.source.offset) is not event:
            return  # finished: the pipeline never gives up on a published event
        self.partitions.abandon([event])
        assert event.abandoned
        if self.held.get(event.source.partition, {}).get(event.source.offset) is event:
            del self.held[event.source.partition][event.source.offset]
            self.abandoned.append(event)

    @invariant()
    def counts_match_what_is_held(self) -> None:
        held = [event for events in self.held.values() for event in events.values()]
        assert self.partitions.pending_events() == len(held)
        assert len(self.partitions.all_events()) == len(held)
        assert {id(event) for event in self.partitions.all_events()} == {id(event) for event in held}
        assert self.partitions.numbers() == frozenset(self.held)
        assert not any(event.abandoned for event in held)

    @invariant()
    def every_event_is_held_finished_or_abandoned(self) -> None:
        held = {id(event) for events in self.held.values() for event in events.values()}
        finished = {id(event) for event in self.finished}
        abandoned = {id(event) for event in self.abandoned}
        assert not held & finished
        assert not held & abandoned
        assert not finished & abandoned
        assert held | finished | abandoned == {id(event) for event in self.added}


PartitionsMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
TestPartitions = PartitionsMachine.TestCase


def test_late_results_for_a_dropped_partition_are_ignored() -> None:
    partitions = Partitions()
    partitions.assign([PartitionState.resumed_from(0, None)])
    old = pending(0, 10)
    partitions.add(old)
    assert partitions.drop([0]) == [old]
    assert old.abandoned
    partitions.assign([PartitionState.resumed_from(0, None)])
    new = pending(0, 10)  # read again after the partition came back
    partitions.add(new)
    assert not partitions.finish(old)
    assert partitions.pending_events() == 1
    assert partitions.finish(new)
    assert partitions.pending_events() == 0


def test_abandoned_events_leave_the_count_and_cannot_finish() -> None:
    partitions = Partitions()
    partitions.assign([PartitionState.resumed_from(0, None), PartitionState.resumed_from(1, None)])
    events = [pending(0, 1), pending(0, 2), pending(1, 1)]
    for event in events:
        partitions.add(event)
    partitions.abandon([events[0], events[2]])
    assert partitions.pending_events() == 1
    assert partitions.all_events() == [events[1]]
    assert events[0].abandoned
    assert events[2].abandoned
    assert not partitions.finish(events[0])
    partitions.abandon([events[0]])  # twice: no change
    assert partitions.pending_events() == 1
    assert partitions.drop([0, 1, 7]) == [events[1]]
    assert partitions.pending_events() == 0
    assert len(partitions) == 0


def test_an_old_event_never_takes_the_place_of_the_one_read_again_at_its_offset() -> None:
    partitions = Partitions()
    partitions.assign([PartitionState.resumed_from(0, None)])
    finished, dropped = pending(0, 10), pending(0, 11)
    partitions.add(finished)
    partitions.add(dropped)
    assert partitions.finish(finished)  # published, but the partition goes before its commit
    partitions.drop([0])
    partitions.assign([PartitionState.resumed_from(0, None)])
    again = [pending(0, 10), pending(0, 11)]  # the new owner (this replica again) reads both again
    for event in again:
        partitions.add(event)
    assert not partitions.finish(finished)  # a second report for the old event is not the new one's
    partitions.abandon([dropped])
    assert partitions.all_events() == again
    assert partitions.pending_events() == 2
    assert not any(event.abandoned for event in again)
