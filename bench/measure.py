"""How each quantity is measured, and what a measurement holds. Every function here blocks for its run.

Rates under backlog are taken between the moments 10 % and 90 % of the events were done, so start-up (imports,
the group join) and the tail (the last batches' linger) weigh on neither side of a ratio. Call rates are
taken over a window that starts and ends on a call, so the window holds whole call intervals.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from devkit.processes import ACCESS_KEY, SECRET_KEY, ProcessUsage, SandboxProcess, ServiceProcess, sample_total
from service.api.signing import Credentials, sign_request

__all__ = [
    "CallWindow",
    "DrainRun",
    "LatencyRun",
    "SandboxCapacity",
    "ThroughputRun",
    "WindowSample",
    "call_window",
    "drain",
    "forward_loop",
    "minimal_loop",
    "outcome_latencies",
    "raw_consume",
    "sandbox_capacity",
]

CONSUME_BATCH: Final = 500
"""As many records per ``consume()`` as the service asks for (service.pipeline.processor.CONSUME_BATCH)."""
LOW, HIGH = 0.1, 0.9

Sample = tuple[float, float]
"""(seconds since the run started, events done by then)"""


def rate_between(samples: Sequence[Sample], total: int) -> tuple[float, float]:
    """Events a second between the moments LOW and HIGH of ``total`` were done, interpolated between samples;
    returns (rate, seconds between those moments)."""
    low, high = _crossing(samples, LOW * total), _crossing(samples, HIGH * total)
    seconds = max(high - low, 1e-9)
    return (HIGH - LOW) * total / seconds, seconds


def _crossing(samples: Sequence[Sample], level: float) -> float:
    previous = (0.0, 0.0)
    for at, done in samples:
        if done >= level:
            (t0, d0), (t1, d1) = previous, (at, done)
            return t1 if d1 == d0 else t0 + (level - d0) * (t1 - t0) / (d1 - d0)
        previous = (at, done)
    raise ValueError(f"the run never reached {level:.0f} events")


@dataclass(frozen=True)
class ThroughputRun:
    events: int
    events_per_second: float
    window_seconds: float
    """Seconds between 10 % and 90 % of the events."""
    passes: tuple[float, ...] = ()
    """Events/s of every pass, when the rate is the median of several."""


def raw_consume(bootstrap: str, topic: str, expected: int, timeout: float) -> ThroughputRun:
    """A bare confluent-kafka consumer reading the topic from the start: ``consume()`` and count, no decoding."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-raw-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    samples: list[Sample] = []
    count = 0
    started: float | None = None
    deadline = time.monotonic() + timeout
    try:
        while count < expected and time.monotonic() < deadline:
            messages = consumer.consume(num_messages=CONSUME_BATCH, timeout=0.5)
            if not messages:
                continue
            now = time.monotonic()
            if started is None:
                started = now
            count += sum(1 for message in messages if message.error() is None)
            samples.append((now - started, float(count)))
    finally:
        consumer.close()
    if count < expected:
        raise RuntimeError(f"the raw consumer read {count} of {expected} records within {timeout:.0f} s")
    rate, seconds = rate_between(samples, expected)
    return ThroughputRun(expected, rate, seconds)


def minimal_loop(bootstrap: str, topic: str, outcome_topic: str, expected: int, timeout: float) -> ThroughputRun:
    """The least any Python service must do per event, as a reference: ``consume()``, ``json.loads`` the value,
    produce one small JSON outcome (idempotent, acks=all, as imgsweep's producer), count it when acknowledged,
    commit every second. No validation, no batching, no API call."""

    def outcome(message: Message) -> bytes | None:
        try:
            event = json.loads(message.value() or b"")
            return json.dumps({"event_id": event.get("event_id") or event.get("id"), "status": "deleted"}).encode()
        except (ValueError, AttributeError):
            return None  # would be dead-lettered

    return _produce_loop(bootstrap, topic, outcome_topic, expected, timeout, outcome=outcome, name="the minimal loop")


def forward_loop(bootstrap: str, topic: str, outcome_topic: str, expected: int, timeout: float) -> ThroughputRun:
    """The floor the contract sets: one record published (and acknowledged) per record consumed, offsets
    committed after. The consumed value is produced unchanged: no decoding, no outcome built, no API call. No
    implementation that publishes one outcome per event can finish events faster than this loop on this
    broker and machine."""

    def unchanged(message: Message) -> bytes | None:
        value: bytes | None = message.value()
        return value

    return _produce_loop(
        bootstrap, topic, outcome_topic, expected, timeout, outcome=unchanged, name="the forwarding loop"
    )


def _produce_loop(
    bootstrap: str,
    topic: str,
    outcome_topic: str,
    expected: int,
    timeout: float,
    *,
    outcome: Callable[[Message], bytes | None],
    name: str,
) -> ThroughputRun:
    """Consume, produce ``outcome(record)`` (None: the record counts as done at once), count acknowledged
    records, commit every second."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-loop-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 5})
    consumer.subscribe([topic])
    done = [0]

    def delivered(error: KafkaError | None, _message: Message) -> None:
        if error is None:
            done[0] += 1

    samples: list[Sample] = []
    started: float | None = None
    last_commit = 0.0
    deadline = time.monotonic() + timeout
    try:
        while done[0] < expected and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=CONSUME_BATCH, timeout=0.05):
                if message.error() is not None:
                    continue
                value = outcome(message)
                if value is None:
                    done[0] += 1
                    continue
                while True:
                    try:
                        producer.produce(outcome_topic, value, message.key(), on_delivery=delivered)
                        break
                    except BufferError:
                        producer.poll(0.01)
            producer.poll(0)
            now = time.monotonic()
            if started is None and done[0]:
                started = now
            if started is not None:
                samples.append((now - started, float(done[0])))
            if now - last_commit >= 1.0:
                last_commit = now
                with contextlib.suppress(KafkaException):  # nothing consumed yet
                    consumer.commit(asynchronous=True)
        producer.flush(30)
    finally:
        consumer.close()
    if done[0] < expected:
        raise RuntimeError(f"{name} finished {done[0]} of {expected} records within {timeout:.0f} s")
    rate, seconds = rate_between(samples, expected)
    return ThroughputRun(expected, rate, seconds)


def finished_events(metrics: dict[str, float]) -> float:
    """Events imgsweep is done with: outcomes acknowledged, plus invalid records dead-lettered."""
    outcomes = sample_total(metrics, "imgsweep_outcomes_total")
    return outcomes + sample_total(metrics, "imgsweep_dead_letters_total", 'reason="invalid_event"')


@dataclass(frozen=True)
class DrainRun:
    """imgsweep draining a backlog: throughput, what the process used, and how it batched."""

    events: int
    events_per_second: float
    window_seconds: float
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    batch_items_mean: float
    api_calls: float
    timeline: list[tuple[float, float, float]]
    """(seconds, events done, RSS MB)"""


def drain(service: ServiceProcess, expected: int, *, interval: float, timeout: float) -> DrainRun:
    """Samples the service's metrics and /proc until ``expected`` events are done. The service was started
    (ready) just before, so the CPU counted is what the drain cost, not the interpreter's start-up."""
    start_usage = service.usage()
    started = time.monotonic()
    samples: list[Sample] = []
    timeline: list[tuple[float, float, float]] = []
    done = 0.0
    metrics: dict[str, float] = {}
    while done < expected:
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"imgsweep finished {done:.0f} of {expected} events within {timeout:.0f} s")
        if service.process.poll() is not None:
            raise RuntimeError(f"imgsweep exited with {service.process.returncode}; see {service.log_path}")
        time.sleep(interval)
        metrics = service.metrics()
        usage = service.usage()
        done = finished_events(metrics)
        at = time.monotonic() - started
        samples.append((at, done))
        timeline.append((at, done, usage.rss_mb))
    end_usage: ProcessUsage = service.usage()
    rate, window = rate_between(samples, expected)
    count = sample_total(metrics, "imgsweep_batch_items_count")
    return DrainRun(
        events=expected,
        events_per_second=rate,
        window_seconds=window,
        seconds=samples[-1][0],
        cpu_seconds=end_usage.cpu_seconds - start_usage.cpu_seconds,
        peak_rss_mb=end_usage.peak_rss_mb,
        batch_items_mean=sample_total(metrics, "imgsweep_batch_items_sum") / count if count else 0.0,
        api_calls=count,
        timeline=timeline,
    )


@dataclass(frozen=True)
class WindowSample:
    """One sample of a call window, counted from its start."""

    seconds: float
    calls_ok: int
    deleted: int
    rejected_10043: int
    pace_qps: float | None = None
    """imgsweep's rate limiter pace then (imgsweep_rate_limit_qps); None for the peer."""
    consumed: float | None = None
    """Records imgsweep had consumed by then (imgsweep_events_consumed_total); None for the peer."""
    paused: bool = False
    """Whether imgsweep had paused its partitions (MAX_PENDING_EVENTS reached)."""


@dataclass(frozen=True)
class CallWindow:
    """What the sandbox saw during a window that starts and ends on a successful call."""

    seconds: float
    calls_ok: int
    calls_total: int
    calls_10043: int
    items: int
    """Items the sandbox processed (deleted, absent or failed) in the successful calls."""
    deleted: int
    timeline: list[WindowSample] = field(default_factory=list)

    @property
    def calls_per_second(self) -> float:
        return self.calls_ok / self.seconds

    @property
    def deleted_per_second(self) -> float:
        return self.deleted / self.seconds

    @property
    def items_per_call(self) -> float:
        return self.items / self.calls_ok if self.calls_ok else 0.0

    def second_half(self) -> tuple[float, int, int]:
        """(seconds, successful calls, 10043 answers) from the sample nearest the window's middle to its end:
        the pace once start-up (the first fill of pending events, any early 10043 and the recovery from it)
        is over."""
        middle = self.timeline[-1].seconds / 2
        start = min(self.timeline, key=lambda sample: abs(sample.seconds - middle))
        end = self.timeline[-1]
        return end.seconds - start.seconds, end.calls_ok - start.calls_ok, end.rejected_10043 - start.rejected_10043


def _ok(stats: dict[str, Any]) -> int:
    return int(stats["calls_by_code"].get("10000", 0))


def _rejected(stats: dict[str, Any]) -> int:
    return int(stats["calls_by_code"].get("10043", 0))


def _items(stats: dict[str, Any]) -> int:
    return int(stats["items_deleted"]) + int(stats["items_absent"]) + int(stats["items_failed"])


def _next_call(sandbox: SandboxProcess, after: int, timeout: float, poll: float = 0.01) -> tuple[float, dict[str, Any]]:
    """Blocks until the sandbox counted more than ``after`` successful calls; (when, the stats then)."""
    deadline = time.monotonic() + timeout
    while True:
        stats = sandbox.stats()
        now = time.monotonic()
        if _ok(stats) > after or now > deadline:
            return now, stats
        time.sleep(poll)


def call_window(
    sandbox: SandboxProcess,
    seconds: float,
    *,
    service: ServiceProcess | None = None,
    warmup_calls: int = 2,
    interval: float = 0.25,
) -> CallWindow:
    """Waits for ``warmup_calls`` successful calls, then counts the calls and items of about ``seconds``,
    sampling every ``interval`` (and imgsweep's pace, consumption and pausing, given the ``service``)."""
    _, stats = _next_call(sandbox, warmup_calls - 1, timeout=120)
    if _ok(stats) < warmup_calls:
        raise RuntimeError("no successful call reached the sandbox within 120 s")
    started, first = _next_call(sandbox, _ok(stats), timeout=30)

    def sample(at: float, stats: dict[str, Any]) -> WindowSample:
        pace = consumed = None
        paused = False
        if service is not None:
            metrics = service.metrics()
            pace = metrics.get('imgsweep_rate_limit_qps{account="default"}')
            consumed = sample_total(metrics, "imgsweep_events_consumed_total")
            paused = metrics.get("imgsweep_paused_partitions", 0.0) > 0
        return WindowSample(
            at,
            _ok(stats) - _ok(first),
            stats["items_deleted"] - first["items_deleted"],
            _rejected(stats) - _rejected(first),
            pace,
            consumed,
            paused,
        )

    timeline = [sample(0.0, first)]
    while time.monotonic() - started < seconds:
        time.sleep(min(interval, max(0.0, seconds - (time.monotonic() - started))))
        stats = sandbox.stats()
        timeline.append(sample(time.monotonic() - started, stats))
    ended, last = _next_call(sandbox, _ok(stats), timeout=30)
    timeline.append(sample(ended - started, last))
    return CallWindow(
        seconds=ended - started,
        calls_ok=_ok(last) - _ok(first),
        calls_total=last["calls_total"] - first["calls_total"],
        calls_10043=_rejected(last) - _rejected(first),
        items=_items(last) - _items(first),
        deleted=last["items_deleted"] - first["items_deleted"],
        timeline=timeline,
    )


@dataclass(frozen=True)
class LatencyRun:
    """From each valid event's CreateTime to the broker's LogAppendTime of its outcome."""

    events: int
    outcomes: int
    latencies: list[float]
    calls_per_second: float

    @property
    def p50(self) -> float:
        return _percentile(self.latencies, 50)

    @property
    def p99(self) -> float:
        return _percentile(self.latencies, 99)


def _percentile(values: Sequence[float], percent: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1]


def outcome_latencies(
    bootstrap: str, topic: str, created_ms: dict[bytes, int], *, timeout: float
) -> tuple[list[float], int]:
    """Reads the outcome topic (LogAppendTime) until every event in ``created_ms`` has an outcome or the
    timeout passes; returns the latencies in seconds and how many outcomes were read."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-outcomes-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    metadata = consumer.list_topics(topic, timeout=10).topics[topic]
    consumer.assign([TopicPartition(topic, partition, 0) for partition in metadata.partitions])
    seen: dict[bytes, float] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(seen) < len(created_ms) and time.monotonic() < deadline:
            for message in consumer.consume(CONSUME_BATCH, timeout=0.2):
                key = message.key()
                if message.error() is None and key in created_ms and key not in seen:
                    seen[key] = (message.timestamp()[1] - created_ms[key]) / 1000.0
    finally:
        consumer.close()
    return list(seen.values()), len(seen)


@dataclass(frozen=True)
class SandboxCapacity:
    calls: int
    seconds: float
    items_per_call: int

    @property
    def calls_per_second(self) -> float:
        return self.calls / self.seconds


def _signed_heads(url: str, body: bytes, count: int) -> list[bytes]:
    parts = urlsplit(url)
    credentials = Credentials(ACCESS_KEY, SECRET_KEY)
    heads = []
    for _ in range(count):
        headers = sign_request(
            method="POST",
            url=url,
            headers={"Content-Type": "application/json"},
            body=body,
            credentials=credentials,
            region="cn-north-1",
            service="aiapi",
            now=datetime.now(UTC),
            nonce=str(uuid.uuid4()),
        )
        lines = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        heads.append(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    return heads


def _read_response(sock: socket.socket, buffer: bytearray) -> None:
    """Reads one HTTP response with a Content-Length off a keep-alive socket (what follows stays in ``buffer``)."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the sandbox closed the connection")
        buffer += chunk
    end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:end]).lower()
    start = head.index(b"content-length:") + len(b"content-length:")
    length = int(head[start : head.index(b"\r\n", start)])
    while len(buffer) < end + length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the sandbox closed the connection")
        buffer += chunk
    del buffer[: end + length]


def sandbox_capacity(
    url: str, seconds: float, *, connections: int = 4, items: int = 200, client_cpu: int | None = None
) -> SandboxCapacity:
    """Calls the sandbox (``--qps 0``) back to back over ``connections`` keep-alive sockets, with requests
    signed beforehand so the client costs little; ``client_cpu`` pins the client's threads to one core."""
    body = json.dumps(
        {
            "collection_name": "capacity",
            "image_id_list": [{"product_id": "p", "image_id": f"{n}.jpg"} for n in range(items)],
        },
        separators=(",", ":"),
    ).encode()
    heads = _signed_heads(url, body, count=max(200, int(seconds * 3000)))
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    lock = threading.Lock()
    queue = iter(heads)
    done = [0]
    stop_at = time.monotonic() + seconds

    def client() -> None:
        if client_cpu is not None:
            os.sched_setaffinity(0, {client_cpu})  # this thread only
        with socket.create_connection((host, port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            buffer = bytearray()
            while time.monotonic() < stop_at:
                with lock:
                    head = next(queue, None)
                if head is None:
                    return
                sock.sendall(head + body)
                _read_response(sock, buffer)
                with lock:
                    done[0] += 1

    threads = [threading.Thread(target=client, name=f"capacity-{n}") for n in range(connections)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return SandboxCapacity(done[0], time.monotonic() - started, items)


def wait_until(condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)
