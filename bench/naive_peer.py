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
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import httpx
from confluent_kafka import Consumer, Message

from service.api.signing import Credentials, sign_request

__all__ = ["main"]


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
    credentials = Credentials(os.environ["IMGSWEEP_API__ACCESS_KEY"], os.environ["IMGSWEEP_API__SECRET_KEY"])

    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([args.topic])
    client = httpx.Client(timeout=30, trust_env=False)
    codes: Counter[str] = Counter()
    events = skipped = images_sent = 0
    interval = 1.0 / args.qps
    deadline = time.monotonic() + args.duration
    while not stop.is_set() and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None or message.error() is not None:
            continue
        fields = _fields(message)
        if fields is None:
            skipped += 1
        else:
            body = json.dumps(
                {
                    "collection_name": fields["collection_name"],
                    "image_id_list": [
                        {"product_id": fields["product_id"], "image_id": image} for image in fields["image_ids"]
                    ],
                }
            ).encode()
            while not stop.is_set():
                headers = sign_request(
                    method="POST",
                    url=args.endpoint,
                    headers={"Content-Type": "application/json"},
                    body=body,
                    credentials=credentials,
                    region=args.region,
                    service=args.service,
                    now=datetime.now(UTC),
                    nonce=str(uuid.uuid4()),
                )
                try:
                    code = str(client.post(args.endpoint, content=body, headers=headers).json().get("code"))
                except (httpx.HTTPError, ValueError):
                    code = "error"
                codes[code] += 1
                if code in ("10043", "error"):  # over the QPS or a hiccup: wait a second and try again
                    stop.wait(1.0)
                    continue
                images_sent += len(fields["image_ids"])
                events += 1
                stop.wait(interval)  # stay under the QPS limit
                break
        if stop.is_set():
            break  # the event was not handled: leave it uncommitted
        consumer.commit(message=message, asynchronous=False)
    consumer.close()
    client.close()
    summary = {"events": events, "skipped": skipped, "images_sent": images_sent, "calls_by_code": dict(codes)}
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
