"""``python -m bench.commit_floor [--transactions N] [--hogs K] [--update docs/performance.md]``: what a Kafka
transaction's commit costs a bare client on this machine and broker, with no imgsweep around it.

Issue 20 asks for a p99 ``commit_transaction`` of at most 50 ms. imgsweep's own figure
(``imgsweep_transaction_commit_seconds``: the offsets sent, then the commit, on a thread of its own) carries what
the machine adds: the round trips to the transaction and group coordinators, the broker's own CPU, and the thread's
waits for a core and for the GIL. This bench gives the floor under it, side by side in one run: one process, one
transactional producer (imgsweep's settings: idempotent, ``acks=all``, ``linger.ms`` 5, no sparse connections) and
one consumer in a group; per transaction it reads up to 50 records of a 3-partition input, produces them to a
3-partition output, waits for their acknowledgements, then times ``send_offsets_to_transaction`` plus
``commit_transaction`` (the span imgsweep's histogram measures). Three conditions, each ``--transactions`` long:
alone; beside a Python thread that never sleeps (the GIL contended, switch interval 1 ms as imgsweep sets it);
and with ``--hogs`` processes spinning on the cores as well (the cores saturated, as in a flat-out drain where the
broker, the sandbox and the service share two cores). The report gives each condition's p50, p99 and max.
"""

from __future__ import annotations

import multiprocessing
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Final

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from bench.standalone import broker_and_machine, section_parser, write_section

__all__ = ["HEADING", "Condition", "main", "measure", "report_lines"]

HEADING: Final = "## Exactly once: a bare client's commit on this machine"
PARTITIONS: Final = 3
PER_TRANSACTION: Final = 50
SWITCH_INTERVAL_SECONDS: Final = 0.001


@dataclass(frozen=True)
class Condition:
    name: str
    milliseconds: list[float]
    """``send_offsets_to_transaction`` plus ``commit_transaction``, one per transaction."""

    def percentile(self, share: float) -> float:
        """Nearest rank: a time some commit really took."""
        ordered = sorted(self.milliseconds)
        return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def _spin() -> None:
    while True:
        pass


@contextmanager
def _hogs(count: int) -> Iterator[None]:
    """``count`` processes spinning on the cores while the block runs."""
    spinning = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(count)]
    for process in spinning:
        process.start()
    try:
        yield
    finally:
        for process in spinning:
            process.terminate()
            process.join(5)


@contextmanager
def _busy_thread() -> Iterator[None]:
    """A Python thread that never sleeps: the GIL is contended as by imgsweep's loop."""
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            pass

    thread = threading.Thread(target=busy, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def measure(bootstrap: str, transactions: int, hogs: int) -> list[Condition]:
    """The three conditions on fresh topics with ``transactions * 50`` input records each."""
    name = f"floor.{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [f"{name}.in", f"{name}.out"]
    for future in admin.create_topics([NewTopic(topic, PARTITIONS, 1) for topic in topics]).values():
        future.result(30)
    try:
        feeder = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        for n in range((3 * transactions + 10) * PER_TRANSACTION):
            feeder.produce(topics[0], b"x" * 200, key=str(n).encode())
            feeder.poll(0)
        feeder.flush(30)
        with _Client(bootstrap, name, topics) as client:
            client.run(3)  # connections and coordinators found first: not a commit's cost
            alone = Condition("alone", client.run(transactions))
            switch = sys.getswitchinterval()
            sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
            try:
                with _busy_thread():
                    contended = Condition("a busy Python thread beside it (GIL contended)", client.run(transactions))
                    with _hogs(hogs):
                        saturated = Condition(f"and {hogs} processes spinning (cores saturated)",
                                              client.run(transactions))  # fmt: skip
            finally:
                sys.setswitchinterval(switch)
    finally:
        for future in admin.delete_topics(topics, operation_timeout=30).values():
            future.result(30)
    return [alone, contended, saturated]


class _Client:
    """One consumer in a group and one transactional producer, as imgsweep pairs them."""

    def __init__(self, bootstrap: str, name: str, topics: Sequence[str]) -> None:
        self._topics = topics
        self._consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": name, "group.instance.id": f"{name}-0",
            "enable.auto.commit": False, "auto.offset.reset": "earliest", "isolation.level": "read_committed",
        })  # fmt: skip
        self._producer = Producer({
            "bootstrap.servers": bootstrap, "transactional.id": f"{name}-0", "enable.idempotence": True,
            "acks": "all", "linger.ms": 5, "enable.sparse.connections": False,
        })  # fmt: skip
        self._positions: dict[int, int] = {}

    def __enter__(self) -> _Client:
        self._producer.init_transactions(30)
        self._consumer.subscribe([self._topics[0]])
        return self

    def __exit__(self, *_: object) -> None:
        self._consumer.close()

    def run(self, transactions: int) -> list[float]:
        """Milliseconds of each transaction's offsets and commit."""
        spans = []
        for _ in range(transactions):
            self._producer.begin_transaction()
            for message in self._consumer.consume(PER_TRANSACTION, 1.0):
                partition, offset = message.partition(), message.offset()
                if message.error() is None and partition is not None and offset is not None:
                    self._producer.produce(self._topics[1], message.value(), key=message.key())
                    self._positions[partition] = offset + 1
            self._producer.flush(30)
            offsets = [TopicPartition(self._topics[0], partition, at) for partition, at in self._positions.items()]
            started = time.monotonic()
            self._producer.send_offsets_to_transaction(offsets, self._consumer.consumer_group_metadata(), 30)
            self._producer.commit_transaction(30)
            spans.append((time.monotonic() - started) * 1000)
        return spans


def report_lines(
    conditions: Sequence[Condition], *, date: str, cores: int, load: float, transactions: int
) -> list[str]:
    lines = [
        HEADING,
        "",
        f"Generated by `python -m bench.commit_floor` on {date}, {cores} cores, load average at the start "
        f"{load:.2f}; how it is measured is in the module's docstring. {transactions} transactions of up to "
        f"{PER_TRANSACTION} records per condition; milliseconds of `send_offsets_to_transaction` plus "
        "`commit_transaction`.",
        "",
        "| condition | p50 | p99 | max |",
        "|---|---:|---:|---:|",
    ]
    for condition in conditions:
        lines.append(f"| {condition.name} | {condition.percentile(0.5):.1f} | {condition.percentile(0.99):.1f} | "
                     f"{max(condition.milliseconds):.1f} |")  # fmt: skip
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = section_parser("bench.commit_floor", __doc__)
    parser.add_argument("--transactions", type=int, default=300, help="transactions per condition (default 300)")
    parser.add_argument("--hogs", type=int, default=2, help="processes spinning in the last condition (default 2)")
    parser.add_argument("--bootstrap", help="use this broker instead of starting one (KAFKA_BOOTSTRAP_SERVERS)")
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        bootstrap, machine = broker_and_machine(stack, args.bootstrap)
        conditions = measure(bootstrap, args.transactions, args.hogs)
    lines = report_lines(conditions, date=machine.date, cores=machine.cores, load=machine.load_start[0],
                         transactions=args.transactions)  # fmt: skip
    return write_section(lines, HEADING, args.update)


if __name__ == "__main__":
    sys.exit(main())
