"""Every failed outcome has a dead-letter copy, and a replay of it answers with an outcome of its own.

Observed on the running service, the real broker and the sandbox process: a permanent per-item failure
(NO_RELATIVE_COLLECTION) and an internal error (a bug injected into the service process) each end in the
dead-letter topic; once the cause is fixed, ``imgsweep replay-dlq`` republishes them with their headers
(repeated names kept) and headers naming the dead letter, the new outcomes have new ids and say which dead
letter they answer, and running the command again replays nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from devkit.fixtures import SandboxFactory, ServiceFactory, TopicsFactory
from devkit.processes import (
    REPO,
    SECRET_KEY,
    Consumed,
    Record,
    SandboxProcess,
    ServiceProcess,
    Topics,
    consume_all,
    event,
    produce,
)

pytestmark = pytest.mark.e2e

REPLAY_OF = ("imgsweep_replay_of_topic", "imgsweep_replay_of_partition", "imgsweep_replay_of_offset")


def read_topic(bootstrap: str, topic: str, *, expect: int, timeout: float = 60, settle: float = 0.0) -> list[Consumed]:
    """``consume_all`` in the broker's order: by partition, then offset."""
    records = consume_all(bootstrap, topic, expect=expect, timeout=timeout, settle=settle)
    return sorted(records, key=lambda record: (record.partition, record.offset))


def replay_dlq(service: ServiceProcess, *flags: str) -> dict[str, Any]:
    """``imgsweep replay-dlq`` as an operator runs it, with the service's settings (and nothing injected)."""
    env = {name: value for name, value in service.env.items() if name != "PYTHONPATH"}
    env["PATH"] = os.environ.get("PATH", "")
    done = subprocess.run(
        [sys.executable, "-m", "service", "replay-dlq", *flags],
        env=env, capture_output=True, text=True, timeout=90, check=True,
    )  # fmt: skip
    assert SECRET_KEY not in done.stdout + done.stderr
    summary: dict[str, Any] = json.loads(done.stdout)
    return summary


def test_a_permanent_item_failure_is_dead_lettered_and_its_replay_gets_a_new_outcome_once(
    kafka_bootstrap: str, topics: TopicsFactory, sandbox_process: SandboxFactory, service_process: ServiceFactory
) -> None:
    names: Topics = topics(partitions=1)
    sandbox: SandboxProcess = sandbox_process("--qps", "0", "--unknown-collection-1030")
    sandbox.seed({"shop": [("p0", "0-0.jpg")]})
    traced = [("trace", b"t1"), ("baggage", b"k=v"), ("trace", b"t2"), ("empty", None)]
    ghost = [event(f"e{n}", "ghost", f"p{n}", [f"{n}-0.jpg", f"{n}-1.jpg"]) for n in (1, 2, 3)]
    key, value, _ = ghost[0]
    records: list[Record] = [event("e0", "shop", "p0", ["0-0.jpg"]), (key, value, list(traced)), *ghost[1:]]
    produce(kafka_bootstrap, names.input, records)
    service: ServiceProcess = service_process(names, sandbox)

    first = {o.json()["event_id"]: o.json() for o in read_topic(kafka_bootstrap, names.outcome, expect=4)}
    assert first["e0"]["status"] == "deleted"
    for n in (1, 2, 3):
        assert first[f"e{n}"]["status"] == "failed"
        assert {image["reason"] for image in first[f"e{n}"]["images"]} == {"NO_RELATIVE_COLLECTION"}
        assert first[f"e{n}"]["source"] == {"topic": names.input, "partition": 0, "offset": n}
        assert first[f"e{n}"]["replay_of"] is None
    dead = read_topic(kafka_bootstrap, names.dlq, expect=3, settle=1)
    assert [record.value for record in dead] == [value for _, value, _ in records[1:]]
    assert {record.header("imgsweep_error_class") for record in dead} == {b"item_failed"}
    reason = dead[0].header("imgsweep_error_reason")
    assert (
        reason == b"2 of 2 images failed for good: '1-0.jpg': NO_RELATIVE_COLLECTION; '1-1.jpg': NO_RELATIVE_COLLECTION"
    )
    assert dead[0].header_pairs[: len(traced)] == traced  # repeated header names kept, in order
    assert service.metric("imgsweep_dead_letters_total", 'reason="item_failed"') == 3

    # The cause is fixed (the collection exists now); an operator counts, then replays one, then the rest.
    sandbox.seed({"ghost": [(f"p{n}", f"{n}-{i}.jpg") for n in (1, 2, 3) for i in (0, 1)]})
    counted = replay_dlq(service, "--error-class", "item_failed", "--dry-run")
    assert (counted["dry_run"], counted["replayed"], counted["failed"]) == (True, 3, 0)
    assert counted["group"] == f"{names.group}.replay-dlq.item_failed"
    one = replay_dlq(service, "--error-class", "item_failed", "--limit", "1")
    assert (one["replayed"], one["by_error_class"], one["failed"]) == (1, {"item_failed": 1}, 0)
    rest = replay_dlq(service, "--error-class", "item_failed")
    assert (rest["replayed"], rest["failed"]) == (2, 0)
    again = replay_dlq(service, "--error-class", "item_failed")
    assert (again["replayed"], again["failed"]) == (0, 0)  # resumed past everything: nothing replayed twice

    copies = read_topic(kafka_bootstrap, names.input, expect=7, settle=2)[4:]
    assert len(copies) == 3
    for copy, letter in zip(copies, dead, strict=True):
        assert (copy.key, copy.value) == (letter.key, letter.value)
        assert [name for name, _ in copy.header_pairs if name.startswith("imgsweep_")] == list(REPLAY_OF)
        assert [copy.header(name) for name in REPLAY_OF] == [names.dlq.encode(), b"0", str(letter.offset).encode()]
    assert copies[0].header_pairs[: len(traced)] == traced

    outcomes = read_topic(kafka_bootstrap, names.outcome, expect=7, settle=2)
    assert len(outcomes) == 7
    for copy, letter in zip(copies, dead, strict=True):
        (replayed,) = [o.json() for o in outcomes if o.json()["source"]["offset"] == copy.offset]
        original = first[replayed["event_id"]]
        assert replayed["status"] == "deleted"
        assert replayed["outcome_id"] != original["outcome_id"]
        assert replayed["source"] == {"topic": names.input, "partition": copy.partition, "offset": copy.offset}
        assert replayed["replay_of"] == {"topic": names.dlq, "partition": 0, "offset": letter.offset}
    assert sandbox.admin("/admin/images?collection_name=ghost")["count"] == 0
    assert len(read_topic(kafka_bootstrap, names.dlq, expect=4, timeout=3)) == 3  # no new dead letter


INJECTED_BUG = '''
"""Test-only: a bug in this service process's classifier, for one collection (a stand-in for a real one)."""
import service.api.client

_classify = service.api.client.classify_response


def _buggy(**arguments):
    if arguments["batch"].collection == "buggy":
        raise ZeroDivisionError("injected bug in classify_response")
    return _classify(**arguments)


service.api.client.classify_response = _buggy
'''


def test_an_internal_error_is_dead_lettered_and_replayed_once_the_bug_is_gone(
    *,
    kafka_bootstrap: str,
    topics: TopicsFactory,
    sandbox_process: SandboxFactory,
    service_process: ServiceFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names: Topics = topics(partitions=1)
    sandbox: SandboxProcess = sandbox_process("--qps", "0")
    sandbox.seed({"shop": [("p0", "0-0.jpg")], "buggy": [("p1", "1-0.jpg")]})
    produce(
        kafka_bootstrap, names.input, [event("e0", "shop", "p0", ["0-0.jpg"]), event("e1", "buggy", "p1", ["1-0.jpg"])]
    )
    injected = tmp_path / "injected"
    injected.mkdir()
    (injected / "sitecustomize.py").write_text(textwrap.dedent(INJECTED_BUG))
    # Only the service process started now loads it; this checkout first, or sitecustomize's import of ``service``
    # (before ``-m`` puts the working directory on the path) would find an editable install elsewhere.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join((str(injected), str(REPO))))
    buggy: ServiceProcess = service_process(names, sandbox)

    first = {o.json()["event_id"]: o.json() for o in read_topic(kafka_bootstrap, names.outcome, expect=2)}
    assert first["e0"]["status"] == "deleted"
    assert (first["e1"]["status"], first["e1"]["images"][0]["reason"]) == ("failed", "internal_error")
    (dead,) = read_topic(kafka_bootstrap, names.dlq, expect=1, settle=1)
    assert dead.header("imgsweep_error_class") == b"internal_error"
    assert dead.header("imgsweep_error_reason") == b"1 of 1 images failed for good: '1-0.jpg': internal_error"
    assert dead.header("imgsweep_source_offset") == b"1"
    assert "injected bug in classify_response" in buggy.logs()
    # The bug struck while reading the API's answer: the image is gone, imgsweep could not tell.
    assert sandbox.admin("/admin/images?collection_name=buggy")["count"] == 0

    # The fixed build is deployed; the dead letter is replayed.
    assert buggy.terminate(timeout=40) == 0
    monkeypatch.delenv("PYTHONPATH")
    fixed: ServiceProcess = service_process(names, sandbox)
    summary = replay_dlq(fixed, "--error-class", "internal_error")
    assert (summary["replayed"], summary["failed"]) == (1, 0)
    outcomes = read_topic(kafka_bootstrap, names.outcome, expect=3, settle=1)
    replayed = outcomes[-1].json()
    assert (replayed["event_id"], replayed["status"], replayed["images"][0]["status"]) == ("e1", "deleted", "absent")
    assert replayed["outcome_id"] != first["e1"]["outcome_id"]
    assert replayed["replay_of"] == {"topic": names.dlq, "partition": 0, "offset": dead.offset}
    assert replay_dlq(fixed, "--error-class", "internal_error")["replayed"] == 0
