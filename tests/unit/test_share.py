"""DemandShare, the edge of the demand share: replicas on one in-memory demand topic, a fake clock, no broker."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaException, TopicPartition

from service.api.rate_limit import RateLimiter
from service.metrics import Metrics
from service.pipeline.demand_share import floor_qps
from service.pipeline.share import DemandShare, Paced
from tests.support.clock import FakeClock

TOPIC = "demand"


@dataclass
class Record:
    key: bytes | None
    value: bytes | None


class Message:
    def __init__(self, record: Record) -> None:
        self._record = record

    def error(self) -> None:
        return None

    def key(self) -> bytes | None:
        return self._record.key

    def value(self) -> bytes | None:
        return self._record.value


@dataclass
class DemandTopic:
    """One partition; ``exists`` False answers metadata as a missing topic does."""

    exists: bool = True
    records: list[Record] = field(default_factory=list)


class Producer:
    def __init__(self, topic: DemandTopic) -> None:
        self._topic = topic

    def produce(self, _name: str, *, key: bytes, value: bytes | None, on_delivery: Any = None) -> None:
        if self._topic.exists:
            self._topic.records.append(Record(key, value))

    def poll(self, _timeout: float) -> int:
        return 0

    def flush(self, _timeout: float) -> int:
        return 0


class Reader:
    def __init__(self, topic: DemandTopic) -> None:
        self._topic = topic
        self._next: int | None = None
        self.closed = False
        self.polls = 0

    def poll(self, timeout: float) -> None:
        self.polls += 1

    def list_topics(self, name: str, timeout: float) -> Any:
        if not self._topic.exists:
            raise KafkaException("unknown topic")

        topic = SimpleNamespace(error=None, partitions={0: None})
        return SimpleNamespace(topics={name: topic})

    def offsets_for_times(self, wanted: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, 0) for tp in wanted]

    def assign(self, partitions: list[TopicPartition]) -> None:
        self._next = partitions[0].offset

    def consume(self, _count: int, timeout: float) -> list[Message]:
        assert self._next is not None
        new = self._topic.records[self._next :]
        self._next = len(self._topic.records)
        return [Message(record) for record in new]

    def close(self) -> None:
        self.closed = True


class Replica:
    def __init__(
        self,
        member: str,
        topic: DemandTopic,
        clock: FakeClock,
        wall: FakeClock,
        accounts: tuple[str, ...] = ("default",),
    ) -> None:
        self.limiters = {account: RateLimiter(2.0, clock=clock) for account in accounts}
        self.limiter = self.limiters[accounts[0]]
        self.metrics = Metrics(error_classes=(), accounts=accounts)
        self.series = self.metrics.account(accounts[0])
        self.reader = Reader(topic)
        paced = [Paced(account, self.limiters[account], 2.0, self.metrics.account(account)) for account in accounts]
        self.share = DemandShare(
            member=member, topic=TOPIC, producer=Producer(topic), reader=self.reader,  # type: ignore[arg-type]
            accounts=paced, clock=clock, wall=wall,
        )  # fmt: skip


def run(replicas: dict[Replica, int | dict[str, int]], clock: FakeClock, wall: FakeClock, seconds: float) -> None:
    """Each replica's poll every 0.1 s, with the demand given (a number: its first account's)."""
    for _ in range(round(seconds * 10)):
        for replica, demand in replicas.items():
            replica.share.poll({next(iter(replica.limiters)): demand} if isinstance(demand, int) else demand)
        clock.advance(0.1)
        wall.advance(0.1)


@pytest.fixture
def clocks() -> tuple[FakeClock, FakeClock]:
    return FakeClock(100.0), FakeClock(1_800_000_000.0)


def test_the_busy_replica_takes_the_idle_ones_share_after_the_rise(clocks: tuple[FakeClock, FakeClock]) -> None:
    clock, wall = clocks
    topic = DemandTopic()
    busy, idle = Replica("busy", topic, clock, wall), Replica("idle", topic, clock, wall)
    for replica in (busy, idle):
        replica.share.assigned(2, 4)
    run({busy: 0, idle: 0}, clock, wall, 3)
    assert busy.limiter.ceiling == pytest.approx(idle.limiter.ceiling) == pytest.approx(0.98, abs=0.01)
    run({busy: 40, idle: 0}, clock, wall, 1)
    assert idle.limiter.ceiling == pytest.approx(floor_qps(2.0, 2)), "the idle one gives its share up at once"
    assert busy.limiter.ceiling < 1.0, "the busy one waits before it takes it"
    run({busy: 40, idle: 0}, clock, wall, 1.5)
    assert busy.limiter.ceiling == pytest.approx(2.0 - floor_qps(2.0, 2))
    assert busy.limiter.ceiling + idle.limiter.ceiling <= 2.0
    assert busy.series.qps_share_members._value.get() == 2


def test_a_tombstone_gives_the_leavers_share_to_the_others(clocks: tuple[FakeClock, FakeClock]) -> None:
    clock, wall = clocks
    topic = DemandTopic()
    one, two = Replica("one", topic, clock, wall), Replica("two", topic, clock, wall)
    run({one: 9, two: 9}, clock, wall, 3)
    assert one.limiter.ceiling == pytest.approx(0.98, abs=0.01)
    two.share.close()
    assert two.reader.closed
    assert topic.records[-1] == Record(b"two", None)
    run({one: 9}, clock, wall, 2.5)
    assert one.limiter.ceiling == 2.0


def test_a_replica_that_stops_announcing_expires(clocks: tuple[FakeClock, FakeClock]) -> None:
    clock, wall = clocks
    topic = DemandTopic()
    one, dead = Replica("one", topic, clock, wall), Replica("dead", topic, clock, wall)
    run({one: 9, dead: 9}, clock, wall, 3)
    run({one: 9}, clock, wall, 4)
    assert one.limiter.ceiling == pytest.approx(0.98, abs=0.01), "within the expiry, its share is kept for it"
    run({one: 9}, clock, wall, 4)
    assert one.limiter.ceiling == 2.0


def test_without_the_demand_topic_the_share_follows_the_partitions(clocks: tuple[FakeClock, FakeClock]) -> None:
    clock, wall = clocks
    replica = Replica("alone", DemandTopic(exists=False), clock, wall)
    replica.share.assigned(1, 4)
    run({replica: 9}, clock, wall, 0.5)
    # Without the topic every replica paces by partitions, whose shares never add up to more than the account's
    # QPS: no reason to start low (a start at the floor cost a lone replica 2 s of its backlog's drain).
    assert replica.limiter.ceiling == 0.5
    run({replica: 9}, clock, wall, 2)
    assert replica.limiter.ceiling == 0.5
    assert replica.series.qps_share_members._value.get() == 0
    replica.share.assigned(2, 4)
    run({replica: 9}, clock, wall, 2.3)
    assert replica.limiter.ceiling == 1.0
    assert replica.reader.polls == 48, "the unassigned reader is served every turn: its queue does not grow"


def test_each_account_is_shared_by_its_own_demand(clocks: tuple[FakeClock, FakeClock]) -> None:
    """Two replicas, two accounts: each replica's backlog is of another account, so each takes all of that one."""
    clock, wall = clocks
    topic = DemandTopic()
    one = Replica("one", topic, clock, wall, accounts=("shoes", "bags"))
    two = Replica("two", topic, clock, wall, accounts=("shoes", "bags"))
    run({one: {"shoes": 30, "bags": 0}, two: {"shoes": 0, "bags": 30}}, clock, wall, 4)
    assert one.limiters["shoes"].ceiling == pytest.approx(2.0 - floor_qps(2.0, 2))
    assert two.limiters["bags"].ceiling == pytest.approx(2.0 - floor_qps(2.0, 2))
    assert one.limiters["bags"].ceiling == two.limiters["shoes"].ceiling == pytest.approx(floor_qps(2.0, 2))
    for account in ("shoes", "bags"):
        assert one.limiters[account].ceiling + two.limiters[account].ceiling <= 2.0


def test_an_announcement_without_accounts_is_the_default_accounts(clocks: tuple[FakeClock, FakeClock]) -> None:
    """A replica of the version before accounts announces {"calls": n}: it is read as the default account's."""
    clock, wall = clocks
    topic = DemandTopic()
    new = Replica("new", topic, clock, wall)
    old = Producer(topic)
    for _ in range(30):
        old.produce(TOPIC, key=b"old", value=json.dumps({"member": "old", "calls": 50}).encode())
        run({new: 0}, clock, wall, 0.1)
    assert new.series.qps_share_members._value.get() == 2
    assert new.limiter.ceiling == pytest.approx(floor_qps(2.0, 2)), "the old replica wants the calls: it has them"
