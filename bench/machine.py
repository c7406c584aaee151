"""What the numbers were measured on: cores, memory, Python, the Kafka client and broker, and the load."""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import confluent_kafka

__all__ = ["Machine"]


def _cpu_model() -> str:
    try:
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    except OSError:
        match = None
    return match.group(1).strip() if match else platform.processor() or "unknown"


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
    load_start: tuple[float, float, float]
    load_end: tuple[float, float, float] | None = None

    @classmethod
    def now(cls, *, kafka_version: str, external_broker: bool) -> Machine:
        return cls(
            date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            cores=os.cpu_count() or 1,
            cpu_model=_cpu_model(),
            memory_gib=_memory_gib(),
            system=f"{platform.system()} {platform.release()}",
            python=f"{platform.python_implementation()} {platform.python_version()}",
            confluent_kafka=confluent_kafka.version()[0],
            librdkafka=confluent_kafka.libversion()[0],
            kafka_version=kafka_version,
            external_broker=external_broker,
            load_start=os.getloadavg(),
        )
