"""What the numbers were measured on: cores, memory, Python, the Kafka client and broker, and the load."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import confluent_kafka

__all__ = ["Machine", "revision"]


def _cpu_model() -> str:
    try:
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    except OSError:
        match = None
    return match.group(1).strip() if match else platform.processor() or "unknown"


def revision() -> str:
    """The commit measured, and whether the service's code differed from it (others may be editing it)."""
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "service"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return f"{head}{' with uncommitted changes in service/' if dirty else ''}"


def _memory_gib() -> float:
    try:
        match = re.search(r"^MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.MULTILINE)
    except OSError:
        match = None
    return int(match.group(1)) / 1024 / 1024 if match else float("nan")


@dataclass(frozen=True)
class Machine:
    date: str
    cores: int
    cpu_model: str
    memory_gib: float
    system: str
    python: str
    confluent_kafka: str
    librdkafka: str
    kafka_version: str
    external_broker: bool
    revision: str
    load_start: tuple[float, float, float]
    load_end: tuple[float, float, float] | None = None
    revision_end: str | None = None

    def finished(self) -> Machine:
        """The same machine at the end of the run: load and revision again (the code may change meanwhile)."""
        return replace(self, load_end=os.getloadavg(), revision_end=revision())

    @property
    def revision_text(self) -> str:
        if self.revision_end is None or self.revision_end == self.revision:
            return f"commit {self.revision}"
        return (
            f"commit {self.revision} when the run started and {self.revision_end} when it ended: the service "
            "changed during the run, and each imgsweep process ran the code on disk when it started"
        )

    @classmethod
    def now(cls, *, kafka_version: str, external_broker: bool) -> Machine:
        return cls(
            date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            cores=os.cpu_count() or 1,
            cpu_model=_cpu_model(),
            memory_gib=_memory_gib(),
            system=f"{platform.system()} {platform.release()}",
            python=f"{platform.python_implementation()} {platform.python_version()}",
            confluent_kafka=str(confluent_kafka.__version__),
            librdkafka=confluent_kafka.libversion()[0],
            kafka_version=kafka_version,
            external_broker=external_broker,
            revision=revision(),
            load_start=os.getloadavg(),
        )
