"""What an imgsweep's groups have committed, read without joining them, in terms of the input's records.

With the router (``IMGSWEEP_KAFKA__REPARTITION``, the default; decision 0022) two groups commit: the user's group
on the input topic says what the router has *forwarded*, and ``<group>.collections`` on the collections topic says
what the pipeline has *finished*. The collections topic's offsets are not the input's (the router's transaction
markers take offsets too, and records are dealt out by collection), so the work's commits are translated back to
input records through each forwarded record's ``imgsweep_origin`` header. A test asks "which input records has
imgsweep finished" with ``work_committed`` whichever way it runs, and "has the router committed past anything it
has not forwarded" with ``inputs_committed`` and ``forwarded``.
"""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import Consumer, TopicPartition

from devkit.processes import Topics
from service.pipeline.collections_topic import ORIGIN_HEADER
from service.router.stage import COLLECTIONS_GROUP_SUFFIX
from tests.support.reading import messages_to_end

__all__ = [
    "Commits",
    "Forwarded",
    "commits",
    "committed_offsets",
    "finished",
    "forwarded",
    "inputs_committed",
    "work_committed",
]

InputRecord = tuple[int, int]
"""(partition, offset) of a record of the input topic."""


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """``group``'s committed offset on each partition of ``topic`` that has one."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        partitions = [TopicPartition(topic, p) for p in metadata.partitions]
        found = consumer.committed(partitions, timeout=20) if partitions else []
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in found if tp.offset >= 0}


def inputs_committed(bootstrap: str, topics: Topics) -> set[InputRecord]:
    """The input records the user's group has committed past (with the router: what it says it forwarded). The
    tests produce the input without transactions, so every offset below a committed one is a record."""
    commits = committed_offsets(bootstrap, topics.group, topics.input)
    return {(partition, offset) for partition, end in commits.items() for offset in range(end)}


@dataclass(frozen=True)
class Forwarded:
    """A record of the collections topic and the input record it carries."""

    partition: int
    offset: int
    origin: InputRecord


def forwarded(bootstrap: str, topics: Topics, timeout: float = 120) -> list[Forwarded]:
    """Every committed record of the collections topic now (read_committed, to the ends taken at the start)."""
    return [
        Forwarded(message.partition() or 0, message.offset() or 0, _origin(message.headers() or []))
        for message in messages_to_end(bootstrap, topics.collections_topic, timeout)
    ]


def _origin(headers: dict[str, str | bytes | None] | list[tuple[str, str | bytes | None]]) -> InputRecord:
    """The input record a forwarded one carries (``partition:offset:...`` in its ``imgsweep_origin`` header)."""
    pairs = headers.items() if isinstance(headers, dict) else headers
    value = next(value for name, value in pairs if name == ORIGIN_HEADER)
    text = value.decode() if isinstance(value, bytes) else str(value)
    partition, offset, _ = text.split(":", 2)
    return int(partition), int(offset)


@dataclass(frozen=True)
class Commits:
    """What one imgsweep's groups have committed, in input records, read in an order that makes them comparable:
    the work's group first, then the input group, then the collections topic (so every record below a commit
    read is in ``forwarded``)."""

    work: set[InputRecord]
    """Finished: committed past by the group that does the work."""
    inputs: set[InputRecord]
    """Committed past by the user's group on the input (with the router: what it says it forwarded)."""
    forwarded: set[InputRecord] | None
    """With the router: the input records the collections topic holds (committed transactions only)."""

    def check(self) -> None:
        """The router commits nothing on the input that it has not forwarded."""
        if self.forwarded is not None:
            unforwarded = sorted(self.inputs - self.forwarded)
            assert not unforwarded, f"the input group committed past records not forwarded: {unforwarded[:5]}"


def commits(bootstrap: str, topics: Topics, *, routed: bool = True) -> Commits:
    """Both groups' commits as input records (without the router, the work's are the input group's)."""
    if not routed:
        inputs = inputs_committed(bootstrap, topics)
        return Commits(inputs, inputs, None)
    work = committed_offsets(bootstrap, topics.group + COLLECTIONS_GROUP_SUFFIX, topics.collections_topic)
    inputs = inputs_committed(bootstrap, topics)
    records = forwarded(bootstrap, topics)
    finished = {record.origin for record in records if record.offset < work.get(record.partition, 0)}
    return Commits(finished, inputs, {record.origin for record in records})


def work_committed(bootstrap: str, topics: Topics, *, routed: bool = True) -> set[InputRecord]:
    """The input records the group that does the work has committed past (checked against the router's)."""
    found = commits(bootstrap, topics, routed=routed)
    found.check()
    return found.work


def finished(bootstrap: str, topics: Topics, total: int, *, routed: bool = True) -> bool:
    """Whether all ``total`` input records are committed by the group that does the work (the input group's
    commits looked at first: cheap, and with the router they come first)."""
    if sum(committed_offsets(bootstrap, topics.group, topics.input).values()) != total:
        return False
    return not routed or len(work_committed(bootstrap, topics)) == total
