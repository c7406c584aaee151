"""The brake on mass deletes and the pause commands end to end (issue 21, point 3).

imgsweep runs as its own process against the real broker and the sandbox; ``imgsweep brake``, ``pause`` and
``resume`` run as the operator would run them, with the service's own IMGSWEEP_* settings, and write to the
test's own control topic (``Topics.control_topic``), which the running replica follows.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from devkit.fixtures import FIGURES, SandboxFactory, ServiceFactory, TopicsFactory
from devkit.processes import (
    REPO,
    Record,
    ServiceProcess,
    Topics,
    clean_env,
    consume_all,
    event,
    free_port,
    imgsweep_env,
    produce,
    wait_for,
)
from tests.support.committed import work_committed

pytestmark = pytest.mark.e2e


def _imgsweep(service: ServiceProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """An ``imgsweep`` command with the service's own settings, as an operator on its pod would run it."""
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env=service.env,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines, "the command said nothing"
    return result.stdout


def _records(collection: str, count: int) -> list[Record]:
    return [
        event(f"{collection}-e{n}", collection, f"{collection}-p{n}", [f"{collection}-{n}.jpg"]) for n in range(count)
    ]


def _done(bootstrap: str, names: Topics, expect: int, timeout: float = 5) -> Counter[str]:
    """Outcomes published so far, by collection (reads for ``timeout`` seconds unless ``expect`` came)."""
    outcomes = consume_all(bootstrap, names.outcome, expect=expect, timeout=timeout)
    return Counter(outcome.json()["collection_name"] for outcome in outcomes)


def _committed(bootstrap: str, names: Topics, produced: int, *, routed: bool) -> set[str]:
    """The events the group that does the work has committed past (with the router: ``<group>.collections``,
    translated back to input records); with the router, also checks that the input group has committed nothing
    it has not forwarded."""
    inputs = {
        (r.partition, r.offset): r.json()["event_id"]
        for r in consume_all(bootstrap, names.input, expect=produced, timeout=10)
    }
    done = work_committed(bootstrap, names, routed=routed)
    return {inputs[record] for record in done}


@pytest.mark.parametrize("routed", [True, False], ids=["router", "input"])
def test_a_collection_over_its_brake_stops_until_an_operator_resumes_it(
    routed: bool,
    sandbox_process: SandboxFactory,
    service_process: ServiceFactory,
    topics: TopicsFactory,
    kafka_bootstrap: str,
) -> None:
    """80 images of shoes against a brake of 50 an hour, in calls of at most 10: at most 50 are handed to calls,
    then the brake trips; the rest wait, uncommitted, while bags, another collection, is deleted whole.
    ``imgsweep brake status`` names shoes; ``imgsweep brake resume --collection shoes`` starts its hour again,
    and the other 30 or more go. Nothing is committed past a waiting event by the group that does the work
    (with the router, ``<group>.collections``; the input group then commits only what it forwarded); the router
    off, the input group does the work, and shoes and bags share its partitions."""
    limit, max_items, shoes, bags = 50, 10, 80, 20
    sandbox = sandbox_process()
    sandbox.seed({"shoes": [(f"shoes-p{n}", f"shoes-{n}.jpg") for n in range(shoes)]})
    names = topics(partitions=2)
    service = service_process(
        names, sandbox, BRAKE__MAX_IMAGES_PER_HOUR=str(limit), BATCH__MAX_ITEMS=str(max_items), API__QPS="20",
        KAFKA__REPARTITION=str(routed).lower(),
    )  # fmt: skip
    service.wait_assigned(2)
    assert service.metric("imgsweep_control_caught_up") == 1
    produced = time.monotonic()
    produce(kafka_bootstrap, names.input, [*_records("shoes", shoes), *_records("bags", bags)])

    wait_for(lambda: service.metric("imgsweep_brake_tripped", 'collection="shoes"') == 1, 30, "the brake never tripped")
    tripped = time.monotonic() - produced
    assert service.metric("imgsweep_account_stopped", 'account="default",why="braked"') == 1
    wait_for(lambda: _done(kafka_bootstrap, names, bags, 2)["bags"] == bags, 30, "bags did not go on deleting")
    done = _done(kafka_bootstrap, names, shoes + bags, 3)
    committed = _committed(kafka_bootstrap, names, shoes + bags, routed=routed)
    published = {
        o.json()["event_id"] for o in consume_all(kafka_bootstrap, names.outcome, expect=shoes + bags, timeout=3)
    }
    deleted_before = sandbox.stats()["items_deleted"]
    assert limit - max_items < done["shoes"] <= limit, "calls went up to the limit, never past it"
    assert deleted_before == done["shoes"]
    assert service.metric("imgsweep_brake_trips_total") == 1
    assert committed <= published, "nothing is committed past the waiting events (every committed one has its outcome)"
    assert len(published) == bags + done["shoes"] < shoes + bags
    assert service.metric("imgsweep_pending_events") == shoes - done["shoes"], "the rest wait, none failed"
    assert "brake tripped" in service.logs()
    FIGURES.append(json.dumps({
        "figure": "brake", "router": routed, "limit": limit, "shoes_deleted_before_resume": done["shoes"],
        "shoes_waiting": shoes - done["shoes"], "bags_deleted": done["bags"], "seconds_to_trip": round(tripped, 2),
    }))  # fmt: skip

    status = _ok(_imgsweep(service, "brake", "status"))
    assert status.startswith("1 collection(s) braked: shoes"), status
    assert "collection shoes: braked by" in status
    refused = _imgsweep(service, "resume", "--collection", "shoes")
    assert refused.returncode == 2, "a brake is released by `brake resume`, once the catalog is checked"
    assert "brake resume --collection shoes" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1

    released = _ok(_imgsweep(service, "brake", "resume", "--collection", "shoes"))
    assert "collection shoes's brake released" in released
    wait_for(
        lambda: _done(kafka_bootstrap, names, shoes + bags, 2)["shoes"] == shoes, 30, "shoes never went after resume"
    )
    wait_for(
        lambda: len(_committed(kafka_bootstrap, names, shoes + bags, routed=routed)) == shoes + bags,
        15,
        "the waiting events were not committed",
    )
    assert sandbox.stats()["items_deleted"] == shoes
    assert service.metric("imgsweep_brake_tripped") == 0, "a resumed collection's series is gone"
    assert "no brake is tripped and nothing is paused" in _ok(_imgsweep(service, "brake", "status"))


def test_pause_stops_a_collection_within_seconds_while_another_goes_on_and_resume_restarts_it(
    sandbox_process: SandboxFactory, service_process: ServiceFactory, topics: TopicsFactory, kafka_bootstrap: str
) -> None:
    per_collection = 30
    sandbox = sandbox_process()
    names = topics(partitions=2)
    service = service_process(names, sandbox, API__QPS="20", BATCH__MAX_ITEMS="5")
    service.wait_assigned(2)
    produce(kafka_bootstrap, names.input, [*_records("shoes", 5), *_records("bags", 5)])
    wait_for(lambda: _done(kafka_bootstrap, names, 10, 2) == {"shoes": 5, "bags": 5}, 30, "the first events never went")

    paused = _ok(_imgsweep(service, "pause", "--collection", "shoes", "--reason", "e2e: catalog incident"))
    assert paused.startswith("collection shoes paused on"), paused
    written = time.monotonic()
    wait_for(lambda: service.metric("imgsweep_paused", 'kind="collection"') == 1, 5, "the replica did not obey", 0.01)
    obeyed = time.monotonic() - written
    FIGURES.append(json.dumps({"figure": "pause obeyed after the command returned", "seconds": round(obeyed, 3)}))
    late = [
        event(f"{name}-late{n}", name, f"{name}-late{n}", [f"{name}-late{n}.jpg"])
        for name in ("shoes", "bags")
        for n in range(per_collection)
    ]
    produce(kafka_bootstrap, names.input, late)
    wait_for(
        lambda: _done(kafka_bootstrap, names, 10 + per_collection, 2)["bags"] == 5 + per_collection,
        30,
        "bags stopped too",
    )
    assert _done(kafka_bootstrap, names, 10 + 2 * per_collection, 2)["shoes"] == 5, "a paused collection deleted"
    status = _ok(_imgsweep(service, "brake", "status"))
    assert "collection shoes: paused by" in status
    assert "e2e: catalog incident" in status
    assert service.metric("imgsweep_pending_events") == per_collection
    # the account holding the paused collection: what keeps its stall alerts quiet (namespace_job:imgsweep_account_held)
    assert service.metric("imgsweep_account_stopped", 'account="default",why="paused"') == 1

    resumed = _ok(_imgsweep(service, "resume", "--collection", "shoes"))
    assert resumed.startswith("collection shoes resumed"), resumed
    wait_for(
        lambda: _done(kafka_bootstrap, names, 10 + 2 * per_collection, 2)["shoes"] == 5 + per_collection,
        30,
        "shoes never went after resume",
    )
    assert service.metric("imgsweep_paused", 'kind="collection"') == 0
    assert service.metric("imgsweep_account_stopped", 'account="default",why="paused"') == 0
    assert "collection shoes is not paused" in _ok(_imgsweep(service, "resume", "--collection", "shoes"))


def test_a_paused_account_starts_no_call_and_asks_for_no_qps(
    sandbox_process: SandboxFactory, service_process: ServiceFactory, topics: TopicsFactory, kafka_bootstrap: str
) -> None:
    sandbox = sandbox_process()
    names = topics(partitions=1)
    service = service_process(names, sandbox, BATCH__MAX_ITEMS="5")
    service.wait_assigned(1)
    _ok(_imgsweep(service, "pause", "--account", "default"))
    wait_for(lambda: service.metric("imgsweep_paused", 'kind="account"') == 1, 5, "the replica did not obey")
    produce(kafka_bootstrap, names.input, [*_records("shoes", 20), *_records("bags", 20)])
    wait_for(lambda: service.metric("imgsweep_pending_events") == 40, 15, "the events were not consumed")
    time.sleep(2)  # a second announcement and several turns of the loop
    assert service.metric("imgsweep_qps_demand_calls", 'account="default"') == 0, "a paused account asks for no QPS"
    assert sandbox.stats()["calls_by_code"] == {}, "no call started"
    assert _done(kafka_bootstrap, names, 1, 1) == {}

    _ok(_imgsweep(service, "resume", "--account", "default"))
    wait_for(lambda: _done(kafka_bootstrap, names, 40, 2) == {"shoes": 20, "bags": 20}, 30, "nothing went after resume")


def test_a_replica_that_cannot_reach_its_control_topic_does_not_start(tmp_path: Path) -> None:
    """No call may start without knowing the pauses in force: one line naming the setting, exit 2."""
    names = Topics.named("unreachable")
    env = {
        **clean_env(),
        **imgsweep_env(bootstrap="127.0.0.1:1", topics=names, endpoint=None, settings={"HTTP__PORT": str(free_port())}),
        "IMGSWEEP_SECRETS_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-m", "service", "run"],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=90,
        check=False,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = [line for line in (result.stdout + result.stderr).splitlines() if "cannot start" in line]
    assert "IMGSWEEP_KAFKA__CONTROL_TOPIC: control topic 'unreachable.control'" in line
