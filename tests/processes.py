"""The service and the sandbox as their own processes, over loopback, against the real broker.

`sandbox_process()` starts `imgsweep sandbox`, `service_process()` starts `imgsweep run`; both are stopped
(and, if need be, killed) when the test ends, so no test leaves a process behind.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from devkit.local_stack import clean_env, free_port, stop_process

FIGURES: list[str] = []
"""Figures tests measured (JSON lines); printed at the end of the session by tests/conftest.py."""

ACCESS_KEY = "e2e-access-key"
SECRET_KEY = "e2e-SECRET-never-logged-0123456789"


@dataclass
class SandboxProcess:
    process: subprocess.Popen[str]
    url: str
    log_path: Path

    @property
    def endpoint(self) -> str:
        return f"{self.url}/jdai/product_image_del_image"

    def admin(self, path: str, document: object | None = None) -> Any:
        if document is None:
            response = httpx.get(f"{self.url}{path}", timeout=10)
        else:
            response = httpx.post(f"{self.url}{path}", json=document, timeout=10)
        response.raise_for_status()
        return response.json()

    def seed(self, collection: str, items: list[tuple[str, str]]) -> None:
        for start in range(0, len(items), 5000):
            chunk = items[start : start + 5000]
            self.admin(
                "/admin/images",
                {"collection_name": collection, "items": [{"product_id": p, "image_id": i} for p, i in chunk]},
            )

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.admin("/admin/stats")
        return stats

    def stop(self) -> None:
        stop_process(self.process)


@dataclass
class ServiceProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    env: dict[str, str] = field(repr=False)

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=5)

    def metrics(self) -> str:
        return self.get("/metrics").text

    def metric(self, name: str, labels: str = "") -> float:
        """One series' value (``labels`` as in the exposition, e.g. ``status="deleted"``), or the sum of all."""
        total = 0.0
        for line in self.metrics().splitlines():
            series, _, value = line.rpartition(" ")
            if labels and series == f"{name}{{{labels}}}":
                return float(value)
            if not labels and (series == name or series.startswith(name + "{")):
                total += float(value)
        return total

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"service exited with {self.process.returncode}:\n{self.logs()[-3000:]}")
            try:
                if self.get("/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"service not ready within {timeout}s:\n{self.logs()[-3000:]}")

    def wait_assigned(self, partitions: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if len(self.get("/readyz").json()["assigned_partitions"]) == partitions:
                    return
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.1)
        raise AssertionError(f"service never had {partitions} partitions:\n{self.logs()[-3000:]}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 60) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        stop_process(self.process)


SandboxFactory = Callable[..., SandboxProcess]
ServiceFactory = Callable[..., ServiceProcess]
TopicsFactory = Callable[..., "Topics"]


@pytest.fixture
def sandbox_process(tmp_path: Path) -> Iterator[SandboxFactory]:
    started: list[SandboxProcess] = []

    def start(*flags: str) -> SandboxProcess:
        log_path = tmp_path / f"sandbox-{len(started)}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "sandbox", "--port", "0", *flags],
            stdout=subprocess.PIPE,
            stderr=log_path.open("w"),
            text=True,
            env={**clean_env(), "IMGSWEEP_API__ACCESS_KEY": ACCESS_KEY, "IMGSWEEP_API__SECRET_KEY": SECRET_KEY},
        )
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.startswith("sandbox listening on "):
            process.kill()
            raise AssertionError(f"sandbox did not start: {line!r} {log_path.read_text()}")
        sandbox = SandboxProcess(process, line.removeprefix("sandbox listening on "), log_path)
        started.append(sandbox)
        return sandbox

    yield start
    for sandbox in started:
        sandbox.stop()


@dataclass
class Topics:
    input: str
    outcome: str
    dlq: str
    group: str


@pytest.fixture
def topics(kafka_admin: AdminClient) -> Iterator[TopicsFactory]:
    made: list[str] = []

    def create(partitions: int = 3) -> Topics:
        tag = uuid.uuid4().hex[:10]
        names = Topics(f"in-{tag}", f"out-{tag}", f"dlq-{tag}", f"group-{tag}")
        new = [
            NewTopic(names.input, num_partitions=partitions, replication_factor=1),
            NewTopic(names.outcome, num_partitions=1, replication_factor=1),
            NewTopic(names.dlq, num_partitions=1, replication_factor=1),
        ]
        for future in kafka_admin.create_topics(new, operation_timeout=30).values():
            future.result(30)
        made.extend([names.input, names.outcome, names.dlq])
        return names

    yield create
    if made:
        for future in kafka_admin.delete_topics(made, operation_timeout=30).values():
            future.result(30)


@pytest.fixture
def service_process(tmp_path: Path, kafka_bootstrap: str) -> Iterator[ServiceFactory]:
    started: list[ServiceProcess] = []

    secrets_dir = tmp_path / "no-secrets"
    secrets_dir.mkdir(exist_ok=True)

    def start(topics: Topics, sandbox: SandboxProcess | None, **settings: str) -> ServiceProcess:
        port = free_port()
        env = {
            **clean_env(),
            "IMGSWEEP_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
            "IMGSWEEP_KAFKA__GROUP_ID": topics.group,
            "IMGSWEEP_KAFKA__INPUT_TOPIC": topics.input,
            "IMGSWEEP_KAFKA__OUTCOME_TOPIC": topics.outcome,
            "IMGSWEEP_KAFKA__DLQ_TOPIC": topics.dlq,
            "IMGSWEEP_API__ACCESS_KEY": ACCESS_KEY,
            "IMGSWEEP_API__SECRET_KEY": SECRET_KEY,
            "IMGSWEEP_API__BACKOFF_INITIAL_SECONDS": "0.05",
            "IMGSWEEP_API__BACKOFF_MAX_SECONDS": "0.5",
            "IMGSWEEP_API__READ_TIMEOUT_SECONDS": "2",
            "IMGSWEEP_BATCH__LINGER_SECONDS": "0.3",
            "IMGSWEEP_HTTP__PORT": str(port),
            "IMGSWEEP_HTTP__HOST": "127.0.0.1",
            "IMGSWEEP_LOG__LEVEL": "INFO",
            "IMGSWEEP_SECRETS_DIR": str(secrets_dir),
        }
        if sandbox is not None:
            env["IMGSWEEP_API__ENDPOINT"] = sandbox.endpoint
        env.update({f"IMGSWEEP_{name.upper()}": value for name, value in settings.items()})
        log_path = tmp_path / f"service-{len(started)}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "run"],
            stdout=log_path.open("ab"),
            stderr=subprocess.STDOUT,
            env=env,
        )
        service = ServiceProcess(process, port, log_path, env)
        started.append(service)
        service.wait_ready()
        return service

    yield start
    for service in started:
        service.stop()


Record = tuple[bytes | None, bytes | None, list[tuple[str, str | bytes | None]]]


def produce(bootstrap: str, topic: str, records: Sequence[Record]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    for key, value, headers in records:
        while True:
            try:
                producer.produce(topic, key=key, value=value, headers=headers)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(30) == 0


def event(event_id: str, collection: str, product: str, images: list[str]) -> Record:
    document = {"event_id": event_id, "collection_name": collection, "product_id": product, "image_ids": images}
    return product.encode(), json.dumps(document).encode(), []


@dataclass
class Consumed:
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]

    def json(self) -> Any:
        assert self.value is not None
        return json.loads(self.value)


def consume_all(bootstrap: str, topic: str, *, expect: int, timeout: float = 60, settle: float = 0.0) -> list[Consumed]:
    """Reads the topic from the start until ``expect`` records came (then ``settle`` more seconds for extras)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    records: list[Consumed] = []
    deadline = time.monotonic() + timeout
    settle_until: float | None = None
    try:
        while time.monotonic() < deadline:
            if settle_until is None and len(records) >= expect:
                settle_until = time.monotonic() + settle
            if settle_until is not None and time.monotonic() >= settle_until:
                break
            for message in consumer.consume(500, timeout=0.2):
                if message.error() is not None:
                    continue
                raw = message.headers() or []
                pairs = raw.items() if isinstance(raw, dict) else raw
                headers = {name: value.encode() if isinstance(value, str) else value or b"" for name, value in pairs}
                records.append(Consumed(message.key(), message.value(), headers))
    finally:
        consumer.close()
    return records


def wait_for(condition: Callable[[], bool], timeout: float, message: str) -> None:
    """Polls ``condition`` every 0.1 s; fails with ``message`` if it is not true within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(message)
