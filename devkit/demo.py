"""``python -m devkit demo``: the whole main job on one machine, in one command, without Docker.

Starts a local Kafka broker (deploy/local/kafka_local.py), the JD API sandbox and imgsweep itself; produces a
realistic stream (several collections, some invalid records, some images already gone, some CloudEvents);
shows live progress; prints sample outcomes and where the metrics are; then stops everything, also on
Ctrl-C, leaving no process behind. Runs from a source checkout (it needs deploy/local/).
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from devkit.processes import SandboxProcess, ServiceProcess, Topics, free_port, load_kafka_local, send
from devkit.sample import SampleStream, present_images

__all__ = ["add_demo_command"]


def _say(message: str) -> None:
    print(f"[demo] {message}", file=sys.stderr, flush=True)


def _stop(stop: Callable[[], bool], name: str) -> None:
    if not stop():
        _say(f"{name} did not stop in time; it was killed")


class _Progress:
    """Counts outcomes and dead letters as they arrive and draws one status line."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.images: Counter[str] = Counter()
        self.events: Counter[str] = Counter()
        self.dead_letters: Counter[str] = Counter()
        self.samples: list[dict[str, Any]] = []

    @property
    def finished(self) -> int:
        invalid = sum(n for reason, n in self.dead_letters.items() if reason != "retries_exhausted")
        return sum(self.events.values()) + invalid

    def outcome(self, document: dict[str, Any]) -> None:
        self.events[document["status"]] += 1
        for image in document["images"]:
            self.images[image["status"]] += 1
        if len(self.samples) < 3 or (document["status"] != "deleted" and len(self.samples) < 5):
            self.samples.append(document)

    def line(self) -> str:
        width = 30
        done = min(self.finished, self.total)
        filled = int(width * done / self.total) if self.total else width
        bar = "#" * filled + "-" * (width - filled)
        return (
            f"\r[{bar}] {done}/{self.total} events | images deleted {self.images['deleted']}, "
            f"absent {self.images['absent']}, failed {self.images['failed']} | "
            f"dead-lettered {sum(self.dead_letters.values())}   "
        )


def run_demo(args: argparse.Namespace) -> int:
    try:
        kafka_local = load_kafka_local()
    except FileNotFoundError as error:
        raise SystemExit(f"devkit demo: {error}") from None
    interrupted = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        interrupted.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="imgsweep-demo-") as workdir:
        _say("fetching the Kafka broker's jars (cached after the first run)")
        kafka_local.fetch()
        broker = kafka_local.LocalKafka(data_dir=Path(workdir) / "kafka")
        bootstrap: str = broker.start()
        stack.callback(broker.stop)
        _say(f"Kafka broker on {bootstrap}")
        topics = Topics.create(
            AdminClient({"bootstrap.servers": bootstrap}), f"demo.{uuid.uuid4().hex[:6]}", partitions=4
        )

        faults = ["--http-503-rate", "0.03", "--item-error-rate", "0.01", "--latency-ms", "40"]
        try:
            sandbox = SandboxProcess.start(Path(workdir) / "sandbox.log", ["--qps", str(args.qps), *faults])
        except RuntimeError as error:
            raise SystemExit(f"devkit demo: {error}") from None
        stack.callback(_stop, sandbox.stop, "sandbox")
        _say(f"JD API sandbox on {sandbox.url} (QPS limit {args.qps}, a few injected 503s and item errors)")

        stream = SampleStream(rng=random.Random(args.seed))
        records = list(stream.records(args.count))
        sandbox.seed(present_images(records))

        service = _start_imgsweep(
            stack,
            workdir=Path(workdir),
            bootstrap=bootstrap,
            topics=topics,
            sandbox=sandbox,
            args=args,
            interrupted=interrupted,
        )
        metrics_url = f"http://127.0.0.1:{service.port}/metrics"
        if not interrupted.is_set():
            _say(f"imgsweep is ready; metrics at {metrics_url}, health at /livez and /readyz")

        producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
        sender = threading.Thread(
            target=send,
            args=(producer, topics.input, [record.record for record in records]),
            kwargs={"rate": args.rate},
            daemon=True,
        )
        sender.start()
        kinds = Counter(record.kind for record in records)
        _say(f"producing {len(records)} events at {args.rate}/s: {dict(kinds)}")
        progress = _follow(
            bootstrap, topics=topics, total=len(records), service=service, interrupted=interrupted, timeout=args.timeout
        )

        print(file=sys.stderr)
        if interrupted.is_set():
            _say("interrupted: stopping everything")
            return 130
        _report(progress, metrics_url, service.log_path)
        if args.keep_running:
            _say("still running so you can look around; Ctrl-C stops everything")
            interrupted.wait()
        _say("stopping imgsweep, the sandbox and the broker")
    _say("done: nothing left running")
    return 0 if progress.finished >= progress.total else 1


def _start_imgsweep(
    stack: ExitStack,
    *,
    workdir: Path,
    bootstrap: str,
    topics: Topics,
    sandbox: SandboxProcess,
    args: argparse.Namespace,
    interrupted: threading.Event,
) -> ServiceProcess:
    """imgsweep against the demo's broker and sandbox, stopped with the stack; blocks until it is ready."""
    secrets_dir = workdir / "no-secrets"
    secrets_dir.mkdir()
    service = ServiceProcess.start(
        bootstrap=bootstrap,
        topics=topics,
        endpoint=sandbox.endpoint,
        log_path=workdir / "imgsweep.log",
        secrets_dir=secrets_dir,
        # No call budget (DAILY_CALLS -1): partial batches go after the linger. With a budget, a first start
        # holds them until it has watched the input for 3 minutes (docs/decisions/0011-call-budget.md), and a
        # demo of 80 events would show nothing for that long.
        settings={"API__QPS": str(args.qps), "BATCH__LINGER_SECONDS": "1", "API__DAILY_CALLS": "-1"},
        port=args.metrics_port or free_port(),
        wait=False,
    )
    stack.callback(_stop, service.stop, "imgsweep")
    try:
        service.wait_ready(cancelled=interrupted.is_set)
    except RuntimeError as error:
        raise SystemExit(f"devkit demo: {error}") from None
    return service


def _follow(
    bootstrap: str,
    *,
    topics: Topics,
    total: int,
    service: ServiceProcess,
    interrupted: threading.Event,
    timeout: float,
) -> _Progress:
    progress = _Progress(total)
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"demo-reader-{uuid.uuid4().hex[:6]}",
         "auto.offset.reset": "earliest", "enable.auto.commit": False, "isolation.level": "read_committed"}
    )  # fmt: skip
    consumer.subscribe([topics.outcome, topics.dlq])
    deadline = time.monotonic() + timeout
    try:
        while progress.finished < total and not interrupted.is_set() and time.monotonic() < deadline:
            if service.process.poll() is not None:
                _say("imgsweep exited unexpectedly")
                break
            for message in consumer.consume(500, timeout=0.2):
                if message.error() is not None:
                    continue
                if message.topic() == topics.outcome:
                    progress.outcome(json.loads(message.value() or b"{}"))
                else:
                    headers = dict(message.headers() or [])
                    reason = headers.get("imgsweep_error_class") or b"unknown"
                    progress.dead_letters[reason.decode() if isinstance(reason, bytes) else str(reason)] += 1
            sys.stderr.write(progress.line())
            sys.stderr.flush()
    finally:
        consumer.close()
    return progress


def _report(progress: _Progress, metrics_url: str, log_path: Path) -> None:
    _say(
        f"events: {dict(progress.events)}; images: {dict(progress.images)}; dead letters: {dict(progress.dead_letters)}"
    )
    _say("sample outcomes:")
    for sample in progress.samples[:5]:
        print(json.dumps(sample, ensure_ascii=False), file=sys.stderr)
    try:
        text = httpx.get(metrics_url, timeout=5).text
        wanted = ("imgsweep_api_calls_total{", "imgsweep_quota_remaining_calls{", "imgsweep_batch_items_sum{",
                  "imgsweep_batch_items_count{")  # fmt: skip
        lines = [line for line in text.splitlines() if line.startswith(wanted) and not line.endswith(" 0.0")]
        _say(f"a few metrics from {metrics_url}:")
        for line in lines[:12]:
            print(f"  {line}", file=sys.stderr)
    except httpx.HTTPError as error:
        _say(f"could not read the metrics: {error}")
    _say(f"imgsweep's log: {log_path} (removed when the demo ends)")


def add_demo_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "demo", help="run Kafka, the sandbox and imgsweep locally on a sample stream (no Docker)", description=__doc__
    )
    parser.add_argument("--count", type=int, default=600, help="events to produce (default: 600)")
    parser.add_argument("--rate", type=float, default=100.0, help="events per second (default: 100)")
    parser.add_argument("--qps", type=int, default=2, help="the sandbox's and imgsweep's QPS limit (default: 2)")
    parser.add_argument("--seed", type=int, default=None, help="random seed of the sample stream")
    parser.add_argument("--metrics-port", type=int, default=None, help="imgsweep's HTTP port (default: a free one)")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    parser.add_argument("--keep-running", action="store_true", help="after the report, keep running until Ctrl-C")
    parser.set_defaults(handler=run_demo)
