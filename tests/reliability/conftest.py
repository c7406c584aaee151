"""Fixtures of the reliability suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devkit.processes import load_kafka_local


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Any]:
    """A broker of the test's own, for tests that stop and start it (an outage)."""
    kafka_local = load_kafka_local()
    kafka_local.fetch()
    broker = kafka_local.LocalKafka(data_dir=tmp_path / "kafka")
    broker.start()
    yield broker
    broker.stop()
