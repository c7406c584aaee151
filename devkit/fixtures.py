"""The harness as pytest fixtures (``pytest_plugins`` in tests/conftest.py): the sandbox, imgsweep and topics.

``sandbox_process(*flags)`` starts ``imgsweep sandbox``, ``service_process(topics, sandbox, **settings)`` starts
``imgsweep run`` with settings fit for tests (short backoff, linger and read timeout); both are stopped (and,
if need be, killed) when the test ends, so no test leaves a process behind. ``topics(partitions=N)`` creates
the topics of one imgsweep no other test uses, deleted after the test with those imgsweep made for itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from devkit.processes import ACCESS_KEY, ADMIN_TIMEOUT, SECRET_KEY, SandboxProcess, ServiceProcess, Topics

__all__ = ["FIGURES", "TEST_SETTINGS", "SandboxFactory", "ServiceFactory", "TopicsFactory"]

FIGURES: list[str] = []
"""Figures tests measured (JSON lines); printed at the end of the session by tests/conftest.py."""

TEST_SETTINGS = {
    "API__BACKOFF_INITIAL_SECONDS": "0.05",
    "API__BACKOFF_MAX_SECONDS": "0.5",
    "API__READ_TIMEOUT_SECONDS": "2",
    "BATCH__LINGER_SECONDS": "0.3",
    "BATCH__RELIST_GRACE_SECONDS": "0",  # the relist tests set their own
    "API__DAILY_CALLS": "-1",  # no budget pacing before the sandbox's first remainTimes; the budget tests set theirs
    "LOG__LEVEL": "INFO",
    # The tests that read what the pipeline committed map it back through the collections topic's records: kept.
    "KAFKA__PURGE_INTERVAL_SECONDS": "0",
}
"""What ``service_process`` sets beyond the harness's own settings, unless a test says otherwise."""

SandboxFactory = Callable[..., SandboxProcess]
ServiceFactory = Callable[..., ServiceProcess]
TopicsFactory = Callable[..., Topics]


@pytest.fixture
def sandbox_process(tmp_path: Path) -> Iterator[SandboxFactory]:
    started: list[SandboxProcess] = []

    def start(*flags: str, keys: tuple[str, str] = (ACCESS_KEY, SECRET_KEY)) -> SandboxProcess:
        sandbox = SandboxProcess.start(tmp_path / f"sandbox-{len(started)}.log", flags, keys=keys)
        started.append(sandbox)
        return sandbox

    yield start
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
def topics(kafka_admin: AdminClient) -> Iterator[TopicsFactory]:
    made: list[str] = []

    def create(partitions: int = 3) -> Topics:
        names = Topics.create(kafka_admin, f"t-{uuid.uuid4().hex[:10]}", partitions=partitions)
        made.extend([*names.names, *names.made_by_imgsweep])
        return names

    yield create
    existing = kafka_admin.list_topics(timeout=ADMIN_TIMEOUT).topics if made else {}
    present = [name for name in made if name in existing]  # those imgsweep makes when it routes, if it did
    if present:
        for future in kafka_admin.delete_topics(present, operation_timeout=ADMIN_TIMEOUT).values():
            future.result(ADMIN_TIMEOUT)


@pytest.fixture
def service_process(tmp_path: Path, kafka_bootstrap: str) -> Iterator[ServiceFactory]:
    started: list[ServiceProcess] = []
    secrets_dir = tmp_path / "no-secrets"
    secrets_dir.mkdir(exist_ok=True)

    def start(topics: Topics, sandbox: SandboxProcess | None, **settings: str) -> ServiceProcess:
        service = ServiceProcess.start(
            bootstrap=kafka_bootstrap,
            topics=topics,
            endpoint=None if sandbox is None else sandbox.endpoint,
            log_path=tmp_path / f"service-{len(started)}.log",
            secrets_dir=secrets_dir,
            settings={**TEST_SETTINGS, **settings},
            wait=False,
        )
        started.append(service)
        service.wait_ready()
        return service

    yield start
    for service in started:
        service.stop()
