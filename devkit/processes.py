"""The processes imgsweep is tried with: the local Kafka broker, the JD API sandbox and imgsweep itself.

One harness for the demo, the tests and the benchmarks. Each process is started the way an operator would
start it (``deploy/local/kafka_local.py``, ``python -m service sandbox``, ``python -m service run``, configured
only through ``IMGSWEEP_*`` variables), so what is tried is the real process, not an in-process stand-in.
Every start blocks until the process serves; every stop sends SIGTERM, waits, and kills only on a deadline.
Also here: the topics one imgsweep works on, producing and reading records, and /proc readings.

A source checkout carries the broker as a script (``deploy/`` is not a package), so it is loaded from its path.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import httpx
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from service.internal_topics import CONTROL_TOPIC_CONFIG, DEMAND_TOPIC_CONFIG  # how imgsweep makes them

__all__ = [
    "ACCESS_KEY",
    "DEMAND_TOPIC_CONFIG",
    "KAFKA_LOCAL",
    "SECRET_KEY",
    "Consumed",
    "ProcessUsage",
    "Record",
    "SandboxProcess",
    "ServiceProcess",
    "Topics",
    "clean_env",
    "consume_all",
    "event",
    "free_port",
    "imgsweep_env",
    "load_kafka_local",
    "produce",
    "produce_spread",
    "read_usage",
    "seed_images",
    "send",
    "stop_process",
    "wait_for",
]

REPO: Final = Path(__file__).resolve().parent.parent
KAFKA_LOCAL: Final = REPO / "deploy" / "local" / "kafka_local.py"
ACCESS_KEY: Final = "devkit-access-key"
SECRET_KEY: Final = "devkit-SECRET-never-logged-0123456789"  # noqa: S105 - the sandbox's made-up account
"""The made-up account the sandbox and imgsweep share; distinctive, so a test can search logs for it."""
DELETE_PATH: Final = "/jdai/product_image_del_image"
ADMIN_TIMEOUT: Final = 30.0
_LOG_TAIL: Final = 3000
_CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
_LABEL: Final = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
"""One label of an exposed series: name and (escaped) value."""

Record = tuple[bytes | None, bytes | None, list[tuple[str, str | bytes | None]]]
"""(key, value, headers) of one record to produce."""


# ---- the broker, and processes in general -----------------------------------------------------------------


def load_kafka_local() -> ModuleType:
    """The broker script as a module (``LocalKafka``, ``fetch``). Raises FileNotFoundError outside a checkout."""
    if not KAFKA_LOCAL.is_file():
        raise FileNotFoundError(f"{KAFKA_LOCAL} not found: the local broker needs a source checkout of imgsweep")
    loaded = sys.modules.get("kafka_local")
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location("kafka_local", KAFKA_LOCAL)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {KAFKA_LOCAL}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # registered before it runs, as importlib's recipe does
    spec.loader.exec_module(module)
    return module


def clean_env() -> dict[str, str]:
    """This process's environment without any ``IMGSWEEP_*`` setting, for a child given its own settings."""
    return {name: value for name, value in os.environ.items() if not name.upper().startswith("IMGSWEEP_")}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (another process may still take it before it is bound)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[Any], timeout: float = 30.0) -> bool:
    """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL. Blocks until it is gone; False if it was killed."""
    if process.poll() is not None:
        return True
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
        return False
    return True


def wait_for(condition: Callable[[], bool], timeout: float, message: str, interval: float = 0.1) -> None:
    """Polls ``condition``; raises AssertionError with ``message`` if it is not true within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(message)


@dataclass(frozen=True)
class ProcessUsage:
    """One reading of a process from /proc: CPU seconds so far, resident memory now and at its peak."""

    cpu_seconds: float
    rss_mb: float
    peak_rss_mb: float


def read_usage(pid: int) -> ProcessUsage:
    """User+system CPU of all the process's threads, VmRSS and VmHWM (the kernel's peak RSS). Linux only."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime (fields 14 and 15 of stat)
    status = Path(f"/proc/{pid}/status").read_text()
    rss = _status_kb(status, "VmRSS")
    peak = _status_kb(status, "VmHWM")
    return ProcessUsage(cpu_seconds=cpu, rss_mb=rss / 1024, peak_rss_mb=peak / 1024)


def _status_kb(status: str, name: str) -> float:
    match = re.search(rf"^{name}:\s+(\d+) kB", status, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"/proc status has no {name}")
    return float(match.group(1))


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-_LOG_TAIL:]
    except OSError:
        return ""


# ---- the sandbox --------------------------------------------------------------------------------------------


def seed_images(client: httpx.Client, images: Mapping[str, Sequence[tuple[str, str]]], chunk: int = 5000) -> int:
    """Stores images, (product, image) pairs per collection, through the /admin/images of the sandbox ``client``
    is based at; returns how many."""
    stored = 0
    for collection, items in images.items():
        for start in range(0, len(items), chunk):
            part = items[start : start + chunk]
            document = {"collection_name": collection, "items": [{"product_id": p, "image_id": i} for p, i in part]}
            client.post("/admin/images", json=document).raise_for_status()
            stored += len(part)
    return stored


@dataclass
class SandboxProcess:
    """``imgsweep sandbox`` on a free loopback port, with the made-up account (ACCESS_KEY, SECRET_KEY)."""

    process: subprocess.Popen[str]
    url: str
    log_path: Path
    _client: httpx.Client = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._client = httpx.Client(base_url=self.url, timeout=60, trust_env=False)

    @classmethod
    def start(
        cls,
        log_path: Path,
        flags: Sequence[str] = (),
        *,
        cpu: int | None = None,
        keys: tuple[str, str] = (ACCESS_KEY, SECRET_KEY),
    ) -> SandboxProcess:
        """Blocks until the sandbox prints its address; ``flags`` are the sandbox's (``--qps 5``); ``cpu`` pins
        it to one core (Linux); ``keys``: its account's access key and secret key. Raises RuntimeError, with
        its log, if it does not start."""
        command = [sys.executable, "-m", "service", "sandbox", "--port", "0", *flags]
        if cpu is not None:
            command = ["taskset", "-c", str(cpu), *command]
        env = {**clean_env(), "IMGSWEEP_API__ACCESS_KEY": keys[0], "IMGSWEEP_API__SECRET_KEY": keys[1]}
        with log_path.open("w") as log:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=REPO)
        line = process.stdout.readline().strip() if process.stdout is not None else ""
        if not line.startswith("sandbox listening on "):
            stop_process(process)
            raise RuntimeError(f"the sandbox did not start ({line!r}); {log_path}:\n{_tail(log_path)}")
        return cls(process, line.removeprefix("sandbox listening on "), log_path)

    @property
    def endpoint(self) -> str:
        return f"{self.url}{DELETE_PATH}"

    def admin(self, path: str, document: object | None = None) -> Any:
        """GET ``path`` of the admin API, or POST ``document`` to it; the answer's JSON."""
        response = self._client.get(path) if document is None else self._client.post(path, json=document)
        response.raise_for_status()
        return response.json()

    def seed(self, images: Mapping[str, Sequence[tuple[str, str]]]) -> int:
        """Stores images, (product, image) pairs per collection; returns how many."""
        return seed_images(self._client, images)

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.admin("/admin/stats")
        return stats

    def stop(self) -> bool:
        """False if it had to be killed."""
        self._client.close()
        return stop_process(self.process)


# ---- imgsweep -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Topics:
    """The topics one imgsweep works on, and its consumer group.

    ``control`` is where its replicas read pauses and brakes; when None, the input's name with ``.control`` (the
    service makes it when missing).

    ``demand`` is where its replicas share the QPS by demand; when None, a name no broker has (the input's with
    ``.demand``), so replicas share it by partitions and no two tests ever read each other's demand."""

    input: str
    outcome: str
    dlq: str
    group: str
    demand: str | None = None
    control: str | None = None

    @classmethod
    def named(cls, prefix: str) -> Topics:
        return cls(
            f"{prefix}.delisted", f"{prefix}.outcomes", f"{prefix}.dlq", f"{prefix}.group", f"{prefix}.demand",
            f"{prefix}.control",
        )  # fmt: skip

    @classmethod
    def create(cls, admin: AdminClient, prefix: str, *, partitions: int) -> Topics:
        """Creates the six (``partitions`` for the input and the deletions changelog, one each for outcomes, dead
        letters and the compacted demand and control topics); blocks until the broker has them, so a producer can
        use them at once."""
        topics = cls.named(prefix)
        new = [NewTopic(topics.input, num_partitions=partitions, replication_factor=1)]
        new += [NewTopic(name, num_partitions=1, replication_factor=1) for name in (topics.outcome, topics.dlq)]
        new.append(NewTopic(topics.demand_topic, num_partitions=1, replication_factor=1, config=DEMAND_TOPIC_CONFIG))
        new.append(  # as imgsweep would make it, co-partitioned with the input (service.internal_topics)
            NewTopic(
                topics.deletions_topic,
                num_partitions=partitions,
                replication_factor=1,
                config={"cleanup.policy": "compact,delete", "retention.ms": str(7 * 86_400_000)},
            )
        )
        new.append(NewTopic(topics.control_topic, num_partitions=1, replication_factor=1, config=CONTROL_TOPIC_CONFIG))
        for future in admin.create_topics(new, operation_timeout=ADMIN_TIMEOUT).values():
            future.result(ADMIN_TIMEOUT)
        return topics

    @property
    def demand_topic(self) -> str:
        return self.demand or f"{self.input}.demand"

    @property
    def deletions_topic(self) -> str:
        """The changelog of the memory of deletions (relists), one per test."""
        return f"{self.input}.deletions"

    @property
    def collections_topic(self) -> str:
        """The router's output (``IMGSWEEP_KAFKA__REPARTITION``), one per test; made by imgsweep when it routes."""
        return f"{self.input}.collections"

    @property
    def routed_deletions_topic(self) -> str:
        """The deletions changelog behind the router (``<deletions topic>.by-collection``), made by imgsweep."""
        return f"{self.deletions_topic}.by-collection"

    @property
    def made_by_imgsweep(self) -> list[str]:
        """The topics imgsweep makes for itself when it routes (the collections topic and its changelog)."""
        return [self.collections_topic, self.routed_deletions_topic]

    @property
    def control_topic(self) -> str:
        """Where its replicas read pauses and brakes: one per test, so no test's pause stops another's."""
        return self.control or f"{self.input}.control"

    @property
    def names(self) -> list[str]:
        optional = (name for name in (self.demand, self.control) if name)
        return [self.input, self.outcome, self.dlq, *optional, self.deletions_topic]


def imgsweep_env(
    *, bootstrap: str, topics: Topics, endpoint: str | None, settings: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The IMGSWEEP_* variables of one imgsweep on ``topics``, with the made-up account unless ``settings`` name
    accounts of their own (``ACCOUNTS__*``); ``settings`` are names without the prefix (``API__QPS``, any case)
    and win over the ones set here."""
    accounts = any(name.upper().startswith("ACCOUNTS__") for name in settings or {})
    env = {
        "IMGSWEEP_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "IMGSWEEP_KAFKA__GROUP_ID": topics.group,
        "IMGSWEEP_KAFKA__INPUT_TOPIC": topics.input,
        "IMGSWEEP_KAFKA__OUTCOME_TOPIC": topics.outcome,
        "IMGSWEEP_KAFKA__DLQ_TOPIC": topics.dlq,
        "IMGSWEEP_KAFKA__DEMAND_TOPIC": topics.demand_topic,
        "IMGSWEEP_KAFKA__DELETIONS_TOPIC": topics.deletions_topic,
        "IMGSWEEP_KAFKA__CONTROL_TOPIC": topics.control_topic,
        "IMGSWEEP_KAFKA__COLLECTIONS_TOPIC": topics.collections_topic,
    }
    if not accounts:
        env.update({"IMGSWEEP_API__ACCESS_KEY": ACCESS_KEY, "IMGSWEEP_API__SECRET_KEY": SECRET_KEY})
    if endpoint is not None:
        env["IMGSWEEP_API__ENDPOINT"] = endpoint
    env.update({f"IMGSWEEP_{name.upper()}": value for name, value in (settings or {}).items()})
    return env


def exposition_samples(text: str) -> dict[str, float]:
    """Every sample of a Prometheus text exposition, keyed by its series as exposed (``name{label="v"}``)."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            samples[series] = float(value)
    return samples


def sample_total(samples: Mapping[str, float], name: str, labels: str = "") -> float:
    """The sum of the series of ``name`` that carry every label of ``labels`` (written as in the exposition,
    e.g. ``status="deleted"`` or ``account="a",why="full"``); without ``labels``, of all its series (a metric
    with an ``account`` label: every account's)."""
    wanted = set(_LABEL.findall(labels))
    total = 0.0
    for series, value in samples.items():
        metric, _, rest = series.partition("{")
        if metric == name and wanted <= set(_LABEL.findall(rest)):
            total += value
    return total


@dataclass
class ServiceProcess:
    """``imgsweep run`` as its own process, configured only through IMGSWEEP_* variables, as in production."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    env: dict[str, str] = field(repr=False)
    _client: httpx.Client = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10, trust_env=False)

    @classmethod
    def start(
        cls,
        *,
        bootstrap: str,
        topics: Topics,
        endpoint: str | None,
        log_path: Path,
        secrets_dir: Path,
        settings: Mapping[str, str] | None = None,
        port: int | None = None,
        wait: bool = True,
        cwd: Path | None = None,
    ) -> ServiceProcess:
        """Starts the service (its output appended to ``log_path``) and, with ``wait``, blocks until /readyz
        answers 200; if it does not, the process is stopped and RuntimeError says why. ``settings`` are IMGSWEEP_*
        names without the prefix (``API__QPS``, any case); they win over the ones set here. ``cwd``: the source tree
        it runs from (a bench's worktree of another revision), this repository by default."""
        port = port or free_port()
        own = {"HTTP__HOST": "127.0.0.1", "HTTP__PORT": str(port), "SECRETS_DIR": str(secrets_dir)}
        env = {
            **clean_env(),
            **imgsweep_env(bootstrap=bootstrap, topics=topics, endpoint=endpoint, settings={**own, **(settings or {})}),
        }
        env.setdefault("TMPDIR", str(log_path.parent))  # its poison-record marks: the test's, as a pod's /tmp
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "service", "run"], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd or REPO
            )
        service = cls(process, port, log_path, env)
        if wait:
            try:
                service.wait_ready()
            except BaseException:
                service.stop()
                raise
        return service

    def get(self, path: str) -> httpx.Response:
        return self._client.get(path)

    def wait_ready(self, timeout: float = 60.0, *, cancelled: Callable[[], bool] = lambda: False) -> None:
        """Until /readyz answers 200 (or ``cancelled()``); RuntimeError, with the log's tail, if the process exits
        or the time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not cancelled():
            if self.process.poll() is not None:
                raise RuntimeError(f"imgsweep exited with {self.process.returncode}; {self.log_path}:\n{self._tail()}")
            try:
                if self.get("/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        if not cancelled():
            raise RuntimeError(f"imgsweep was not ready within {timeout:.0f} s; {self.log_path}:\n{self._tail()}")

    def wait_assigned(self, partitions: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if len(self.get("/readyz").json()["assigned_partitions"]) == partitions:
                    return
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"imgsweep never had {partitions} partitions; {self.log_path}:\n{self._tail()}")

    def exposition(self) -> str:
        """/metrics as served."""
        return self.get("/metrics").text

    def metrics(self) -> dict[str, float]:
        """Every sample of /metrics, keyed by its series as exposed (``name{label="v"}``)."""
        return exposition_samples(self.exposition())

    def metric(self, name: str, labels: str = "") -> float:
        """``sample_total`` of a fresh scrape."""
        return sample_total(self.metrics(), name, labels)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _tail(self) -> str:
        return _tail(self.log_path)

    @property
    def pid(self) -> int:
        return self.process.pid

    def usage(self) -> ProcessUsage:
        return read_usage(self.pid)

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM (a drain), and its exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> bool:
        """SIGTERM; if work is still pending after a moment (a backlog at 2 QPS would hold it for the whole
        shutdown grace period), a second SIGTERM abandons it, uncommitted, as the service documents. False if it
        had to be killed."""
        self._client.close()
        if self.process.poll() is not None:
            return True
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(2)
        except subprocess.TimeoutExpired:
            return stop_process(self.process, timeout=60)
        return True


# ---- records ------------------------------------------------------------------------------------------------


def send(producer: Producer, topic: str, records: Iterable[Record], *, rate: float | None = None) -> None:
    """Produces in order, ``rate`` records a second (or as fast as the producer takes them), then flushes;
    RuntimeError if some were not delivered within 30 s."""
    started = time.monotonic()
    for n, (key, value, headers) in enumerate(records):
        if rate:
            delay = started + n / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        while True:
            try:
                producer.produce(topic, key=key, value=value, headers=headers)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    left = producer.flush(30)
    if left:
        raise RuntimeError(f"{left} records were not delivered to {topic} within 30 s")


def produce(bootstrap: str, topic: str, records: Iterable[Record], *, rate: float | None = None) -> None:
    """``send`` through an idempotent producer of its own."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    send(producer, topic, records, rate=rate)


def event(event_id: str, collection: str, product: str, images: list[str]) -> Record:
    """A plain-JSON delist event keyed by its product."""
    document = {"event_id": event_id, "collection_name": collection, "product_id": product, "image_ids": images}
    return product.encode(), json.dumps(document).encode(), []


def produce_spread(
    bootstrap: str,
    topic: str,
    partitions: Sequence[int],
    count: int,
    *,
    prefix: str = "e",
    timeout: float = 60.0,
    collections: Sequence[str] = ("shop",),
) -> None:
    """``count`` one-image events spread over ``partitions`` in turn (chosen explicitly, not by key), and over
    ``collections`` in turn (behind the router, the collection chooses the partition that does the work); blocks
    until the broker has them all, raising RuntimeError after ``timeout`` seconds."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for n in range(count):
        key, value, _ = event(f"{prefix}{n}", collections[n % len(collections)], f"p{n}", [f"{n}.jpg"])
        while True:
            try:
                producer.produce(topic, value, key, partition=partitions[n % len(partitions)])
                break
            except BufferError:
                producer.poll(0.1)
    left = producer.flush(timeout)
    if left:
        raise RuntimeError(f"{left} records did not reach {topic} within {timeout:.0f} s")


@dataclass
class Consumed:
    """A record as the broker has it. ``headers`` by name (the last of a repeated name; no value as b""),
    ``header_pairs`` in order with repeated names kept."""

    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]
    partition: int
    offset: int
    header_pairs: list[tuple[str, bytes | None]]

    def json(self) -> Any:
        if self.value is None:
            raise ValueError("the record has no value")
        return json.loads(self.value)

    def header(self, name: str) -> bytes | None:
        """The first header of that name, as sent (None for one without a value or none of that name)."""
        return next((value for key, value in self.header_pairs if key == name), None)


def consume_all(bootstrap: str, topic: str, *, expect: int, timeout: float = 60, settle: float = 0.0) -> list[Consumed]:
    """Reads the topic from the start until ``expect`` records came (then ``settle`` more seconds for extras)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",  # as outcome consumers read (exactly-once delivery)
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
                partition, offset = message.partition(), message.offset()
                if message.error() is not None or partition is None or offset is None:
                    continue
                raw = message.headers() or []
                pairs = [
                    (name, value.encode() if isinstance(value, str) else value)
                    for name, value in (raw.items() if isinstance(raw, dict) else raw)
                ]
                records.append(
                    Consumed(
                        key=message.key(),
                        value=message.value(),
                        headers={name: value or b"" for name, value in pairs},
                        partition=partition,
                        offset=offset,
                        header_pairs=pairs,
                    )
                )
    finally:
        consumer.close()
    return records
