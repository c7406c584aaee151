"""The control topic on a real broker: imgsweep makes it when missing (one partition, compacted), and what is written
to it is read back from its beginning by a replica and by the commands."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource  # confluent_kafka.admin re-exports it implicitly only

from service.control.replica import ReplicaControls, open_controls
from service.control.state import Kind, State, Stop, Target
from service.control.topic import ensure_topic, read_table, write_stop
from service.internal_topics import CONTROL_TOPIC_CONFIG
from service.metrics import Metrics
from service.settings import ConfigError, Settings

pytestmark = pytest.mark.integration

TIMEOUT = 30.0


@pytest.fixture
def settings(kafka_bootstrap: str, kafka_admin: AdminClient) -> Iterator[Settings]:
    """Settings naming a control topic that does not exist yet; deleted after the test."""
    topic = f"it-control-{uuid.uuid4().hex[:12]}"
    yield Settings(kafka={"bootstrap_servers": kafka_bootstrap, "control_topic": topic})  # type: ignore[arg-type]
    for future in kafka_admin.delete_topics([topic], operation_timeout=TIMEOUT).values():
        future.result(TIMEOUT)


def _poll_until(controls: ReplicaControls, done: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Turns of the poll loop (each never blocks) until ``done``, 20 ms apart."""
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        controls.poll()
        time.sleep(0.02)
    return done()


def test_a_missing_control_topic_is_made_compacted_with_one_partition(
    settings: Settings, kafka_admin: AdminClient
) -> None:
    topic = settings.kafka.control_topic
    assert ensure_topic(settings) is True
    assert ensure_topic(settings) is False, "made once"
    metadata = kafka_admin.list_topics(topic, timeout=TIMEOUT).topics[topic]
    assert len(metadata.partitions) == 1
    (described,) = kafka_admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)]).values()
    configs = described.result(TIMEOUT)
    assert {name: configs[name].value for name in CONTROL_TOPIC_CONFIG} == CONTROL_TOPIC_CONFIG


def test_where_it_may_not_make_topics_a_missing_control_topic_is_named_with_its_command(
    settings: Settings, kafka_admin: AdminClient
) -> None:
    """``IMGSWEEP_KAFKA__CREATE_TOPICS=false``: nothing is made, and the one line names the setting and the exact
    command (the bootstrap servers and every config imgsweep would give it)."""
    topic, bootstrap = settings.kafka.control_topic, settings.kafka.bootstrap_servers
    locked = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"create_topics": False})})
    with pytest.raises(ConfigError) as refused:
        ensure_topic(locked)
    assert str(refused.value) == (
        f"IMGSWEEP_KAFKA__CONTROL_TOPIC: control topic {topic!r} on {bootstrap}: does not exist (or this user may not "
        "describe it) and IMGSWEEP_KAFKA__CREATE_TOPICS is false; create it: kafka-topics.sh --bootstrap-server "
        f"{bootstrap} --create --topic {topic} --partitions 1 --config cleanup.policy=compact --config "
        "segment.ms=3600000 --config min.cleanable.dirty.ratio=0.1"
    )
    assert topic not in kafka_admin.list_topics(timeout=TIMEOUT).topics, "made although it may not"
    assert ensure_topic(settings) is True
    deadline = time.monotonic() + TIMEOUT  # the new topic reaches every broker's metadata a little later
    while topic not in kafka_admin.list_topics(topic, timeout=TIMEOUT).topics and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ensure_topic(locked) is False, "there: nothing to say"


def test_stops_written_are_read_back_from_the_beginning_and_a_tombstone_lifts_them(settings: Settings) -> None:
    ensure_topic(settings)
    shoes, shop = Target(Kind.COLLECTION, "shoes"), Target(Kind.ACCOUNT, "shop")
    paused = Stop(State.PAUSED, "alice@ops", "2026-12-07T01:00:00+00:00", "incident 42")
    write_stop(settings, shoes, paused)
    write_stop(settings, shop, Stop(State.PAUSED, "bob@ops", "2026-12-07T01:05:00+00:00"))
    write_stop(settings, shop, None)
    assert read_table(settings).stops() == {shoes: paused}

    controls = open_controls(settings, Metrics())
    try:
        assert controls.holds("any", "bags"), "nothing starts before the topic is read to its end"
        assert _poll_until(controls, lambda: not controls.holds("any", "bags")), "never read to its end"
        assert controls.holds("any", "shoes")
        write_stop(settings, shoes, None)
        assert _poll_until(controls, lambda: not controls.holds("any", "shoes")), "the replica follows the topic"
    finally:
        controls.close()


def test_a_broker_that_does_not_answer_is_one_line_naming_the_setting() -> None:
    settings = Settings(kafka={"bootstrap_servers": "127.0.0.1:1", "control_topic": "c"})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^IMGSWEEP_KAFKA__CONTROL_TOPIC: control topic 'c' on 127.0.0.1:1: "):
        ensure_topic(settings, timeout=2)
