"""librdkafka alone, the only broker stopped just as ``send_offsets_to_transaction`` is called (docs/reliability.md,
"A Kafka outage past the session timeout"): does that call time out, does the abort after it ever finish, is a
record refused meanwhile, and does a new producer with the same ``transactional.id`` take over?

    python -m bench.commit_outage [--delay 0.1] [--down 8]

``--delay``: seconds between the broker's stop and the call. Timing decides: of 5 runs on 2026-12-07 (2-core
machine, 8 s down) one caught it (0.1 s: the call timed out after 60 s, ``transaction.timeout.ms``; every abort
timed out for 60 s more, ``produce`` refused with ``_STATE`` meanwhile; a new producer initialised in 0.0 s and
committed); in the others the call went through before the stop (0.0 s) or once the broker was back (0.1 s, 1.0 s twice,
after the reconnect backoff), and the abort finished. A broker of its own (the cached jars), on loopback; 1-2 min.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from devkit.processes import load_kafka_local
from service.kafka_clients import CONNECTION_RETRY

ABORT_TRIES = 30
ABORT_TIMEOUT_SECONDS = 2.0
BEGAN = time.monotonic()


def say(*what: object) -> None:
    print(f"{time.monotonic() - BEGAN:7.1f}", *what, flush=True)


def group_input(bootstrap: str) -> tuple[Consumer, list[TopicPartition]]:
    """Topics ``in`` and ``out``; a consumer of ``in`` in group ``g`` that read 10 records, and its offsets."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic("in", 1, 1), NewTopic("out", 1, 1)]).values():
        future.result()
    plain = Producer({"bootstrap.servers": bootstrap})
    for _ in range(10):
        plain.produce("in", b"x")
    plain.flush(10)
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "g", "enable.auto.commit": False, "auto.offset.reset": "earliest"}
    )  # fmt: skip
    consumer.subscribe(["in"])
    read: list[Any] = []
    while not read:
        read = consumer.consume(10, 1.0)
    return consumer, [TopicPartition("in", 0, len(read))]


def abort_in_outage(producer: Producer) -> None:
    """Asks the abort again every 2 s, as the service does; a record produced meanwhile is refused (_STATE)."""
    for attempt in range(ABORT_TRIES):
        try:
            producer.abort_transaction(ABORT_TIMEOUT_SECONDS)
        except KafkaException as exc:
            if attempt in {0, ABORT_TRIES - 1}:
                say(f"abort_transaction (try {attempt + 1}):", exc.args[0].str())
        else:
            say(f"abort_transaction: done (try {attempt + 1})")
            return
        try:
            producer.produce("out", b"b")
        except KafkaException as exc:
            if attempt == 0:
                say("produce during the abort:", exc.args[0].str())


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--delay", type=float, default=0.1)
    parser.add_argument("--down", type=float, default=8.0)
    args = parser.parse_args()
    kafka_local = load_kafka_local()
    kafka_local.fetch()
    broker = kafka_local.LocalKafka(data_dir=Path(tempfile.mkdtemp(prefix="commit-outage-")) / "kafka")
    broker.start()
    try:
        consumer, offsets = group_input(broker.bootstrap_servers)
        config = {
            "bootstrap.servers": broker.bootstrap_servers, "transactional.id": "t1", "enable.idempotence": True,
            "acks": "all", **CONNECTION_RETRY,
        }  # fmt: skip
        producer = Producer(config)
        producer.init_transactions(30)
        producer.begin_transaction()
        producer.produce("out", b"a")
        producer.flush(10)
        say("a record in the transaction; the broker stops")

        def restart_broker() -> None:
            say(f"broker serving again after {broker.restart(down_seconds=args.down):.1f} s")

        restart = threading.Thread(target=restart_broker)
        restart.start()
        time.sleep(args.delay)
        try:
            producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata())
            say("send_offsets_to_transaction: done")
        except KafkaException as exc:
            say("send_offsets_to_transaction:", exc.args[0].str(), "retriable:", exc.args[0].retriable())
        restart.join()
        abort_in_outage(producer)
        producer.purge()
        renewed = Producer(config)
        started = time.monotonic()
        renewed.init_transactions(30)
        say(f"a new producer with the same transactional.id: initialised in {time.monotonic() - started:.1f} s")
        renewed.begin_transaction()
        renewed.produce("out", b"c")
        renewed.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata())
        renewed.commit_transaction(30)
        say("the new producer committed")
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
