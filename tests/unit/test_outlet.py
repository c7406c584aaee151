"""At-least-once's outlet: a record for a topic that is gone, or refused by the producer for a reason of its own,
waits and goes again, in order, and is never dead-lettered."""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from service.health import HealthState
from service.metrics import Metrics
from service.pipeline.halt import Halt
from service.pipeline.outlet import Acknowledged, Record
from service.pipeline.partitions import PartitionState
from tests.support.kafka import FakeProducer


class GoneProducer(FakeProducer):
    """Refuses records for the topics in ``gone`` as librdkafka does once its metadata says they do not exist."""

    def __init__(self) -> None:
        super().__init__()
        self.gone: set[str] = set()

    def produce(self, topic: str, **kwargs: Any) -> None:
        if topic in self.gone:
            raise KafkaException(KafkaError(KafkaError._UNKNOWN_TOPIC, f"{topic}: unknown topic"))
        super().produce(topic, **kwargs)

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        led = type("Partition", (), {"leader": 1, "error": None})()
        metadata = type("Topic", (), {"error": None, "partitions": {0: led}})()
        topics = {} if "outcomes" in self.gone else {"outcomes": metadata}
        return type("Metadata", (), {"topics": topics})()


def record(key: bytes) -> Record:
    return Record("outcomes", key, b"{}", [], "outcome", "deleted", None)


def outlet_of(producer: FakeProducer) -> tuple[Acknowledged, list[int], list[str]]:
    """An outlet on ``producer``, with the offsets it acknowledged and the errors it reported as refused for good."""
    acked: list[int] = []
    refused: list[str] = []
    outlet = Acknowledged(
        producer,  # type: ignore[arg-type]
        held=lambda _state: True,
        acked=lambda _state, offset, _record: acked.append(offset),
        halt=Halt(HealthState(), Metrics()),
    )
    outlet.on_refused(lambda _state, _offset, _record, error: refused.append(error))
    return outlet, acked, refused


def test_a_record_for_a_topic_that_is_gone_waits_and_goes_once_it_is_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("service.pipeline.topic_wait.LOOK_SECONDS", 0.0)
    producer = GoneProducer()
    producer.gone.add("outcomes")
    outlet, acked, refused = outlet_of(producer)
    state = PartitionState(0)
    outlet.produce(state, 1, record(b"a"))
    outlet.produce(state, 2, record(b"b"))  # behind a
    for _ in range(20):
        outlet.poll()
    assert (producer.produced, acked, refused) == ([], [], []), "kept: nothing dead-lettered, nothing acknowledged"
    producer.gone.clear()
    for _ in range(200):
        outlet.poll()
        if len(acked) == 2:
            break
        time.sleep(0.01)
    assert acked == [1, 2], "both, in their order, once"
    assert refused == []


def test_a_record_the_producer_refuses_for_its_own_state_goes_again_and_is_never_dead_lettered() -> None:
    producer = GoneProducer()
    outlet, acked, refused = outlet_of(producer)
    refuse = KafkaError(KafkaError._STATE, "Unable to produce message: Local: Erroneous state")
    produce = producer.produce

    def refusing(topic: str, **kwargs: Any) -> None:
        raise KafkaException(refuse)

    producer.produce = refusing  # type: ignore[method-assign]
    outlet.produce(PartitionState(0), 1, record(b"a"))
    outlet.poll()
    assert (acked, refused) == ([], []), "kept: not dead-lettered, not acknowledged"
    producer.produce = produce  # type: ignore[method-assign]
    outlet.poll()  # produced again
    outlet.poll()  # acknowledged
    assert (acked, refused) == ([1], [])
