#!/usr/bin/env python3
"""A real single-node Apache Kafka broker for tests and local runs, without Docker.

The broker's jars come from Maven Central through ``deploy/local/kafka/pom.xml`` (``fetch``), are cached
per Kafka version, and run as one KRaft process that is both broker and controller. Every ``start``
formats a fresh store, so a run never sees the topics or offsets of the previous one.

Command line (progress goes to stderr; ``start`` prints only the bootstrap address on stdout)::

    python deploy/local/kafka_local.py fetch
    python deploy/local/kafka_local.py start --port auto --data-dir .cache/kafka
    python deploy/local/kafka_local.py stop --data-dir .cache/kafka
    python deploy/local/kafka_local.py run [--port 9092]

From Python (pytest's ``kafka_bootstrap`` fixture does this)::

    with LocalKafka() as kafka:
        use(kafka.bootstrap_servers)

Environment: ``IMGSWEEP_KAFKA_CACHE`` replaces the per-version cache directory (default
``${XDG_CACHE_HOME:-~/.cache}/imgsweep/kafka-<version>``; the jars live in its ``lib/``),
``KAFKA_HEAP_OPTS`` and ``KAFKA_JVM_PERFORMANCE_OPTS`` replace the broker's heap and JIT/GC flags (as in
Kafka's own scripts), ``JAVA_HOME`` picks the JVM.

POSIX only: the broker runs in its own process group so that it can be stopped as a whole, and
outlives ``start`` until ``stop``.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType, TracebackType
from typing import Self

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

__all__ = [
    "KAFKA_VERSION",
    "BrokerFailedToStart",
    "FetchFailed",
    "LocalKafka",
    "LocalKafkaError",
    "ToolMissing",
    "cache_dir",
    "fetch",
    "stop_broker",
]

POM = Path(__file__).resolve().parent / "kafka" / "pom.xml"


def _pom_kafka_version() -> str:
    """The pom is the one place the Kafka version is written down; the cache directory is keyed by it."""
    match = re.search(r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>", POM.read_text(encoding="utf-8"))
    if match is None:
        raise RuntimeError(f"{POM} declares no <kafka.version> property")
    return match.group(1)


KAFKA_VERSION = _pom_kafka_version()
MIN_JAVA = 17
BROKER_MAIN = "kafka.Kafka"
STORAGE_TOOL_MAIN = "kafka.tools.StorageTool"
DEFAULT_HEAP_OPTS = "-Xms256m -Xmx512m"
# Start-up time over peak throughput: a test broker lives for seconds to minutes and moves little data.
# The C1-only JIT and the serial collector cut the JVM's share of start-to-ready by about a third.
DEFAULT_JVM_PERFORMANCE_OPTS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 0.2
FETCH_TIMEOUT_S = 900.0
LOG_TAIL_LINES = 60
AUTO_PORT_ATTEMPTS = 3
READINESS_GROUP = "kafka-local-readiness-probe"  # only described, never joined

# What a data dir holds. `start` wipes STORE_DIR (and only that) before formatting it afresh.
SERVER_PROPERTIES = "server.properties"
LOG4J2_PROPERTIES = "log4j2.properties"
STORE_DIR = "store"
LOGS_DIR = "logs"
SERVER_LOG = "server.log"
CONSOLE_LOG = "console.log"
PID_FILE = "kafka.pid"
BOOTSTRAP_FILE = "bootstrap"

_FETCH_MARKER = ".fetched"
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")  # Debian's Maven 3.8 colours even with -B -Dstyle.color=never
_INSTALL_HINTS = {
    "java": f"install a JDK >= {MIN_JAVA} (Debian/Ubuntu: apt-get install openjdk-{MIN_JAVA}-jdk-headless; "
    "macOS: brew install openjdk@17) and put it on PATH or set JAVA_HOME",
    "mvn": "install Apache Maven >= 3.6 (Debian/Ubuntu: apt-get install maven; macOS: brew install maven)",
}


class LocalKafkaError(Exception):
    """Anything that keeps the local broker from being fetched, started or stopped; the CLI prints it."""


class ToolMissing(LocalKafkaError):
    """java or mvn is absent or too old."""


class FetchFailed(LocalKafkaError):
    """Maven could not resolve or copy the broker's jars (no network, no Maven Central, bad pom)."""


class BrokerFailedToStart(LocalKafkaError):
    """The broker exited, or was not serving before the deadline; carries the log tail."""


# --------------------------------------------------------------------------------------------- tools


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise ToolMissing(f"java was not found: {_INSTALL_HINTS['java']}")
    return found


def _require_java() -> str:
    """The path of a java that is new enough for Kafka 4 brokers (Java 17); blocks for one `java -version`."""
    java = _java()
    result = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60, check=False)
    banner = result.stderr + result.stdout
    match = re.search(r'version "(\d+)(?:\.(\d+))?', banner)
    if result.returncode != 0 or match is None:
        raise ToolMissing(
            f"{java} -version failed or printed no version ({banner.strip()!r}): {_INSTALL_HINTS['java']}"
        )
    major = int(match.group(1))
    if major == 1 and match.group(2) is not None:  # "1.8.0_392" is Java 8
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise ToolMissing(
            f"{java} is Java {major}, Kafka {KAFKA_VERSION} needs >= {MIN_JAVA}: {_INSTALL_HINTS['java']}"
        )
    return java


def _require_mvn() -> str:
    found = shutil.which("mvn")
    if found is None:
        raise ToolMissing(f"mvn was not found: {_INSTALL_HINTS['mvn']}")
    return found


# --------------------------------------------------------------------------------------------- fetch


def cache_dir() -> Path:
    """Where this Kafka version's jars are cached: `IMGSWEEP_KAFKA_CACHE`, else under XDG_CACHE_HOME."""
    override = os.environ.get("IMGSWEEP_KAFKA_CACHE")
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "imgsweep" / f"kafka-{KAFKA_VERSION}"


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def _is_fetched(cache: Path) -> bool:
    marker = cache / _FETCH_MARKER
    return marker.is_file() and marker.read_text(encoding="utf-8").strip() == _pom_digest()


def fetch(cache: Path | None = None) -> Path:
    """Make sure the broker's jars are in `cache`/lib and return that directory.

    A no-op without network or Maven once a fetch of the same pom completed (the marker file is written
    last). Otherwise blocks on Maven, which downloads into ~/.m2 on first use. Safe to run concurrently:
    a file lock serialises fetches of the same cache.
    """
    cache = cache or cache_dir()
    lib = cache / "lib"
    if _is_fetched(cache):
        return lib
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".fetch.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_fetched(cache):  # another process finished while we waited
            return lib
        _require_java()
        mvn = _require_mvn()
        (cache / _FETCH_MARKER).unlink(missing_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="lib.", dir=cache))
        staging.chmod(0o755)  # mkdtemp makes it private; the cache is not a secret
        command = [
            mvn,
            "-q",
            "-B",
            "-Dstyle.color=never",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
        ]
        _progress(f"fetching Kafka {KAFKA_VERSION} jars with Maven into {lib}")
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S, check=False)
            if result.returncode != 0:
                raise FetchFailed(
                    f"`{' '.join(command)}` failed with exit code {result.returncode}:\n"
                    f"{_ANSI_ESCAPE.sub('', result.stdout + result.stderr).strip()}"
                )
            if not any(staging.glob(f"kafka_2.13-{KAFKA_VERSION}.jar")):
                raise FetchFailed(f"Maven succeeded but {staging} holds no kafka_2.13-{KAFKA_VERSION}.jar")
            shutil.rmtree(lib, ignore_errors=True)
            staging.rename(lib)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        (cache / _FETCH_MARKER).write_text(_pom_digest() + "\n", encoding="utf-8")
    return lib


# --------------------------------------------------------------------------------------------- start


def _free_ports(count: int) -> list[int]:
    """Ports the kernel considers free right now; all held open together so they differ from each other.

    Another process may still take one before the broker binds it; LocalKafka retries on that.
    """
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def _require_free(port: int) -> None:
    """Fail fast on a fixed port that is taken: the probe would otherwise find whatever listens there."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the JVM's server sockets do
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as error:
            raise LocalKafkaError(
                f"127.0.0.1:{port} is not free ({error.strerror}); pick another port or `auto`"
            ) from None


def _cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (what `random-uuid` prints).

    Like Kafka's Uuid.randomUuid, ids starting with "-" are drawn again: the storage tool would read one
    as an option.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        if not cluster_id.startswith("-"):
            return cluster_id


def _server_properties(port: int, controller_port: int, store: Path) -> str:
    # A combined broker+controller with a dynamic quorum of one (Kafka 4's own quickstart layout:
    # controller.quorum.bootstrap.servers plus `format --standalone`, no controller.quorum.voters).
    # Replication factors are 1 because there is one broker; internal topics get one partition
    # because creating __consumer_offsets' default 50 costs seconds on the first group of every run.
    # The log cleaner's dedupe buffer (default 128 MiB, allocated at start) is cut to fit the small heap.
    return f"""\
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs={store}
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.cleaner.dedupe.buffer.size=8388608
"""


def _log4j2_properties(server_log: Path) -> str:
    # Everything to one file in the data dir; the console stays quiet so that pytest and a terminal
    # running `run` are not flooded. request and state-change chatter is dropped at INFO.
    return f"""\
status = warn
name = imgsweep-local-kafka
appender.file.type = File
appender.file.name = file
appender.file.fileName = {server_log}
appender.file.append = false
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        content = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(content[-lines:]) or f"({path} is empty)"


def _logs_tail(data_dir: Path) -> str:
    logs = data_dir / LOGS_DIR
    return "\n".join(f"--- last lines of {log} ---\n{_tail(log)}" for log in (logs / CONSOLE_LOG, logs / SERVER_LOG))


def _progress(message: str) -> None:
    print(f"kafka_local: {message}", file=sys.stderr, flush=True)


def _read_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / PID_FILE).read_text(encoding="utf-8").strip())
    except (FileNotFoundError, ValueError):
        return None


def _clear_run_files(data_dir: Path) -> None:
    """Drop the files that say a broker serves from `data_dir`; config, logs and store stay for a look."""
    for name in (PID_FILE, BOOTSTRAP_FILE):
        (data_dir / name).unlink(missing_ok=True)


def _is_our_broker(pid: int, data_dir: Path) -> bool:
    """Whether `pid` is a live broker started from `data_dir`, so a stale pid file never kills a stranger."""
    proc = Path(f"/proc/{pid}")
    if not proc.exists():  # no procfs (macOS): trust the pid file if the process exists at all
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        state = (proc / "stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    properties = str(data_dir.resolve() / SERVER_PROPERTIES).encode()
    return state != "Z" and BROKER_MAIN.encode() in cmdline and properties in cmdline


def _format_store(java: str, lib: Path, data_dir: Path, cluster_id: str) -> None:
    """Wipe and format the KRaft store; blocks for one short JVM run.

    Without a log4j2 config the tool logs errors only, to the output captured here, so server.log
    stays the broker's own.
    """
    store = data_dir / STORE_DIR
    shutil.rmtree(store, ignore_errors=True)
    command = [
        java,
        *DEFAULT_JVM_PERFORMANCE_OPTS.split(),
        "-cp",
        f"{lib}/*",
        STORAGE_TOOL_MAIN,
        "format",
        "--config",
        str(data_dir / SERVER_PROPERTIES),
        "--cluster-id",
        cluster_id,
        "--standalone",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise BrokerFailedToStart(
            f"formatting {store} failed with exit code {result.returncode}:\n{(result.stdout + result.stderr).strip()}"
        )


def _is_serving(admin: AdminClient, cluster_id: str, timeout: float) -> bool:
    """Whether our broker (not whatever else listens on the port) is in metadata and coordinates groups.

    Asking for a group also makes the broker create and load __consumer_offsets now rather than on the
    first consumer's join, which otherwise pays seconds of client-side coordinator retries.
    Blocks up to twice `timeout` seconds.
    """
    try:
        metadata = admin.list_topics(timeout=timeout)
        if metadata.cluster_id != cluster_id or not metadata.brokers:
            return False
        admin.describe_consumer_groups([READINESS_GROUP], request_timeout=timeout)[READINESS_GROUP].result()
    except KafkaException:
        return False
    return True


def _signal_group(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)


def _terminate(pid: int, has_exited: Callable[[], bool], timeout: float) -> bool:
    """SIGTERM the broker's process group, wait up to `timeout` for it to exit, then SIGKILL it.

    Returns whether the broker shut down cleanly (before the SIGKILL). Blocks up to `timeout` + 5s.
    """
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if has_exited():
            return True
        time.sleep(POLL_INTERVAL_S)
    _progress(f"broker pid {pid} ignored SIGTERM for {timeout:.0f}s; sending SIGKILL")
    _signal_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and not has_exited():
        time.sleep(POLL_INTERVAL_S)
    return False


def stop_broker(data_dir: Path, timeout: float = STOP_TIMEOUT_S) -> bool:
    """Stop the broker that `start` left running in `data_dir`; False if none was running there."""
    data_dir = Path(data_dir)
    pid = _read_pid(data_dir)
    if pid is None or not _is_our_broker(pid, data_dir):
        _clear_run_files(data_dir)
        return False
    clean = _terminate(pid, lambda: not _is_our_broker(pid, data_dir), timeout)
    _clear_run_files(data_dir)
    _progress(f"broker pid {pid} stopped{'' if clean else ' (killed)'}")
    return True


class LocalKafka:
    """One broker+controller JVM serving PLAINTEXT on 127.0.0.1, formatted afresh on every start.

    `port` / `controller_port` of None or 0 pick free ports. Without `data_dir` a temporary directory
    is used and removed on `stop`. Unless `detach` is called, the broker is also stopped when this
    Python process exits normally (not on SIGKILL: the broker has its own process group).
    """

    def __init__(
        self,
        port: int | None = None,
        data_dir: Path | str | None = None,
        controller_port: int | None = None,
        *,
        cache: Path | None = None,
        ready_timeout: float = READY_TIMEOUT_S,
        heap_opts: str | None = None,
        jvm_performance_opts: str | None = None,
    ) -> None:
        self._requested_ports = (port or None, controller_port or None)
        self._owns_data_dir = data_dir is None
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self._cache = cache
        self._ready_timeout = ready_timeout
        self._heap_opts = heap_opts or os.environ.get("KAFKA_HEAP_OPTS") or DEFAULT_HEAP_OPTS
        self._jvm_performance_opts = (
            jvm_performance_opts or os.environ.get("KAFKA_JVM_PERFORMANCE_OPTS") or DEFAULT_JVM_PERFORMANCE_OPTS
        )
        self._process: subprocess.Popen[bytes] | None = None
        self._bootstrap: str | None = None
        self._command: list[str] = []
        self._cluster = ""
        self.startup_seconds: float | None = None

    @property
    def data_dir(self) -> Path:
        if self._data_dir is None:
            raise RuntimeError("the data dir is chosen by start()")
        return self._data_dir

    @property
    def bootstrap_servers(self) -> str:
        if self._bootstrap is None:
            raise RuntimeError("the broker is not started")
        return self._bootstrap

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> str:
        """Format a fresh store, start the broker and block until it serves metadata and consumer groups.

        Returns the bootstrap address. Needs the jars from `fetch()`. Raises BrokerFailedToStart (with
        the broker's log tail) if the JVM exits or the broker is not serving within `ready_timeout`.
        """
        if self._process is not None:
            raise RuntimeError("already started")
        lib = (self._cache or cache_dir()) / "lib"
        if not _is_fetched(self._cache or cache_dir()):
            raise LocalKafkaError(
                f"the Kafka {KAFKA_VERSION} jars are not in {lib}; run `python deploy/local/kafka_local.py fetch` first"
            )
        java = _require_java()
        if self._data_dir is None:
            self._data_dir = Path(tempfile.mkdtemp(prefix="imgsweep-kafka-"))
        self._data_dir = self._data_dir.resolve()
        self._data_dir.mkdir(parents=True, exist_ok=True)
        running = _read_pid(self._data_dir)
        if running is not None and _is_our_broker(running, self._data_dir):
            raise LocalKafkaError(f"a broker (pid {running}) already runs from {self._data_dir}; stop it first")

        # A port picked as free can be taken before the JVM binds it; only then is a retry worth it.
        attempts_left = AUTO_PORT_ATTEMPTS if None in self._requested_ports else 1
        while True:
            attempts_left -= 1
            try:
                return self._start_once(java, lib)
            except BrokerFailedToStart as failure:
                if attempts_left == 0 or "Address already in use" not in str(failure):
                    raise
                _progress("a port picked for the broker was taken meanwhile; retrying with new ports")

    def _start_once(self, java: str, lib: Path) -> str:
        data_dir = self.data_dir
        for fixed in self._requested_ports:
            if fixed is not None:
                _require_free(fixed)
        free = iter(_free_ports(2))
        port = self._requested_ports[0] or next(free)
        controller_port = self._requested_ports[1] or next(free)
        cluster_id = _cluster_id()
        logs = data_dir / LOGS_DIR
        logs.mkdir(exist_ok=True)
        (data_dir / SERVER_PROPERTIES).write_text(
            _server_properties(port, controller_port, data_dir / STORE_DIR), encoding="utf-8"
        )
        (data_dir / LOG4J2_PROPERTIES).write_text(_log4j2_properties(logs / SERVER_LOG), encoding="utf-8")

        began = time.monotonic()
        _format_store(java, lib, data_dir, cluster_id)
        command = [
            java,
            *self._heap_opts.split(),
            *self._jvm_performance_opts.split(),
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={logs}",
            f"-Dlog4j2.configurationFile={data_dir / LOG4J2_PROPERTIES}",
            "-cp",
            f"{lib}/*",
            BROKER_MAIN,
            str(data_dir / SERVER_PROPERTIES),
        ]
        self._command, self._cluster = command, cluster_id
        self._launch()
        bootstrap = f"127.0.0.1:{port}"
        self._wait_until_serving(bootstrap, cluster_id, began)
        self.startup_seconds = time.monotonic() - began
        self._bootstrap = bootstrap
        (data_dir / BOOTSTRAP_FILE).write_text(bootstrap + "\n", encoding="utf-8")
        return bootstrap

    def _launch(self) -> None:
        data_dir = self.data_dir
        with (data_dir / LOGS_DIR / CONSOLE_LOG).open("ab") as console:
            self._process = subprocess.Popen(
                self._command,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                cwd=data_dir,
                start_new_session=True,  # its own process group: Ctrl-C on us does not reach it, stop() does
            )
        (data_dir / PID_FILE).write_text(f"{self._process.pid}\n", encoding="utf-8")
        atexit.register(self.stop)

    def restart(self, *, down_seconds: float = 0.0) -> float:
        """A broker outage: stop the JVM, stay down, start it again on the same ports and the same store.

        Nothing is formatted, so topics, records and committed offsets survive. Returns the seconds the
        broker took to serve again after it was started.
        """
        process = self._process
        if process is None or self._bootstrap is None:
            raise RuntimeError("the broker is not started")
        _terminate(process.pid, lambda: process.poll() is not None, STOP_TIMEOUT_S)
        process.wait()
        time.sleep(down_seconds)
        began = time.monotonic()
        self._launch()
        self._wait_until_serving(self._bootstrap, self._cluster, began)
        return time.monotonic() - began

    def _wait_until_serving(self, bootstrap: str, cluster_id: str, began: float) -> None:
        process = self._process
        if process is None:
            raise RuntimeError("no broker process to wait for")
        # Short reconnect backoff so the probe notices the listener within a poll interval; log_level 0
        # keeps librdkafka from printing every refused connection while the JVM boots.
        admin = AdminClient({"bootstrap.servers": bootstrap, "reconnect.backoff.max.ms": 200, "log_level": 0})
        deadline = began + self._ready_timeout
        while True:
            if process.poll() is not None:
                failure = f"the broker exited with code {process.returncode} before serving"
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                failure = (
                    f"the broker did not serve metadata and groups on {bootstrap} within {self._ready_timeout:.0f}s"
                )
                break
            if _is_serving(admin, cluster_id, timeout=min(1.0, max(remaining, POLL_INTERVAL_S))):
                return
            time.sleep(POLL_INTERVAL_S)
        tail = _logs_tail(self.data_dir)
        self._kill()
        raise BrokerFailedToStart(f"{failure} (data dir {self.data_dir})\n{tail}")

    def _kill(self) -> None:
        process = self._process
        if process is not None:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()
        self._forget()

    def _forget(self) -> None:
        atexit.unregister(self.stop)
        self._process = None
        if self._data_dir is not None:
            _clear_run_files(self._data_dir)

    def detach(self) -> None:
        """Leave the broker running after this process exits; `stop --data-dir` ends it later."""
        atexit.unregister(self.stop)
        self._process = None

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM the broker, wait for a clean shutdown, SIGKILL after `timeout`. Idempotent."""
        process = self._process
        if process is None:
            return
        _terminate(process.pid, lambda: process.poll() is not None, timeout)
        process.wait()
        self._forget()
        self._bootstrap = None
        if self._owns_data_dir and self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# ----------------------------------------------------------------------------------------------- CLI


def _port(value: str) -> int:
    """`auto` or 0 asks for a free port."""
    if value == "auto":
        return 0
    port = int(value)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port")
    return port


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kafka_local.py",
        description=f"A single-node Apache Kafka {KAFKA_VERSION} broker for tests and local runs.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("fetch", help="download the broker's jars with Maven into the cache (once)")
    for name, text in (
        ("start", "start a broker in the background and print its bootstrap address"),
        ("run", "run a broker in the foreground until Ctrl-C"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("--port", type=_port, default=0 if name == "start" else 9092, help="or `auto`")
        command.add_argument("--controller-port", type=_port, default=0, help="default: a free port")
        command.add_argument("--ready-timeout", type=float, default=READY_TIMEOUT_S, help="seconds")
        command.add_argument(
            "--data-dir",
            type=Path,
            required=name == "start",
            help="holds config, logs, pid file and the store (wiped on start)"
            + ("" if name == "start" else "; default: a temporary dir, removed on exit"),
        )
    stop = commands.add_parser("stop", help="stop the broker started from a data dir")
    stop.add_argument("--data-dir", type=Path, required=True)
    stop.add_argument("--timeout", type=float, default=STOP_TIMEOUT_S, help="seconds before SIGKILL")
    return parser


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _stop_signals_as_interrupt() -> Iterator[None]:
    """SIGTERM, and SIGINT even where a shell started us with it ignored (`run &`), stop `run` cleanly."""
    stop_signals = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, _raise_keyboard_interrupt) for signum in stop_signals}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _run_foreground(kafka: LocalKafka) -> int:
    with _stop_signals_as_interrupt():
        try:
            kafka.start()
            _progress(
                f"serving on {kafka.bootstrap_servers} after {kafka.startup_seconds:.1f}s; logs in "
                f"{kafka.data_dir / LOGS_DIR}; Ctrl-C stops it"
            )
            print(kafka.bootstrap_servers, flush=True)
            while kafka.is_running():
                time.sleep(0.5)
        except KeyboardInterrupt:
            _progress("stopping")
            kafka.stop()
            return 0
    tail = _logs_tail(kafka.data_dir)
    kafka.stop()
    _progress(f"the broker exited on its own\n{tail}")
    return 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "fetch":
            began = time.monotonic()
            lib = fetch()
            _progress(f"Kafka {KAFKA_VERSION} jars ready in {lib} ({time.monotonic() - began:.1f}s)")
            return 0
        if args.command == "stop":
            if not stop_broker(args.data_dir, args.timeout):
                _progress(f"no broker was running from {args.data_dir}")
            return 0
        kafka = LocalKafka(args.port, args.data_dir, args.controller_port, ready_timeout=args.ready_timeout)
        if args.command == "run":
            return _run_foreground(kafka)
        bootstrap = kafka.start()
        pid = kafka.pid
        kafka.detach()
        _progress(
            f"pid {pid} serving on {bootstrap} after {kafka.startup_seconds:.1f}s; "
            f"logs in {kafka.data_dir / LOGS_DIR}; stop with: stop --data-dir {kafka.data_dir}"
        )
        print(bootstrap, flush=True)
    except LocalKafkaError as error:
        _progress(str(error))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
