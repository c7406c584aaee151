"""The service as its container image: built from the Dockerfile as `make image` builds it, run with podman as
the pod runs it (read-only root, a tmpfs at /tmp, user 10001, no capabilities), on the host's network to reach
the test broker and a sandbox process on loopback. The e2e happy path and the SIGTERM drain, against it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devkit.fixtures import TEST_SETTINGS, SandboxFactory, TopicsFactory
from devkit.processes import (
    SECRET_KEY,
    Consumed,
    SandboxProcess,
    Topics,
    consume_all,
    event,
    imgsweep_env,
    produce,
    wait_for,
)
from tests import containers
from tests.containers import ContainerService
from tests.support.committed import work_committed

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(containers.TEST_TIMEOUT_S)]

ContainerFactory = Callable[..., ContainerService]


@pytest.fixture(scope="module", autouse=True)
def built_image() -> str:
    """Built (or reused) before any topic or sandbox is made; skipped only where podman cannot run."""
    return containers.image()


@pytest.fixture
def container_service(tmp_path: Path, kafka_bootstrap: str) -> Iterator[ContainerFactory]:
    started: list[ContainerService] = []

    def start(topics: Topics, sandbox: SandboxProcess, **settings: str) -> ContainerService:
        env = imgsweep_env(
            bootstrap=kafka_bootstrap, topics=topics, endpoint=sandbox.endpoint, settings={**TEST_SETTINGS, **settings}
        )
        service = ContainerService.start_container(env, tmp_path / f"container-{len(started)}.log")
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


def committed_total(bootstrap: str, topics: Topics) -> int:
    """The input records the group that does the work has committed past (``<group>.collections`` behind the
    router, by each forwarded record's origin; the input group commits only what it forwarded)."""
    return len(work_committed(bootstrap, topics))


def by_event(outcomes: list[Consumed]) -> dict[str, dict[str, Any]]:
    return {record.json()["event_id"]: record.json() for record in outcomes}


def test_happy_path_in_the_container_deletes_publishes_and_commits(
    kafka_bootstrap: str,
    topics: TopicsFactory,
    sandbox_process: SandboxFactory,
    container_service: ContainerFactory,
) -> None:
    names = topics(partitions=2)
    sandbox = sandbox_process("--qps", "0")
    sandbox.seed({"shoes": [("p1", "a.jpg"), ("p1", "b.jpg"), ("p2", "c.jpg")]})
    service = container_service(names, sandbox)
    running = containers.podman(
        "inspect",
        "--format",
        "{{.HostConfig.NetworkMode}} {{.HostConfig.ReadonlyRootfs}} {{.Config.User}}",
        service.name,
    )
    assert running.stdout.split() == ["host", "true", "10001:10001"], "host network, read-only root, user 10001"
    produce(
        kafka_bootstrap,
        names.input,
        [
            event("e1", "shoes", "p1", ["a.jpg", "b.jpg", "a.jpg"]),
            event("e2", "shoes", "p2", ["c.jpg", "gone.jpg"]),
        ],
    )
    outcomes = by_event(consume_all(kafka_bootstrap, names.outcome, expect=2, timeout=60, settle=1))
    assert set(outcomes) == {"e1", "e2"}
    assert outcomes["e1"]["status"] == "deleted"
    assert [(i["image_id"], i["status"]) for i in outcomes["e1"]["images"]] == [
        ("a.jpg", "deleted"),
        ("b.jpg", "deleted"),
    ]
    assert [(i["image_id"], i["status"]) for i in outcomes["e2"]["images"]] == [
        ("c.jpg", "deleted"),
        ("gone.jpg", "absent"),
    ]
    assert sandbox.admin("/admin/images?collection_name=shoes")["count"] == 0
    assert sandbox.stats()["items_deleted_more_than_once"] == 0
    wait_for(lambda: committed_total(kafka_bootstrap, names) == 2, 30, "the container did not commit both offsets")
    assert service.metric("imgsweep_outcomes_total", 'status="deleted"') == 2
    assert service.terminate(timeout=60) == 0
    logs = service.logs()
    assert SECRET_KEY not in logs
    assert "Traceback" not in logs


def test_sigterm_drains_the_container_commits_and_leaves_no_duplicate_outcome(
    kafka_bootstrap: str,
    topics: TopicsFactory,
    sandbox_process: SandboxFactory,
    container_service: ContainerFactory,
) -> None:
    names = topics(partitions=2)
    sandbox = sandbox_process("--qps", "0", "--latency-ms", "100")
    count = 200
    sandbox.seed({"shop": [(f"p{n}", f"{n}-{i}.jpg") for n in range(count) for i in range(2)]})
    produce(
        kafka_bootstrap,
        names.input,
        [event(f"e{n}", "shop", f"p{n}", [f"{n}-0.jpg", f"{n}-1.jpg"]) for n in range(count)],
    )
    first = container_service(names, sandbox, API__QPS="10", BATCH__MAX_ITEMS="10", SHUTDOWN_GRACE_SECONDS="20")
    wait_for(lambda: first.metric("imgsweep_outcomes_total") >= 20, 90, "no progress before SIGTERM")

    assert first.terminate(timeout=45) == 0, first.logs()[-3000:]  # podman kill --signal TERM
    assert "shutdown leaves events unfinished" not in first.logs()
    drained = consume_all(kafka_bootstrap, names.outcome, expect=1, timeout=30, settle=2)
    assert drained, "the drain published nothing"
    assert committed_total(kafka_bootstrap, names) == len(drained), "every published outcome's offset committed"
    assert "router forwarding" in first.logs(), "the container ran the router stage (the default)"

    container_service(names, sandbox, API__QPS="50", BATCH__MAX_ITEMS="20")
    outcomes = consume_all(kafka_bootstrap, names.outcome, expect=count, timeout=120, settle=2)
    per_event = Counter(record.json()["event_id"] for record in outcomes)
    assert set(per_event) == {f"e{n}" for n in range(count)}
    assert max(per_event.values()) == 1, "a drained event was redelivered"
    assert sandbox.stats()["items_deleted_more_than_once"] == 0
    wait_for(lambda: committed_total(kafka_bootstrap, names) == count, 30, "not every offset was committed")
