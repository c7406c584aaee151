"""The naive peer: the script anyone would write in an afternoon, to compare imgsweep against.

Consume one event, make ONE signed call for its images, commit, repeat. It is given the benefit of the doubt:
it sleeps 1/QPS after each call (so it rarely burns calls on 10043), retries a 10043 after a second,
reads plain JSON and both CloudEvents modes, and skips what it cannot read. What it lacks is batching: every
call carries one product's 1 to 8 images, where the API takes 200.

    python -m bench.naive_peer --bootstrap 127.0.0.1:9092 --topic catalog.product-delisted \\
        --endpoint http://127.0.0.1:8900/jdai/product_image_del_image --qps 2 --duration 60

Keys come from IMGSWEEP_API__ACCESS_KEY / IMGSWEEP_API__SECRET_KEY. Runs until ``--duration`` seconds pass or
SIGTERM, then prints one JSON line of what it did on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import httpx
from confluent_kafka import Consumer, Message

from service.api.signing import Credentials, sign_request

__all__ = ["NaivePeer", "main"]


def _fields(message: Message) -> dict[str, Any] | None:
    """The delist fields of a plain, structured or binary CloudEvents record; None if unreadable."""
    try:
        document = json.loads(message.value() or b"")
        fields = document.get("data", document)
        if not fields["image_ids"] or not isinstance(fields["image_ids"], list):
            return None
        return {
            "collection_name": str(fields["collection_name"]),
            "product_id": str(fields["product_id"]),
            "image_ids": [str(image) for image in fields["image_ids"]],
        }
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


@dataclass
class NaivePeer:
    endpoint: str
    credentials: Credentials
    region: str
    service: str
    qps: float
    stop: threading.Event
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30, trust_env=False))
    codes: Counter[str] = field(default_factory=Counter)
    events: int = 0
    skipped: int = 0
    images_sent: int = 0

    def handle(self, fields: dict[str, Any]) -> bool:
        """One call for one event's images, retried on 10043; False if stopped before it succeeded."""
        body = json.dumps(
            {
                "collection_name": fields["collection_name"],
                "image_id_list": [{"product_id": fields["product_id"], "image_id": i} for i in fields["image_ids"]],
            }
        ).encode()
        while not self.stop.is_set():
            headers = sign_request(
                method="POST",
                url=self.endpoint,
                headers={"Content-Type": "application/json"},
                body=body,
                credentials=self.credentials,
                region=self.region,
                service=self.service,
                now=datetime.now(UTC),
                nonce=str(uuid.uuid4()),
            )
            try:
                code = str(self.client.post(self.endpoint, content=body, headers=headers).json().get("code"))
            except (httpx.HTTPError, ValueError):
                code = "error"
            self.codes[code] += 1
            if code in ("10043", "error"):  # over the QPS or a hiccup: wait a second and try again
                self.stop.wait(1.0)
                continue
            self.images_sent += len(fields["image_ids"])
            self.events += 1
            self.stop.wait(1.0 / self.qps)  # stay under the QPS limit
            return True
        return False

    def summary(self) -> dict[str, object]:
        return {
            "events": self.events,
            "skipped": self.skipped,
            "images_sent": self.images_sent,
            "calls_by_code": dict(self.codes),
        }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.naive_peer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", default=f"naive-peer-{uuid.uuid4().hex[:8]}")
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--qps", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=60.0, help="stop after this many seconds")
    parser.add_argument("--region", default="cn-north-1")
    parser.add_argument("--service", default="aiapi")
    args = parser.parse_args(argv)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    peer = NaivePeer(
        endpoint=args.endpoint,
        credentials=Credentials(os.environ["IMGSWEEP_API__ACCESS_KEY"], os.environ["IMGSWEEP_API__SECRET_KEY"]),
        region=args.region,
        service=args.service,
        qps=args.qps,
        stop=stop,
    )
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([args.topic])
    deadline = time.monotonic() + args.duration
    while not stop.is_set() and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None or message.error() is not None:
            continue
        fields = _fields(message)
        if fields is None:
            peer.skipped += 1
        elif not peer.handle(fields):
            break  # stopped before the call went through: leave the event uncommitted
        consumer.commit(message=message, asynchronous=False)
    consumer.close()
    peer.client.close()
    print(json.dumps(peer.summary()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
