"""The failure semantics, each observed on the running service: faults, exhausted retries and replay, the
fatal state, the quota running out and resetting, crashes, drains, several replicas, dry-run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from devkit.fixtures import SandboxFactory, ServiceFactory, TopicsFactory
from devkit.processes import (
    SECRET_KEY,
    Consumed,
    Record,
    SandboxProcess,
    ServiceProcess,
    Topics,
    consume_all,
    event,
    produce,
    wait_for,
)
from devkit.spread import one_collection_per_partition
from service.settings import DRY_RUN_SUFFIX

pytestmark = pytest.mark.e2e

CST = timezone(timedelta(hours=8))


def outcomes_by_event(records: list[Consumed]) -> dict[str, dict[str, Any]]:
    return {record.json()["event_id"]: record.json() for record in records}


def seeded_events(sandbox: SandboxProcess, count: int, collection: str = "shop", images: int = 3) -> list[Record]:
    sandbox.seed({collection: [(f"p{n}", f"{n}-{i}.jpg") for n in range(count) for i in range(images)]})
    return [event(f"e{n}", collection, f"p{n}", [f"{n}-{i}.jpg" for i in range(images)]) for n in range(count)]


def test_every_fault_mode_ends_with_every_image_gone(
    kafka_bootstrap: str, topics: TopicsFactory, sandbox_process: SandboxFactory, service_process: ServiceFactory
) -> None:
    names: Topics = topics(partitions=2)
    sandbox: SandboxProcess = sandbox_process(
        "--qps", "0", "--seed", "7",
        "--http-503-rate", "0.15", "--http-500-rate", "0.1", "--hang-rate", "0.1", "--hang-seconds", "3",
        "--truncate-rate", "0.1", "--busy-rate", "0.15", "--publisher-error-rate", "0.15",
        "--item-error-rate", "0.1", "--latency-ms", "5",
    )  # fmt: skip
    records = seeded_events(sandbox, 100)
    produce(kafka_bootstrap, names.input, records)
    service_process(names, sandbox, API__QPS="30", BATCH__MAX_ITEMS="5", API__MAX_ATTEMPTS="30")
    outcomes = outcomes_by_event(consume_all(kafka_bootstrap, names.outcome, expect=100, timeout=150, settle=1))
    assert len(outcomes) == 100
    assert Counter(o["status"] for o in outcomes.values()) == {"deleted": 100}
    stats = sandbox.stats()
    injected = stats["faults_injected"]
    for fault in ("http_503", "http_500", "hang", "truncated", "10020", "11010", "item_error"):
        assert any(fault in name for name in injected), f"{fault} never injected: {injected}"
    assert sandbox.admin("/admin/images?collection_name=shop")["count"] == 0  # every image really gone
    assert stats["signature_failures"] == 0
    assert stats["nonces_reused"] == 0  # every retry was signed afresh


def test_exhausted_retries_fail_the_event_dead_letter_it_and_replay_completes_it(
    kafka_bootstrap: str, topics: TopicsFactory, sandbox_process: SandboxFactory, service_process: ServiceFactory
) -> None:
    names: Topics = topics(partitions=1)
    sandbox: SandboxProcess = sandbox_process("--qps", "0", "--http-503-rate", "1")
    records = seeded_events(sandbox, 2)
    produce(kafka_bootstrap, names.input, records)
    service: ServiceProcess = service_process(names, sandbox, API__MAX_ATTEMPTS="3", API__MAX_ELAPSED_SECONDS="5")
    outcomes = outcomes_by_event(consume_all(kafka_bootstrap, names.outcome, expect=2, timeout=60))
    assert {o["status"] for o in outcomes.values()} == {"failed"}
    assert {image["reason"] for o in outcomes.values() for image in o["images"]} == {"retries_exhausted"}
    dead = consume_all(kafka_bootstrap, names.dlq, expect=2, timeout=30)
    assert sorted(record.value or b"" for record in dead) == sorted(value or b"" for _, value, _ in records)
    assert {record.headers["imgsweep_error_class"] for record in dead} == {b"retries_exhausted"}
    # The API recovers; an operator replays the dead letters.
    sandbox.admin("/admin/faults", {"http_503_rate": 0.0})
    env = {**service.env, "PATH": os.environ.get("PATH", "")}
    dry = subprocess.run(
        [sys.executable, "-m", "service", "replay-dlq", "--dry-run", "--error-class", "retries_exhausted"],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert '"replayed": 2' in dry.stdout
    assert '"dry_run": true' in dry.stdout
    replay = subprocess.run(
        [sys.executable, "-m", "service", "replay-dlq", "--error-class", "retries_exhausted"],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert '"replayed": 2' in replay.stdout
    assert SECRET_KEY not in replay.stdout + replay.stderr
    final = consume_all(kafka_bootstrap, names.outcome, expect=4, timeout=60)
    statuses = Counter((r.json()["event_id"], r.json()["status"]) for r in final)
    assert statuses == {("e0", "failed"): 1, ("e1", "failed"): 1, ("e0", "deleted"): 1, ("e1", "deleted"): 1}
    assert sandbox.admin("/admin/images?collection_name=shop")["count"] == 0


def test_bad_credentials_halt_the_account_paused_not_ready_and_never_committed(
    kafka_bootstrap: str, topics: TopicsFactory, sandbox_process: SandboxFactory, service_process: ServiceFactory
) -> None:
    """A fatal answer halts its account (decision 0020): with one account, everything pauses; the process stays
    up and ready is off, naming the account and the code, until a probe (a minute later by default) is answered."""
    names: Topics = topics(partitions=1)
    sandbox: SandboxProcess = sandbox_process("--qps", "0")
    records = seeded_events(sandbox, 5)
    service: ServiceProcess = service_process(names, sandbox, API__SECRET_KEY="not-the-right-secret")
    produce(kafka_bootstrap, names.input, records)
    wait_for(lambda: service.get("/readyz").status_code == 503, 30, "never left readiness")
    readiness = service.get("/readyz").json()
    assert readiness["halted_accounts"]["default"].startswith("API error 10047")
    assert readiness["fatal"] is None, "the replica's halt is Kafka's"
    assert readiness["committed_offsets"] == {}
    assert service.metric("imgsweep_account_halted", 'account="default"') == 1
    assert service.metric("imgsweep_fatal") == 0
    time.sleep(2)
    assert service.process.poll() is None  # alive, so metrics and alerts show the state
    assert service.get("/livez").status_code == 200
    assert service.metric("imgsweep_paused_partitions") == 1
    calls = sandbox.stats()["calls_total"]
    assert calls <= 2  # it stopped calling after the first 10047 (two workers may have been in flight)
    assert consume_all(kafka_bootstrap, names.outcome, expect=1, timeout=3) == []
    logs = service.logs()
    assert logs.count("FATAL for this account") == 1
    assert "not-the-right-secret" not in logs


def call_per_image_resetting_in(seconds: float) -> tuple[datetime, dict[str, str]]:
    """When the daily quota resets (China Standard Time, as JD's), and the settings of a quota test: one image per
    call, no linger, that reset ``seconds`` from now."""
    reset_at = datetime.now(CST) + timedelta(seconds=seconds)
    settings = {
        "BATCH__MAX_ITEMS": "1",
        "BATCH__LINGER_SECONDS": "0",
        "API__QUOTA_RESET_TIME": reset_at.strftime("%H:%M:%S"),
    }
    return reset_at, settings


def test_quota_exhaustion_pauses_until_the_reset_then_resumes_by_itself(
    kafka_bootstrap: str, topics: TopicsFactory, sandbox_process: SandboxFactory, service_process: ServiceFactory
) -> None:
    names: Topics = topics(partitions=1)
    sandbox: SandboxProcess = sandbox_process("--qps", "0", "--quota", "2")
    records = seeded_events(sandbox, 6, images=1)
    reset_at, quota_settings = call_per_image_resetting_in(12)
    service: ServiceProcess = service_process(names, sandbox, **quota_settings)
    produce(kafka_bootstrap, names.input, records)
    wait_for(lambda: service.metric("imgsweep_quota_exhausted") == 1, 30, "quota never seen exhausted")
    assert 0 < service.metric("imgsweep_quota_reset_seconds") <= 13
    assert service.metric("imgsweep_paused_partitions") == 1
    done_before = len(consume_all(kafka_bootstrap, names.outcome, expect=6, timeout=2))
    assert done_before == 2  # the two calls the quota allowed, nothing more
    refused = sandbox.stats()["calls_by_code"].get("10040", 0)
    sandbox.admin("/admin/quota", {"reset": True, "limit": 100})  # the API's own midnight
    outcomes = outcomes_by_event(consume_all(kafka_bootstrap, names.outcome, expect=6, timeout=60))
    assert len(outcomes) == 6
    assert datetime.now(CST) >= reset_at - timedelta(seconds=1)  # it waited for the reset, not less
    assert sandbox.stats()["calls_by_code"].get("10040", 0) == refused  # no call wasted while waiting
    assert service.metric("imgsweep_quota_exhausted") == 0


def test_a_quota_wait_followed_by_503s_does_not_fail_the_call(
    kafka_bootstrap: str, topics: TopicsFactory, sandbox_process: SandboxFactory, service_process: ServiceFactory
) -> None:
    """The call that met 10040 waits in its worker for the reset (about 12 s), far past its 3 s retry budget; the
    503s that meet it after the reset are retried like any other, as the wait does not count against the budget."""
    names: Topics = topics(partitions=1)
    sandbox: SandboxProcess = sandbox_process("--qps", "0", "--quota", "1")
    records = seeded_events(sandbox, 3, images=1)
    reset_at, quota_settings = call_per_image_resetting_in(12)
    service: ServiceProcess = service_process(
        names,
        sandbox,
        **quota_settings,
        API__MAX_ELAPSED_SECONDS="3",
        API__BACKOFF_INITIAL_SECONDS="0.2",
        API__BACKOFF_MAX_SECONDS="0.5",
    )
    produce(kafka_bootstrap, names.input, records)
    wait_for(lambda: service.metric("imgsweep_quota_exhausted") == 1, 30, "quota never seen exhausted")
    sandbox.admin("/admin/faults", {"http_503_rate": 1.0})  # whatever comes after the reset meets 503s first
    sandbox.admin("/admin/quota", {"reset": True, "limit": 100})
    wait_for(lambda: sandbox.stats()["calls_by_code"].get("http_503", 0) >= 2, 30, "no 503 after the reset")
    assert datetime.now(CST) >= reset_at - timedelta(seconds=1)
    sandbox.admin("/admin/faults", {"http_503_rate": 0.0})
    outcomes = outcomes_by_event(consume_all(kafka_bootstrap, names.outcome, expect=3, timeout=60))
    assert {outcome["status"] for outcome in outcomes.values()} == {"deleted"}
    assert service.metric("imgsweep_images_total", 'reason="retries_exhausted"') == 0
    assert consume_all(kafka_bootstrap, names.dlq, expect=1, timeout=1) == []


def test_sigkill_mid_batch_then_restart_loses_nothing(
    kafka_bootstrap: str, topics: TopicsFactory, sandbox_process: SandboxFactory, service_process: ServiceFactory
) -> None:
    names: Topics = topics(partitions=3)
    sandbox: SandboxProcess = sandbox_process("--qps", "0", "--latency-ms", "150")
    records = seeded_events(sandbox, 300, images=2)
    produce(kafka_bootstrap, names.input, records)
    first: ServiceProcess = service_process(names, sandbox, API__QPS="20", BATCH__MAX_ITEMS="20")
    wait_for(lambda: first.metric("imgsweep_outcomes_total") >= 60, 60, "no progress before the kill")
    first.kill()
    service_process(names, sandbox, API__QPS="50", BATCH__MAX_ITEMS="20")
    outcomes = consume_all(kafka_bootstrap, names.outcome, expect=300, timeout=120, settle=2)
    by_event = Counter(record.json()["event_id"] for record in outcomes)
    assert set(by_event) == {f"e{n}" for n in range(300)}
    duplicates = sum(count - 1 for count in by_event.values())
    print(f"SIGKILL: {len(outcomes)} outcomes for 300 events, {duplicates} duplicates after the crash")
    ids = {record.json()["event_id"]: record.json()["outcome_id"] for record in outcomes}
    for record in outcomes:  # a redelivered event yields the same outcome id
        assert record.json()["outcome_id"] == ids[record.json()["event_id"]]
    assert sandbox.admin("/admin/images?collection_name=shop")["count"] == 0


def test_sigterm_drains_within_the_grace_period_with_zero_duplicate_outcomes(
    kafka_bootstrap: str, topics: TopicsFactory, sandbox_process: SandboxFactory, service_process: ServiceFactory
) -> None:
    names: Topics = topics(partitions=2)
    sandbox: SandboxProcess = sandbox_process("--qps", "0", "--latency-ms", "100")
    records = seeded_events(sandbox, 200, images=2)
    produce(kafka_bootstrap, names.input, records)
    first: ServiceProcess = service_process(
        names, sandbox, API__QPS="10", BATCH__MAX_ITEMS="10", SHUTDOWN_GRACE_SECONDS="20"
    )
    wait_for(lambda: first.metric("imgsweep_outcomes_total") >= 20, 60, "no progress before SIGTERM")
    started = time.monotonic()
    assert first.terminate(timeout=40) == 0
    assert time.monotonic() - started < 25
    assert "shutdown leaves events unfinished" not in first.logs()
    service_process(names, sandbox, API__QPS="50", BATCH__MAX_ITEMS="20")
    outcomes = consume_all(kafka_bootstrap, names.outcome, expect=200, timeout=120, settle=2)
    by_event = Counter(record.json()["event_id"] for record in outcomes)
    assert set(by_event) == {f"e{n}" for n in range(200)}
    assert max(by_event.values()) == 1, "a drained event was redelivered"
    assert sandbox.stats()["items_deleted_more_than_once"] == 0


def test_two_replicas_split_the_partitions_and_the_qps(
    kafka_bootstrap: str, topics: TopicsFactory, sandbox_process: SandboxFactory, service_process: ServiceFactory
) -> None:
    """Both stages split: the routers the input's 4 partitions (each forwards some), the pipelines the collections
    topic's 4, a collection on each (each deletes some); the QPS shared by partitions, half each."""
    names: Topics = topics(partitions=4)
    sandbox: SandboxProcess = sandbox_process("--qps", "0")
    collections = one_collection_per_partition(4)
    sandbox.seed({name: [(f"p{n}", f"{n}.jpg") for n in range(i, 200, 4)] for i, name in enumerate(collections)})
    records = [event(f"e{n}", collections[n % 4], f"p{n}", [f"{n}.jpg"]) for n in range(200)]
    by_partitions = {"API__QPS": "8", "API__QPS_SHARE": "partitions", "BATCH__MAX_ITEMS": "5"}  # 0002's rule
    one: ServiceProcess = service_process(names, sandbox, **by_partitions)
    one.wait_assigned(4)
    two: ServiceProcess = service_process(names, sandbox, **by_partitions)
    two.wait_assigned(2)
    one.wait_assigned(2)
    wait_for(
        lambda: one.metric("imgsweep_rate_limit_qps") == 4 and two.metric("imgsweep_rate_limit_qps") == 4,
        20,
        "QPS not shared",
    )
    produce(kafka_bootstrap, names.input, records)
    outcomes = consume_all(kafka_bootstrap, names.outcome, expect=200, timeout=90, settle=1)
    assert Counter(record.json()["event_id"] for record in outcomes) == {f"e{n}": 1 for n in range(200)}
    assert one.metric("imgsweep_outcomes_total") > 0
    assert two.metric("imgsweep_outcomes_total") > 0
    assert one.metric("imgsweep_outcomes_total") + two.metric("imgsweep_outcomes_total") == 200
    forwarded = [replica.metric("imgsweep_router_forwarded_records_total") for replica in (one, two)]
    assert min(forwarded) > 0, f"each router forwards its input partitions' records: {forwarded}"
    assert sum(forwarded) == 200
    assert [sandbox.admin(f"/admin/images?collection_name={name}")["count"] for name in collections] == [0] * 4


def test_dry_run_does_everything_but_call(
    kafka_bootstrap: str,
    kafka_admin: AdminClient,
    topics: TopicsFactory,
    sandbox_process: SandboxFactory,
    service_process: ServiceFactory,
) -> None:
    names: Topics = topics(partitions=1)
    sandbox: SandboxProcess = sandbox_process("--qps", "0")
    records = seeded_events(sandbox, 3)
    produce(kafka_bootstrap, names.input, records)
    dry_outcomes = names.outcome + DRY_RUN_SUFFIX
    futures = kafka_admin.create_topics([NewTopic(t, 1, 1) for t in (dry_outcomes, names.dlq + DRY_RUN_SUFFIX)])
    for future in futures.values():
        future.result(30)
    service_process(names, sandbox, DRY_RUN="true", API__QPS="50")
    outcomes = outcomes_by_event(consume_all(kafka_bootstrap, dry_outcomes, expect=3, timeout=30))
    assert {o["dry_run"] for o in outcomes.values()} == {True}
    assert sandbox.stats()["calls_total"] == 0
    assert sandbox.admin("/admin/images?collection_name=shop")["count"] == 9
