"""Shared fixtures: one real Kafka broker per test session, and uniquely named topics on it; settings read from
what a test sets only.

`KAFKA_BOOTSTRAP_SERVERS` points the tests at an existing broker (CI service, a `kafka_local.py run`);
otherwise a fresh single-node broker is started from deploy/local/kafka_local.py on free ports and
stopped when the session ends. Only tests that ask for these fixtures touch Kafka.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic  # confluent_kafka.admin re-exports it implicitly only

from devkit.processes import load_kafka_local

pytest_plugins = ["devkit.fixtures", "devkit.registry"]  # the service and the sandbox as processes; a Schema Registry

ADMIN_TIMEOUT_S = 30.0


@pytest.fixture
def settings_from_the_test_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """imgsweep's settings read only what the test sets: no IMGSWEEP_ variable from the shell that runs pytest,
    and an empty secrets directory, so a developer's /var/run/secrets/imgsweep cannot leak into tests."""
    for name in list(os.environ):
        if name.upper().startswith("IMGSWEEP_"):
            monkeypatch.delenv(name)
    empty = tmp_path / "no-secrets"
    empty.mkdir()
    monkeypatch.setenv("IMGSWEEP_SECRETS_DIR", str(empty))


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The bootstrap address of a broker that serves for the whole session.

    Starting one blocks for a few seconds; a missing jar cache is fetched first (needs java and mvn once).
    """
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    kafka_local = load_kafka_local()
    kafka_local.fetch()
    broker = kafka_local.LocalKafka(data_dir=tmp_path_factory.mktemp("kafka"))
    bootstrap: str = broker.start()
    try:
        yield bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": kafka_bootstrap})


@pytest.fixture
def new_topic(kafka_admin: AdminClient) -> Iterator[Callable[..., str]]:
    """`new_topic(partitions=N) -> name`: creates a topic no other test uses; deleted after the test.

    Blocks until the broker has created the topic, so a producer can use it at once.
    """
    created: list[str] = []

    def create(*, partitions: int = 1) -> str:
        name = f"it-{uuid.uuid4().hex[:16]}"
        futures = kafka_admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1)], operation_timeout=ADMIN_TIMEOUT_S
        )
        futures[name].result(timeout=ADMIN_TIMEOUT_S)
        created.append(name)
        return name

    yield create
    if created:
        for future in kafka_admin.delete_topics(created, operation_timeout=ADMIN_TIMEOUT_S).values():
            future.result(timeout=ADMIN_TIMEOUT_S)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The figures the reliability tests measured, in one place at the end of the run."""
    from devkit.fixtures import FIGURES  # noqa: PLC0415 - the plugin module is loaded by then

    if FIGURES:
        terminalreporter.section("figures measured")
        for line in FIGURES:
            terminalreporter.write_line(line)
