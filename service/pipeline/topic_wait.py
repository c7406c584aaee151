"""Records for a topic that is gone wait here, kept, until the producer's metadata shows the topic again.

An output topic deleted (or not yet created again) is not a fault of the record: once librdkafka's metadata says
the topic does not exist, ``produce`` refuses at once (``_UNKNOWN_TOPIC``, src/rdkafka_msg.c), and before that a
record for it waits in the producer until its ``message.timeout.ms``. Either way the record is an answer in hand:
it must not be dead-lettered nor dropped, and with exactly-once it must not sit in a transaction that can then
neither commit nor, on some paths, abort (docs/decisions/0020). So the record waits here, its event
unacknowledged (it counts against ``IMGSWEEP_KAFKA__MAX_UNACKNOWLEDGED``: calls stop at the bound), and a look at
the metadata every few seconds, on a thread of its own, lets it go again once the topic has partitions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Final, Generic, TypeVar

from confluent_kafka import KafkaError, Producer

from service.pipeline.inflight import InFlight

__all__ = ["MISSING", "TopicWait"]

log = logging.getLogger(__name__)

MISSING: Final = frozenset({KafkaError._UNKNOWN_TOPIC, KafkaError._UNKNOWN_PARTITION, KafkaError.UNKNOWN_TOPIC_OR_PART})
"""What ``produce`` or a delivery report says when the topic (or the partition asked for) is not there."""
LOOK_SECONDS: Final = 2.0
"""How often the metadata is asked while records wait."""
METADATA_TIMEOUT_SECONDS: Final = 5.0

T = TypeVar("T")


class TopicWait(Generic[T]):
    """Records waiting, in the order they came, for their topics (``topic_of``) to be back."""

    def __init__(
        self, topic_of: Callable[[T], str], *, clock: Callable[[], float] = time.monotonic,
        wake: Callable[[], None] = lambda: None,
    ) -> None:  # fmt: skip
        self._topic_of = topic_of
        self._clock = clock
        self._wake = wake
        self._waiting: list[T] = []
        self._topics: set[str] = set()
        self._next_look = 0.0
        self._looking: InFlight[frozenset[str]] | None = None

    def __len__(self) -> int:
        return len(self._waiting)

    @property
    def topics(self) -> frozenset[str]:
        """The topics the waiting records are for: missing at the last look."""
        return frozenset(self._topics)

    @property
    def waiting(self) -> list[T]:
        """What waits, oldest first."""
        return list(self._waiting)

    def holds(self, topic: str) -> bool:
        """Whether records for ``topic`` wait: a new one goes behind them (the topic's order is kept)."""
        return topic in self._topics

    def hold(self, item: T, cause: str) -> None:
        topic = self._topic_of(item)
        if topic not in self._topics:
            log.error(
                "records for topic %s wait for it (%s): kept, they go again once its metadata shows it", topic, cause
            )
            self._topics.add(topic)
            self._next_look = self._clock() + LOOK_SECONDS
        self._waiting.append(item)

    def keep(self, held: Callable[[T], bool]) -> None:
        """Drops the records ``held`` says no (their partitions were lost)."""
        self._waiting = [item for item in self._waiting if held(item)]
        self._topics = {self._topic_of(item) for item in self._waiting}

    def back(self, producer: Producer) -> Sequence[T]:
        """The records whose topics are back (no longer waiting here), in order; empty while none is. Asks the
        producer's metadata every ``LOOK_SECONDS`` on a thread of its own. Never blocks."""
        if not self._waiting:
            return []
        looking = self._looking
        if looking is None:
            if self._clock() >= self._next_look:
                topics = sorted(self._topics)
                self._looking = InFlight(lambda: _present(producer, topics), finished=self._wake)
            return []
        if not looking.done():
            return []
        self._looking = None
        self._next_look = self._clock() + LOOK_SECONDS
        try:
            present = looking.result()
        except Exception as error:  # noqa: BLE001 - a look that failed (no broker answered): the next one
            log.debug("asking for the metadata of the missing topics: %s", error)
            return []
        if not present:
            return []
        log.warning("topics %s are back: their records go again", ", ".join(sorted(present)))
        back = [item for item in self._waiting if self._topic_of(item) in present]
        self._waiting = [item for item in self._waiting if self._topic_of(item) not in present]
        self._topics -= present
        return back


def _present(producer: Producer, topics: Sequence[str]) -> frozenset[str]:
    """The ``topics`` the cluster has, each with partitions all led. Asks for every topic's metadata: asking for
    one by name may create it where the brokers auto-create topics (a producer's ``allow.auto.create.topics``)."""
    cluster = producer.list_topics(timeout=METADATA_TIMEOUT_SECONDS).topics
    present = set()
    for topic in topics:
        metadata = cluster.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            continue
        if all(partition.leader >= 0 and partition.error is None for partition in metadata.partitions.values()):
            present.add(topic)
    return frozenset(present)
