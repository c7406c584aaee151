"""Poison records: one record's failure dead-letters it and the loop goes on; a record that stopped the process
twice is dead-lettered without another try; a dead letter too large for the producer is written truncated.

Steps built directly with in-memory stand-ins (as in test_steps.py); the marks use real files in a temporary
directory, and a process dying is a ``handling`` block that is entered and never left.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from service.api.models import ItemResult, ItemStatus
from service.health import HealthState
from service.metrics import Metrics
from service.pipeline.events import DelistEvent, EventTypes, decode_event
from service.pipeline.halt import Halt
from service.pipeline.ledger import Finished, Ledger, Rejected
from service.pipeline.outcomes import TRUNCATION_HEADERS
from service.pipeline.outlet import Acknowledged, Delivered
from service.pipeline.partitions import PartitionState
from service.pipeline.pending import Headers, SourceRecord
from service.pipeline.poison import HandlingFailed, PoisonMarks
from service.pipeline.steps.commit import CommitStep
from service.pipeline.steps.decode import DecodeStep, EventFormat
from service.pipeline.steps.guard import GuardedLanes
from service.pipeline.steps.publish import PublishStep, Topics, fit_dead_letter
from tests.support.kafka import FakeConsumer, FakeMessage, FakeProducer
from tests.unit.test_steps import TOPIC, Recorder, delist, ledger_with

TYPES = EventTypes()
VALID = {"event_id": "a", "collection_name": "c", "product_id": "p", "image_ids": ["i"]}


def message(offset: int, value: dict[str, Any] | bytes = VALID, *, partition: int = 0) -> Any:
    return FakeMessage(TOPIC, partition, offset, value if isinstance(value, bytes) else json.dumps(value).encode())


def source(offset: int, value: bytes = b"{}", *, partition: int = 0) -> SourceRecord:
    return SourceRecord(TOPIC, partition, offset, b"k", value, [], 1_700_000_000_000)


def held_ledger(marks: PoisonMarks | None = None) -> Ledger:
    ledger = Ledger(TOPIC, marks=marks)
    ledger.assign([PartitionState.resumed_from(0, None)])
    return ledger


def decode_step(ledger: Ledger, metrics: Metrics, *, decode: Any = decode_event, hold: Any = None) -> DecodeStep:
    return DecodeStep(
        next_step=hold or Recorder(), ledger=ledger, events=EventFormat(TYPES, decode), max_pending=100,
        halt=Halt(HealthState(), metrics), metrics=metrics,
    )  # fmt: skip


def publish_step(ledger: Ledger, producer: Any, metrics: Metrics, *, limit: int = 1_000_000) -> PublishStep:
    commit = CommitStep(
        consumer=FakeConsumer(TOPIC),  # type: ignore[arg-type]
        ledger=ledger, health=HealthState(), metrics=metrics, interval=3600,
    )  # fmt: skip
    outlet = Acknowledged(
        producer, held=ledger.holds, acked=Delivered(ledger, metrics), halt=Halt(HealthState(), metrics)
    )
    return PublishStep(
        outlet=outlet, topics=Topics("out", "dlq", max_record_bytes=limit), ledger=ledger, next_step=commit,
        metrics=metrics,
    )  # fmt: skip


def header(headers: Headers, name: str) -> bytes | None:
    return next((value for key, value in headers if key == name), None)


def internal_errors(metrics: Metrics, step: str) -> float | None:
    return metrics.registry.get_sample_value("imgsweep_internal_errors_total", {"step": step})


# ---- an error while one record is handled ---------------------------------------------------------------------


def test_a_decoder_that_raises_dead_letters_the_record_as_internal_error_and_the_next_one_goes_on() -> None:
    def broken(value: bytes | None, headers: Headers, types: EventTypes) -> DelistEvent:
        if value == b"poison":
            raise RecursionError("maximum recursion depth exceeded")
        return decode_event(value, headers, types)

    ledger, metrics, hold = held_ledger(), Metrics(), Recorder()
    step = decode_step(ledger, metrics, decode=broken, hold=hold)
    step.submit(message(0, b"poison"))
    step.submit(message(1))
    assert [pending.source.offset for pending in hold.items] == [1]
    (rejected,) = ledger.outbox()
    assert isinstance(rejected, Rejected)
    assert isinstance(rejected.error, HandlingFailed)
    assert rejected.error.reason == "decode failed: RecursionError: maximum recursion depth exceeded"
    assert internal_errors(metrics, "decode") == 1

    producer = FakeProducer()
    publish = publish_step(ledger, producer, metrics)
    publish.submit(rejected)
    ((topic, value, headers),) = producer.produced
    assert (topic, value) == ("dlq", b"poison")
    assert header(headers, "imgsweep_error_class") == b"internal_error"
    producer.poll(0)
    assert metrics.registry.get_sample_value("imgsweep_dead_letters_total", {"reason": "internal_error"}) == 1
    assert ledger.get(0).offsets.committable() == 1  # type: ignore[union-attr]


def test_an_event_whose_hold_raises_leaves_the_pipeline_as_a_dead_letter_and_late_results_are_ignored() -> None:
    class RaisingHold(Recorder):
        def submit(self, item: Any) -> None:
            super().submit(item)
            raise KeyError("held")

    ledger, metrics, hold = held_ledger(), Metrics(), RaisingHold()
    step = decode_step(ledger, metrics, hold=hold)
    step.submit(message(0))
    (pending,) = hold.items
    assert pending.abandoned
    assert ledger.pending_events() == 0
    assert [type(item) for item in ledger.outbox()] == [Rejected]
    ledger.decide(pending, [ItemResult(pending.items()[0], ItemStatus.DELETED)])  # a late result
    assert ledger.outbox() == []


def test_a_route_that_raises_for_one_delist_dead_letters_it_and_passes_the_rest_on() -> None:
    class RaisingRoute(Recorder):
        def submit(self, item: Any) -> None:
            if item.event.product_id == "bad":
                raise ValueError("no lane")
            super().submit(item)

    bad, good = delist(0, product="bad"), delist(1)
    ledger, metrics, route = ledger_with(bad, good), Metrics(), RaisingRoute()
    lanes = GuardedLanes(lanes=route, ledger=ledger, metrics=metrics)
    lanes.submit(bad)
    lanes.submit(good)
    assert route.items == [good]
    (rejected,) = ledger.outbox()
    assert isinstance(rejected, Rejected)
    assert rejected.record is bad.source
    assert str(rejected.error) == "route failed: ValueError: no lane"
    assert internal_errors(metrics, "route") == 1
    lanes.poll()
    assert route.calls == ["poll"]


def test_an_outcome_that_cannot_be_built_is_replaced_by_the_events_internal_error_dead_letter() -> None:
    event = delist(0, images=2)
    ledger, metrics, producer = ledger_with(event), Metrics(), FakeProducer()
    publish = publish_step(ledger, producer, metrics)
    event.results.clear()
    event.results["unknown"] = ItemResult(event.items()[0], ItemStatus.DELETED)
    event.results["other"] = ItemResult(event.items()[1], ItemStatus.DELETED)  # complete, but not its images
    assert ledger.get(0).events.pop(0) is event  # type: ignore[union-attr]  # as Partitions.finish does
    publish.submit(Finished(event))
    ((topic, value, headers),) = producer.produced
    assert (topic, value) == ("dlq", event.source.value)
    assert header(headers, "imgsweep_error_class") == b"internal_error"
    assert (header(headers, "imgsweep_error_reason") or b"").startswith(b"publish failed: KeyError")
    assert internal_errors(metrics, "publish") == 1
    producer.poll(0)
    assert ledger.get(0).offsets.committable() == 1  # type: ignore[union-attr]


# ---- a record the producer refuses ----------------------------------------------------------------------------


class RefusingProducer(FakeProducer):
    """Refuses records of the topics named, as librdkafka's ``produce`` does a record over message.max.bytes."""

    def __init__(self, *refused: str) -> None:
        super().__init__()
        self.refused = set(refused)
        self.tries: list[str] = []

    def produce(
        self,
        topic: str,
        *,
        value: bytes | None,
        key: bytes | None,
        on_delivery: Any,
        headers: Any = (),
        partition: int | None = None,
    ) -> None:
        self.tries.append(topic)
        if topic in self.refused:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "Broker: Message size too large"))
        super().produce(topic, value=value, key=key, headers=headers, partition=partition, on_delivery=on_delivery)


def test_an_outcome_the_producer_refuses_becomes_a_dead_letter_and_the_offset_moves_on() -> None:
    event = delist(0, images=1)
    ledger, metrics, producer = ledger_with(event), Metrics(), RefusingProducer("out")
    publish = publish_step(ledger, producer, metrics)
    ledger.decide(event, [ItemResult(event.items()[0], ItemStatus.DELETED)])
    publish.poll()
    assert producer.tries == ["out", "dlq"]
    ((_, _, headers),) = producer.produced
    assert header(headers, "imgsweep_error_class") == b"internal_error"
    assert b"its outcome could not be published" in (header(headers, "imgsweep_error_reason") or b"")
    publish.poll()
    assert ledger.get(0).offsets.committable() == 1  # type: ignore[union-attr]
    labels = {"kind": "outcome", "instead": "dead_letter"}
    assert metrics.registry.get_sample_value("imgsweep_publish_failures_total", labels) == 1


def test_a_dead_letter_that_can_never_be_written_is_cut_then_dropped_and_never_stops_the_loop() -> None:
    ledger, metrics, producer = held_ledger(), Metrics(), RefusingProducer("dlq")
    record = source(0, b"x" * 100)
    assert ledger.admit(record)
    ledger.fail(record, HandlingFailed("boom"))
    publish = publish_step(ledger, producer, metrics)
    publish.poll()
    assert producer.tries == ["dlq", "dlq"]  # as built, then its headers only
    assert ledger.get(0).offsets.committable() == 1  # type: ignore[union-attr]  # given up: counted as published
    for instead in ("truncated", "dropped"):
        labels = {"kind": "dead_letter", "instead": instead}
        assert metrics.registry.get_sample_value("imgsweep_publish_failures_total", labels) == 1


def test_a_broker_refusing_a_record_for_good_replaces_it_instead_of_producing_it_again_forever() -> None:
    ledger, metrics = held_ledger(), Metrics()
    record = source(0, b"x" * 100)
    assert ledger.admit(record)
    ledger.fail(record, HandlingFailed("boom"))

    class BrokerRefusal(FakeProducer):
        def poll(self, timeout: float) -> int:
            callbacks, self._callbacks = self._callbacks, []
            for callback, (_, value, _) in zip(callbacks, self.produced[-len(callbacks) :], strict=True):
                error = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE) if value else None
                callback(error, None)
            return len(callbacks)

    producer = BrokerRefusal()
    publish = publish_step(ledger, producer, metrics)
    publish.poll()
    publish.poll()
    assert [value for _, value, _ in producer.produced] == [b"x" * 100, b""]
    assert ledger.get(0).offsets.committable() == 1  # type: ignore[union-attr]


# ---- a dead letter larger than the producer takes ------------------------------------------------------------


def test_a_copy_that_fits_is_written_whole() -> None:
    headers: Headers = [("trace", b"t"), ("imgsweep_error_class", b"too_large")]
    assert fit_dead_letter(b"k", b"v" * 1000, headers, 1_000_000) == (b"k", b"v" * 1000, headers)


def test_a_copy_over_the_limit_keeps_a_prefix_of_the_value_and_says_what_the_original_was() -> None:
    value = bytes(range(256)) * 4024  # 1,030,144 bytes
    headers: Headers = [("trace", b"t"), ("imgsweep_error_class", b"too_large")]
    key, cut, marked = fit_dead_letter(b"k", value, headers, 1_000_000)
    assert key == b"k"
    assert cut is not None
    assert value.startswith(cut)
    assert 990_000 < len(cut) < 1_000_000
    assert marked[:2] == headers
    assert [header(marked, name) for name in TRUNCATION_HEADERS] == [
        b"value",
        str(len(value)).encode(),
        hashlib.sha256(value).hexdigest().encode(),
    ]
    size = len(key) + len(cut) + sum(len(name) + len(data or b"") for name, data in marked)
    assert size <= 1_000_000


def test_headers_too_large_to_keep_are_left_out_then_the_key() -> None:
    huge: Headers = [("big", b"h" * 2_000), ("imgsweep_source_offset", b"7")]
    key, cut, marked = fit_dead_letter(b"k" * 10, b"v" * 5_000, huge, 2_500)
    assert (key, [name for name, _ in marked]) == (b"k" * 10, ["imgsweep_source_offset", *TRUNCATION_HEADERS])
    assert header(marked, "imgsweep_truncated") == b"value,headers"
    assert cut is not None
    assert 0 < len(cut) < 2_500
    key, cut, marked = fit_dead_letter(b"k" * 3_000, b"v" * 5_000, huge, 2_500)
    assert (key, header(marked, "imgsweep_truncated")) == (None, b"value,headers,key")
    assert cut is not None
    assert 0 < len(cut) < 2_500


def test_an_invalid_record_at_the_brokers_limit_is_dead_lettered_truncated() -> None:
    ledger, metrics, producer = held_ledger(), Metrics(), FakeProducer()
    step = decode_step(ledger, metrics)
    value = b"{" + b"x" * 1_029_999  # not JSON: 1,030,000 bytes, which a Java producer and the broker take
    step.submit(message(0, value))
    publish = publish_step(ledger, producer, metrics)
    publish.poll()
    ((_, cut, headers),) = producer.produced
    assert header(headers, "imgsweep_error_class") == b"invalid_json"
    assert header(headers, "imgsweep_truncated") == b"value"
    assert header(headers, "imgsweep_original_size") == str(len(value)).encode()
    assert header(headers, "imgsweep_source_offset") == b"0"
    assert cut is not None
    assert value.startswith(cut)
    assert metrics.registry.get_sample_value("imgsweep_dead_letters_truncated_total") == 1


# ---- a record that stopped the process ------------------------------------------------------------------------


DEAD: list[object] = []
"""The blocks of processes that died inside them: kept, so that no ``finally`` ever runs (as when killed)."""


def die_while_handling(directory: Path, record: SourceRecord) -> None:
    """A process that is killed while it handles ``record``: the block is entered and never left."""
    ledger = held_ledger(PoisonMarks(directory, group="g"))
    block = ledger.handling(record)
    block.__enter__()
    DEAD.append(block)


def test_a_record_that_stopped_the_process_twice_is_dead_lettered_without_another_try(tmp_path: Path) -> None:
    record = source(5)
    die_while_handling(tmp_path, record)
    assert PoisonMarks(tmp_path, group="g").failures(record) == 1
    die_while_handling(tmp_path, record)  # the restart read the mark (one failure), tried again and died again

    decoded: list[bytes | None] = []

    def decode(value: bytes | None, headers: Headers, types: EventTypes) -> DelistEvent:
        decoded.append(value)
        return decode_event(value, headers, types)

    ledger, metrics = held_ledger(PoisonMarks(tmp_path, group="g")), Metrics()
    step = decode_step(ledger, metrics, decode=decode)
    step.submit(message(5))
    step.submit(message(6))
    assert len(decoded) == 1, "offset 5 is not tried a third time; offset 6 is"
    (rejected,) = ledger.outbox()
    assert isinstance(rejected, Rejected)
    assert rejected.record.offset == 5
    assert str(rejected.error) == "the process stopped 2 times while handling this record: not tried again"
    assert internal_errors(metrics, "restart") == 1
    assert PoisonMarks(tmp_path, group="g").failures(record) == 0, "dead-lettered: the count is done with"


def test_a_record_handled_after_one_failure_is_forgotten_and_other_partitions_and_groups_are_apart(
    tmp_path: Path,
) -> None:
    record = source(3)
    die_while_handling(tmp_path, record)
    marks = PoisonMarks(tmp_path, group="g")
    assert marks.failures(record) == 1
    assert marks.failures(source(3, partition=1)) == 0
    assert PoisonMarks(tmp_path, group="other").failures(record) == 0
    with marks.handling(record):
        pass
    assert PoisonMarks(tmp_path, group="g").failures(record) == 0


def test_an_error_inside_the_block_is_not_a_process_dying(tmp_path: Path) -> None:
    marks = PoisonMarks(tmp_path, group="g")
    with pytest.raises(ZeroDivisionError), marks.handling(source(1)):
        _ = 1 / 0
    assert PoisonMarks(tmp_path, group="g").failures(source(1)) == 0


def test_marks_that_cannot_be_written_are_off_and_never_fatal(tmp_path: Path) -> None:
    missing = tmp_path / "not-there"
    marks = PoisonMarks(missing, group="g")
    with marks.handling(source(1)):
        pass
    assert marks.failures(source(1)) == 0


# ---- commits --------------------------------------------------------------------------------------------------


def test_a_failed_asynchronous_commit_is_sent_again_and_counted() -> None:
    event = delist(0, images=1)
    ledger, metrics, consumer = ledger_with(event), Metrics(), FakeConsumer(TOPIC)
    commit = CommitStep(
        consumer=consumer,  # type: ignore[arg-type]
        ledger=ledger, health=HealthState(), metrics=metrics, interval=0.0,
    )  # fmt: skip
    ledger.decide(event, [ItemResult(event.items()[0], ItemStatus.DELETED)])
    (finished,) = ledger.outbox()
    assert isinstance(finished, Finished)
    state = ledger.produced(event.source, 1)
    assert state is not None
    ledger.acknowledged(state, 0)
    commit.poll()
    assert consumer.commits == [{0: (1, "")}]
    commit.poll()
    assert len(consumer.commits) == 1, "nothing moved: nothing sent"
    failed = TopicPartition(TOPIC, 0, 1)
    commit.on_commit(KafkaError(KafkaError.REQUEST_TIMED_OUT), [failed])
    assert metrics.registry.get_sample_value("imgsweep_commit_failures_total") == 1
    commit.poll()
    assert consumer.commits == [{0: (1, "")}, {0: (1, "")}], "sent again"
    commit.on_commit(None, [TopicPartition(TOPIC, 0, 1)])  # the second one succeeded
    commit.poll()
    assert len(consumer.commits) == 2
    assert metrics.registry.get_sample_value("imgsweep_commit_failures_total") == 1
