"""The collections topic end to end (decision 0022; issue 22 point 1, issue 21 point 2).

Real broker, the sandbox, imgsweep as processes with ``IMGSWEEP_KAFKA__REPARTITION=true``: the router forwards
each input record to the collections topic at its collection's partition, so one replica batches a collection
whichever replica read its records; and each account owns its own partitions of it, so an account waiting for its
quota holds back none of the other account's deletions or commits.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from devkit.fixtures import FIGURES, SandboxFactory, ServiceFactory, TopicsFactory
from devkit.processes import (
    Record,
    SandboxProcess,
    ServiceProcess,
    Topics,
    consume_all,
    event,
    produce,
    sample_total,
    wait_for,
)
from tests.e2e.test_accounts import REST_KEYS, SHOES_KEYS, _start_with_accounts

pytestmark = pytest.mark.e2e

ROUTED = {"KAFKA__REPARTITION": "true"}
SLOW = {"BATCH__LINGER_SECONDS": "3", "BATCH__MAX_ITEMS": "200", "API__QPS": "20"}
"""A linger of 3 s at 2 events a second: every call is a partial batch, so its count says how many places batch."""


def _one_collection(count: int, prefix: str) -> list[Record]:
    """One-image delists of one collection, keyed by product: spread over every input partition."""
    return [event(f"{prefix}{n}", "shop", f"{prefix}-p{n}", [f"{prefix}{n}.jpg"]) for n in range(count)]


def _calls(replica: ServiceProcess) -> int:
    return int(replica.metric("imgsweep_api_calls_total", 'code="10000"'))


def _run(
    names: Topics, service_process: ServiceFactory, sandbox: SandboxProcess, *, replicas: int, prefix: str,
    kafka_bootstrap: str, count: int = 40,
) -> list[int]:  # fmt: skip
    """``count`` events at 2 a second with ``replicas`` replicas; the calls each made."""
    started = [service_process(names, sandbox, **SLOW, **ROUTED) for _ in range(replicas)]
    wait_for(
        lambda: all(r.get("/readyz").json()["assigned_partitions"] for r in started),
        60,
        "a replica has no partition of the collections topic",
    )
    produce(kafka_bootstrap, names.input, _one_collection(count, prefix), rate=2.0)
    outcomes = consume_all(kafka_bootstrap, names.outcome, expect=count, timeout=90)
    assert len(outcomes) == count
    calls = [_calls(replica) for replica in started]
    for replica in started:
        replica.stop()
    return calls


def test_two_replicas_on_one_collection_make_no_more_calls_than_one(
    kafka_bootstrap: str, topics: TopicsFactory, sandbox_process: SandboxFactory, service_process: ServiceFactory
) -> None:
    """Issue 22's check, for real: 40 events at 2 a second on 3 input partitions, once with one replica, once with
    two. Without the router two replicas made 9 calls where one made 6 (each batched its own slice)."""
    sandbox = sandbox_process("--qps", "0", "--log-level", "WARNING")
    one = _run(topics(partitions=3), service_process, sandbox, replicas=1, prefix="a", kafka_bootstrap=kafka_bootstrap)
    two = _run(topics(partitions=3), service_process, sandbox, replicas=2, prefix="b", kafka_bootstrap=kafka_bootstrap)
    FIGURES.append(json.dumps({"figure": "one collection, calls by replica", "one_replica": one, "two_replicas": two}))
    assert sorted(two)[0] == 0, f"one replica batches the collection, the other makes no call: {two}"
    assert sum(two) <= sum(one) + 1, f"two replicas {two} against one {one}"  # +1: where a linger window falls


def _collections_committed(bootstrap: str, names: Topics, partitions: list[int]) -> dict[int, int]:
    """The pipeline's group's committed offsets on the collections topic (without joining the group)."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"{names.group}.collections", "enable.auto.commit": False}
    )
    try:
        found = consumer.committed([TopicPartition(names.collections_topic, p) for p in partitions], timeout=10)
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in found}


def test_an_account_out_of_quota_holds_back_none_of_the_other_accounts_work(
    kafka_bootstrap: str, topics: TopicsFactory, sandbox_process: SandboxFactory, tmp_path: Path
) -> None:
    """Issue 21 point 2: half the input is an account's whose quota is spent (its sandbox answers 10040), with a
    pending limit far below its events. The other account's events are all deleted, published and committed (its
    partitions of the collections topic to their end, within a minute); the waiting account's are neither failed
    nor committed past. Without the router, 297 of 750 went through in the same shape of run."""
    waiting = sandbox_process("--qps", "0", "--quota", "0", keys=SHOES_KEYS)
    healthy = sandbox_process("--qps", "0", keys=REST_KEYS)
    names = topics(partitions=4)
    per_account = 300
    shoes = [event(f"s{n}", "shoes", f"s-p{n}", [f"s{n}.jpg"]) for n in range(per_account)]
    bags = [event(f"b{n}", f"bags{n % 5}", f"b-p{n}", [f"b{n}.jpg"]) for n in range(per_account)]
    service = _start_with_accounts(
        kafka_bootstrap, names, tmp_path, {"SHOES": SHOES_KEYS, "REST": REST_KEYS},
        ACCOUNTS__SHOES__COLLECTIONS='["shoes"]', ACCOUNTS__SHOES__ENDPOINT=waiting.endpoint,
        ACCOUNTS__REST__COLLECTIONS='["*"]', ACCOUNTS__REST__ENDPOINT=healthy.endpoint,
        KAFKA__MAX_PENDING_EVENTS="50", BATCH__MAX_ITEMS="20", API__QPS="20", **ROUTED,
    )  # fmt: skip
    try:
        produce(kafka_bootstrap, names.input, [record for pair in zip(shoes, bags, strict=True) for record in pair])
        produced_at = time.monotonic()
        outcomes = consume_all(kafka_bootstrap, names.outcome, expect=per_account, timeout=90, settle=3)
        forwarded = consume_all(kafka_bootstrap, names.collections_topic, expect=2 * per_account, timeout=30)
        by_account: dict[bool, set[int]] = {}
        for record in forwarded:
            by_account.setdefault(record.json()["collection_name"] == "shoes", set()).add(record.partition)
        shoes_partitions, rest_partitions = sorted(by_account[True]), sorted(by_account[False])
        ends: dict[int, int] = {}  # after each partition's last record (a transaction's marker is past it)
        for record in forwarded:
            ends[record.partition] = max(ends.get(record.partition, 0), record.offset + 1)
        wait_for(
            lambda: all(
                _collections_committed(kafka_bootstrap, names, rest_partitions)[p] == ends[p] for p in rest_partitions
            ),
            60,
            "the healthy account's partitions were not committed to their end",
        )
        commit_lag = time.monotonic() - produced_at
        committed = _collections_committed(kafka_bootstrap, names, shoes_partitions)
        waiting_calls = waiting.stats()["calls_by_code"]
        # What the per-account stall alerts read: each account's series, from its own partitions (the lag is
        # read from librdkafka's statistics, every 5 s).
        wait_for(lambda: service.metric("imgsweep_consumer_lag_messages", 'account="rest"') == 0, 20, "rest's lag")
        scrape = service.metrics()
    finally:
        service.stop()
    per_account_series = {
        (name, account): sample_total(scrape, name, f'account="{account}"')
        for name in ("imgsweep_outcomes_total", "imgsweep_consumer_lag_messages", "imgsweep_committed_records_total")
        for account in ("shoes", "rest")
    }
    FIGURES.append(
        json.dumps({"figure": "two accounts, one out of quota", "healthy_done": len(outcomes),
                    "seconds_to_commit_healthy": round(commit_lag, 1), "waiting_committed": committed,
                    "series_by_account": {f"{name}{{{account}}}": value
                                          for (name, account), value in per_account_series.items()}})
    )  # fmt: skip
    assert per_account_series[("imgsweep_outcomes_total", "rest")] == per_account
    assert per_account_series[("imgsweep_outcomes_total", "shoes")] == 0
    assert per_account_series[("imgsweep_consumer_lag_messages", "shoes")] > 0, "shoes's events wait on its partitions"
    # rest's count may be 0: its partitions can be done before the first statistics report, where the count starts.
    assert per_account_series[("imgsweep_committed_records_total", "shoes")] == 0
    assert sample_total(scrape, "imgsweep_quota_exhausted", 'account="shoes"') == 1, "what excuses shoes, alone"
    assert sample_total(scrape, "imgsweep_consumer_lag_messages", 'account="*"') == 0, "no shared partitions"
    assert sorted(o.json()["event_id"] for o in outcomes) == sorted(f"b{n}" for n in range(per_account))
    assert {o.json()["status"] for o in outcomes} == {"deleted"}, "the waiting account's events are not failed"
    assert not set(shoes_partitions) & set(rest_partitions), "each account has partitions of its own"
    assert len(forwarded) == 2 * per_account, "every input record was forwarded once"
    assert all(offset < 0 for offset in committed.values()), f"nothing of the waiting account committed: {committed}"
    assert commit_lag < 60
    assert set(waiting_calls) <= {"10040"}, waiting_calls


@pytest.mark.parametrize("routed", [False, True], ids=["input", "router"])
def test_the_routers_hop_in_latency_and_kafka_traffic(
    routed: bool,
    kafka_bootstrap: str,
    topics: TopicsFactory,
    sandbox_process: SandboxFactory,
    service_process: ServiceFactory,
) -> None:
    """Decision 0022's cost, side by side: 100 events at 10 a second, no linger; the time from the input record's
    timestamp to its outcome's ``completed_at``, and the router's commits (each a transaction and its markers).
    Figures only: the assertion is that every event got its outcome."""
    names = topics(partitions=3)
    sandbox = sandbox_process("--qps", "0", "--log-level", "WARNING")
    replica = service_process(
        names, sandbox, BATCH__LINGER_SECONDS="0", BATCH__MAX_ITEMS="200", API__QPS="50",
        KAFKA__REPARTITION=str(routed).lower(),
    )  # fmt: skip
    count = 100
    records = _one_collection(count, "l")
    produced: dict[str, float] = {}
    for n in range(0, count, 10):
        for record in records[n : n + 10]:
            produced[json.loads(record[1] or b"{}")["event_id"]] = time.time()
        produce(kafka_bootstrap, names.input, records[n : n + 10])
        time.sleep(1)
    outcomes = consume_all(kafka_bootstrap, names.outcome, expect=count, timeout=60)
    waits = sorted(
        datetime.fromisoformat(o.json()["completed_at"]).timestamp() - produced[o.json()["event_id"]] for o in outcomes
    )
    commits = replica.metric("imgsweep_router_commits_total") if routed else 0
    FIGURES.append(
        json.dumps({"figure": f"latency, {'router' if routed else 'input'}", "events": len(outcomes),
                    "median_s": round(waits[len(waits) // 2], 3), "p95_s": round(waits[int(len(waits) * 0.95)], 3),
                    "router_commits": commits})
    )  # fmt: skip
    assert len(outcomes) == count
