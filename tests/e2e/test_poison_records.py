"""Poison records are never fatal, observed on the running service, the real broker and the sandbox.

A record of 1,030,000 bytes (a Java producer and the broker take it; librdkafka's producer takes at most
1,000,000) among valid events: every valid event gets its outcome, the big one is dead-lettered with a prefix of
its value and headers saying its size, its SHA-256 and where it is, and the process stays up with everything
committed. A record whose handling kills the process (``os._exit`` in the decoder, injected into the service
process: nothing Python can catch) is tried once more after a restart, and after the second death the next
process dead-letters it as ``internal_error`` without a third try and goes on. A record whose handling raises
(an exception in the decoder, injected the same way) is dead-lettered as ``internal_error`` at once and the
process goes on with the next one, never exiting.
"""

from __future__ import annotations

import hashlib
import os
import textwrap
from pathlib import Path

import pytest
from confluent_kafka import Producer

from devkit.fixtures import TEST_SETTINGS, SandboxFactory, ServiceFactory, TopicsFactory
from devkit.processes import REPO, Consumed, SandboxProcess, ServiceProcess, Topics, consume_all, event, produce, send
from tests.e2e.test_dead_letters import replay_dlq
from tests.support.committed import work_committed

pytestmark = pytest.mark.e2e

BIG = 1_030_000


def read_topic(bootstrap: str, topic: str, *, expect: int, timeout: float = 60, settle: float = 0.0) -> list[Consumed]:
    records = consume_all(bootstrap, topic, expect=expect, timeout=timeout, settle=settle)
    return sorted(records, key=lambda record: (record.partition, record.offset))


def test_a_record_at_the_brokers_limit_is_dead_lettered_truncated_and_the_rest_get_outcomes(
    kafka_bootstrap: str, topics: TopicsFactory, sandbox_process: SandboxFactory, service_process: ServiceFactory
) -> None:
    names: Topics = topics(partitions=1)
    sandbox: SandboxProcess = sandbox_process("--qps", "0")
    sandbox.seed({"shop": [(f"p{n}", f"{n}-0.jpg") for n in range(4)]})
    big = b"{" + bytes(range(256)) * (BIG // 256) + b"x" * (BIG - 1 - 256 * (BIG // 256))  # not UTF-8
    assert len(big) == BIG
    records = [event(f"e{n}", "shop", f"p{n}", [f"{n}-0.jpg"]) for n in range(4)]
    records.insert(2, (b"big", big, [("origin", b"java")]))
    java_like = Producer({"bootstrap.servers": kafka_bootstrap, "message.max.bytes": 1_048_576})
    send(java_like, names.input, records)
    del java_like  # closed now, not when the broker is gone
    service: ServiceProcess = service_process(names, sandbox)

    outcomes = {o.json()["event_id"]: o.json() for o in read_topic(kafka_bootstrap, names.outcome, expect=4)}
    assert {event_id: outcome["status"] for event_id, outcome in outcomes.items()} == {
        f"e{n}": "deleted" for n in range(4)
    }
    (dead,) = read_topic(kafka_bootstrap, names.dlq, expect=1, settle=1)
    assert dead.value is not None
    assert 900_000 < len(dead.value) < 1_000_000
    assert big.startswith(dead.value)
    assert dead.key == b"big"
    assert dead.header("origin") == b"java"
    assert dead.header("imgsweep_error_class") == b"invalid_utf8"
    assert dead.header("imgsweep_truncated") == b"value"
    assert dead.header("imgsweep_original_size") == str(BIG).encode()
    assert dead.header("imgsweep_original_sha256") == hashlib.sha256(big).hexdigest().encode()
    assert [dead.header(f"imgsweep_source_{part}") for part in ("topic", "partition", "offset")] == [
        names.input.encode(),
        b"0",
        b"2",
    ]
    assert service.process.poll() is None
    assert service.get("/readyz").status_code == 200
    assert service.metric("imgsweep_dead_letters_truncated_total") == 1
    assert service.metric("imgsweep_dead_letters_total", 'reason="invalid_event"') == 1
    assert service.terminate(timeout=40) == 0
    assert len(work_committed(kafka_bootstrap, names)) == 5, "every record committed past by the work's group"
    summary = replay_dlq(service)  # the copy is not the record: passed over, never republished
    assert (summary["replayed"], summary["truncated"], summary["failed"]) == (0, 1, 0)


KILLER = '''
"""Test-only: the decoder kills this process on a record naming product "kill-me" (a crash no except catches)."""
import os

import service.pipeline.events as events

_decode = events.decode_event


def _killing(value, headers, types):
    if value is not None and b'"kill-me"' in value:
        os._exit(70)
    return _decode(value, headers, types)


events.decode_event = _killing
'''


RAISER = '''
"""Test-only: the decoder raises on a record naming product "raise-me" (a bug in handling one record)."""
import service.pipeline.events as events

_decode = events.decode_event


def _raising(value, headers, types):
    if value is not None and b'"raise-me"' in value:
        raise RecursionError("injected: maximum recursion depth exceeded")
    return _decode(value, headers, types)


events.decode_event = _raising
'''


def inject(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: str) -> None:
    """Runs ``code`` in every service process started from now on (a ``sitecustomize`` first on the path)."""
    injected = tmp_path / "injected"
    injected.mkdir()
    (injected / "sitecustomize.py").write_text(textwrap.dedent(code))
    # sitecustomize imports ``service`` before ``-m`` puts the working directory on the path: this checkout first,
    # or an editable install elsewhere would be the service that runs.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join((str(injected), str(REPO))))


def test_a_record_whose_handling_raises_is_dead_lettered_as_internal_error_and_the_rest_go_on(
    *, kafka_bootstrap: str, topics: TopicsFactory, sandbox_process: SandboxFactory, service_process: ServiceFactory,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    names: Topics = topics(partitions=1)
    sandbox: SandboxProcess = sandbox_process("--qps", "0")
    sandbox.seed({"shop": [(f"p{n}", f"{n}-0.jpg") for n in (0, 2, 3)]})
    records = [event(f"e{n}", "shop", f"p{n}", [f"{n}-0.jpg"]) for n in (0, 2, 3)]
    records.insert(1, event("e1", "shop", "raise-me", ["1-0.jpg"]))
    produce(kafka_bootstrap, names.input, records)
    inject(tmp_path, monkeypatch, RAISER)
    service: ServiceProcess = service_process(names, sandbox)

    outcomes = {o.json()["event_id"]: o.json() for o in read_topic(kafka_bootstrap, names.outcome, expect=3)}
    assert {event_id: outcome["status"] for event_id, outcome in outcomes.items()} == {
        f"e{n}": "deleted" for n in (0, 2, 3)
    }
    (dead,) = read_topic(kafka_bootstrap, names.dlq, expect=1, settle=1)
    assert dead.header("imgsweep_error_class") == b"internal_error"
    assert dead.header("imgsweep_error_reason") == (
        b"decode failed: RecursionError: injected: maximum recursion depth exceeded"
    )
    assert dead.value is not None
    assert b'"raise-me"' in dead.value
    assert service.metric("imgsweep_internal_errors_total", 'step="decode"') == 1
    assert service.process.poll() is None, "one record's error never ends the process"
    assert service.get("/readyz").status_code == 200
    assert sandbox.stats()["items_deleted"] == 3
    assert service.terminate(timeout=40) == 0
    assert len(work_committed(kafka_bootstrap, names)) == 4, "every record committed past by the work's group"


@pytest.mark.parametrize("routed", [True, False], ids=["router", "input"])
def test_a_record_that_kills_the_process_twice_is_dead_lettered_without_a_third_try(
    *,
    routed: bool,
    kafka_bootstrap: str,
    topics: TopicsFactory,
    sandbox_process: SandboxFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names: Topics = topics(partitions=1)
    sandbox: SandboxProcess = sandbox_process("--qps", "0")
    sandbox.seed({"shop": [("p0", "0-0.jpg"), ("p2", "2-0.jpg")]})
    produce(
        kafka_bootstrap,
        names.input,
        [
            event("e0", "shop", "p0", ["0-0.jpg"]),
            event("e1", "shop", "kill-me", ["1-0.jpg"]),
            event("e2", "shop", "p2", ["2-0.jpg"]),
        ],
    )
    inject(tmp_path, monkeypatch, KILLER)
    marks = tmp_path / "marks"  # the pod's /tmp, kept across container restarts
    marks.mkdir()
    monkeypatch.setenv("TMPDIR", str(marks))
    secrets = tmp_path / "secrets"
    secrets.mkdir()

    def start(n: int) -> ServiceProcess:
        return ServiceProcess.start(
            bootstrap=kafka_bootstrap, topics=names, endpoint=sandbox.endpoint, log_path=tmp_path / f"service-{n}.log",
            secrets_dir=secrets, wait=False,
            settings={**TEST_SETTINGS, "KAFKA__SESSION_TIMEOUT_MS": "6000", "KAFKA__REPARTITION": str(routed).lower()},
        )  # fmt: skip

    started: list[ServiceProcess] = []
    try:
        for n in range(2):  # the first death, then the one try after the restart
            started.append(start(n))
            assert started[-1].process.wait(90) == 70, started[-1].logs()[-3000:]
        started.append(start(2))
        third = started[-1]
        third.wait_ready()
        outcomes = {
            o.json()["event_id"]: o.json() for o in read_topic(kafka_bootstrap, names.outcome, expect=2, timeout=90)
        }
        assert {event_id: outcome["status"] for event_id, outcome in outcomes.items()} == {
            "e0": "deleted",
            "e2": "deleted",
        }
        (dead,) = read_topic(kafka_bootstrap, names.dlq, expect=1, settle=1)
        assert dead.header("imgsweep_error_class") == b"internal_error"
        assert dead.header("imgsweep_error_reason") == (
            b"the process stopped 2 times while handling this record: not tried again"
        )
        assert dead.header("imgsweep_source_offset") == b"1"
        assert dead.value is not None
        assert b'"kill-me"' in dead.value
        assert third.metric("imgsweep_internal_errors_total", 'step="restart"') == 1
        assert third.process.poll() is None
        assert third.terminate(timeout=40) == 0
        assert len(work_committed(kafka_bootstrap, names, routed=routed)) == 3
        if routed:  # the router died first (its marks), then the pipeline, which counts the router's in the header
            assert "the last process stopped while handling this record (1 time(s))" in started[1].logs()
            assert "the last process stopped while handling this record (1 time(s))" in third.logs()
        else:
            assert "the last process stopped while handling this record (2 time(s))" in third.logs()
    finally:
        for service in started:
            service.stop()
