"""The processes a benchmark drives: the Kafka broker, the JD API sandbox, imgsweep itself, and /proc readings.

Each is started the way an operator would start it (``python -m service sandbox``, ``python -m service run``,
``deploy/local/kafka_local.py``), so what is measured is the real process, not an in-process stand-in. Every
start blocks until the process serves; every stop sends SIGTERM, waits, and kills only on a deadline.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx

from devkit.local_stack import clean_env, free_port, stop_process

__all__ = [
    "ACCESS_KEY",
    "SECRET_KEY",
    "ImgsweepProcess",
    "ProcessUsage",
    "SandboxProcess",
    "clean_env",
    "read_usage",
]

REPO: Final = Path(__file__).resolve().parent.parent
ACCESS_KEY: Final = "bench-access-key"
SECRET_KEY: Final = "bench-secret-key-not-a-real-one"  # noqa: S105 - the sandbox's made-up account
DELETE_PATH: Final = "/jdai/product_image_del_image"
_CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
_PAGE_KB: Final = os.sysconf("SC_PAGE_SIZE") // 1024


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


@dataclass
class SandboxProcess:
    """``imgsweep sandbox`` on a free loopback port, with the benchmark's made-up account."""

    process: subprocess.Popen[str]
    url: str
    log_path: Path
    _client: httpx.Client = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._client = httpx.Client(base_url=self.url, timeout=60, trust_env=False)

    @classmethod
    def start(cls, log_path: Path, flags: Sequence[str] = (), *, cpu: int | None = None) -> SandboxProcess:
        """Blocks until the sandbox prints its address; ``cpu`` pins it to one core (Linux)."""
        command = [sys.executable, "-m", "service", "sandbox", "--port", "0", "--log-level", "WARNING", *flags]
        if cpu is not None:
            command = ["taskset", "-c", str(cpu), *command]
        env = {**clean_env(), "IMGSWEEP_API__ACCESS_KEY": ACCESS_KEY, "IMGSWEEP_API__SECRET_KEY": SECRET_KEY}
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=log_path.open("w"), text=True, env=env, cwd=REPO
        )
        line = process.stdout.readline().strip() if process.stdout is not None else ""
        if not line.startswith("sandbox listening on "):
            stop_process(process)
            raise RuntimeError(f"the sandbox did not start ({line!r}); see {log_path}")
        return cls(process, line.removeprefix("sandbox listening on "), log_path)

    @property
    def endpoint(self) -> str:
        return f"{self.url}{DELETE_PATH}"

    def seed(self, by_collection: Mapping[str, Sequence[tuple[str, str]]], chunk: int = 5000) -> int:
        """Stores images (product, image) per collection through /admin/images; returns how many."""
        stored = 0
        for collection, items in by_collection.items():
            for start in range(0, len(items), chunk):
                part = items[start : start + chunk]
                document = {"collection_name": collection, "items": [{"product_id": p, "image_id": i} for p, i in part]}
                self._client.post("/admin/images", json=document).raise_for_status()
                stored += len(part)
        return stored

    def stats(self) -> dict[str, Any]:
        response = self._client.get("/admin/stats")
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats

    def stop(self) -> None:
        self._client.close()
        stop_process(self.process)


@dataclass
class ImgsweepProcess:
    """``imgsweep run`` as its own process, configured only through IMGSWEEP_* variables, as in production."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    _client: httpx.Client = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10, trust_env=False)

    @classmethod
    def start(
        cls,
        *,
        bootstrap: str,
        group: str,
        input_topic: str,
        outcome_topic: str,
        dlq_topic: str,
        sandbox: SandboxProcess,
        log_path: Path,
        secrets_dir: Path,
        settings: Mapping[str, str] | None = None,
    ) -> ImgsweepProcess:
        """Starts the service and blocks until /readyz answers 200. ``settings`` are IMGSWEEP_* names without
        the prefix (``API__QPS``)."""
        port = free_port()
        env = {
            **clean_env(),
            "IMGSWEEP_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
            "IMGSWEEP_KAFKA__GROUP_ID": group,
            "IMGSWEEP_KAFKA__INPUT_TOPIC": input_topic,
            "IMGSWEEP_KAFKA__OUTCOME_TOPIC": outcome_topic,
            "IMGSWEEP_KAFKA__DLQ_TOPIC": dlq_topic,
            "IMGSWEEP_API__ENDPOINT": sandbox.endpoint,
            "IMGSWEEP_API__ACCESS_KEY": ACCESS_KEY,
            "IMGSWEEP_API__SECRET_KEY": SECRET_KEY,
            "IMGSWEEP_HTTP__HOST": "127.0.0.1",
            "IMGSWEEP_HTTP__PORT": str(port),
            "IMGSWEEP_SECRETS_DIR": str(secrets_dir),
            **{f"IMGSWEEP_{name}": value for name, value in (settings or {}).items()},
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "run"],
            stdout=log_path.open("wb"),
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
        )
        service = cls(process, port, log_path)
        service.wait_ready()
        return service

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"imgsweep exited with {self.process.returncode}; see {self.log_path}")
            try:
                if self._client.get("/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"imgsweep was not ready within {timeout:.0f} s; see {self.log_path}")

    def wait_assigned(self, partitions: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if len(self._client.get("/readyz").json()["assigned_partitions"]) == partitions:
                    return
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"imgsweep never had {partitions} partitions; see {self.log_path}")

    def metrics(self) -> dict[str, float]:
        """Every sample of /metrics, keyed by its series as exposed (``name{label="v"}``)."""
        samples: dict[str, float] = {}
        for line in self._client.get("/metrics").text.splitlines():
            if line and not line.startswith("#"):
                series, _, value = line.rpartition(" ")
                samples[series] = float(value)
        return samples

    @property
    def pid(self) -> int:
        return self.process.pid

    def usage(self) -> ProcessUsage:
        return read_usage(self.pid)

    def stop(self) -> None:
        """SIGTERM; if work is still pending after a moment (a backlog at 2 QPS would hold it for the whole
        shutdown grace period), a second SIGTERM abandons it, uncommitted, as the service documents."""
        self._client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(2)
            except subprocess.TimeoutExpired:
                stop_process(self.process, timeout=60)
