"""The budget day shared by replicas and kept across restarts, end to end (issue 20, point 2).

A pack whose daily spending limit buys 10 calls (1.0 spent at most, 0.1 a call), two replicas, one of them
SIGKILLed and started again with the same instance id: the sandbox (which counts every call it answers) sees at
most 10 calls, and the work beyond them waits, uncommitted: nothing failed, nothing dead-lettered. Before the
budget topic, each process counted its own calls from 0 and the same scenario made 20 or more.
"""

from __future__ import annotations

import json
import time

import pytest
from confluent_kafka.admin import AdminClient

from devkit.fixtures import FIGURES, SandboxFactory, ServiceFactory, TopicsFactory
from devkit.processes import consume_all, event, produce, wait_for
from devkit.spread import one_collection_per_partition
from tests.e2e.test_brake import _committed

pytestmark = pytest.mark.e2e

CAP = 10
WORKERS = 4
EVENTS = 40
PACK = {
    "API__ALLOWANCE": "pack",
    "API__DAILY_CALLS": "1000",
    "API__PRICE_PER_CALL": "0.1",
    "API__DAILY_SPEND_LIMIT": "1.0",
    "API__QPS": "2",
    "API__WORKERS": str(WORKERS),
    "BATCH__MAX_ITEMS": "5",
}


def test_a_packs_daily_limit_holds_across_two_replicas_and_a_sigkill(
    kafka_bootstrap: str,
    kafka_admin: AdminClient,
    topics: TopicsFactory,
    sandbox_process: SandboxFactory,
    service_process: ServiceFactory,
) -> None:
    names = topics(partitions=2)
    budget_topic = f"{names.input}.budget"
    sandbox = sandbox_process("--qps", "0", "--quota", "1000")
    settings = {**PACK, "KAFKA__BUDGET_TOPIC": budget_topic}
    try:
        first = service_process(names, sandbox, **settings, KAFKA__GROUP_INSTANCE_ID="imgsweep-0")
        second = service_process(names, sandbox, **settings, KAFKA__GROUP_INSTANCE_ID="imgsweep-1")
        first.wait_assigned(1)
        second.wait_assigned(1)
        # every event fills a batch (5 images): 40 full batches, 40 calls without the limit
        # two collections, one on each replica's partition of the collections topic: both replicas spend
        shoes, bags = one_collection_per_partition(2, "shoes")
        records = [
            event(f"e{n}", (shoes, bags)[n % 2], f"p{n}", [f"p{n}-{i}.jpg" for i in range(5)]) for n in range(EVENTS)
        ]
        produce(kafka_bootstrap, names.input, records)

        wait_for(lambda: sandbox.stats()["calls_total"] >= 4, 60, "no calls")
        first.kill()  # SIGKILL: what it spent is only what it wrote to the budget topic
        calls_at_kill = sandbox.stats()["calls_total"]
        again = service_process(names, sandbox, **settings, KAFKA__GROUP_INSTANCE_ID="imgsweep-0")
        restored = again.metric("imgsweep_budget_state_restored_records")

        def both_held() -> bool:
            why = 'why="spend_limit"'
            return (
                again.metric("imgsweep_budget_waiting_for_reset", why) == 1
                and second.metric("imgsweep_budget_waiting_for_reset", why) == 1
            )

        wait_for(both_held, 90, "the replicas never both said the day's spending limit is reached")
        time.sleep(3)  # nothing more goes
        stats = sandbox.stats()
        assert stats["calls_total"] <= CAP, f"{stats['calls_total']} calls for a 10-call daily limit"
        assert stats["calls_total"] == CAP, "the limit's calls are spent, none lost to the kill"
        assert again.metric("imgsweep_budget_account_spent_calls") == CAP
        assert second.metric("imgsweep_budget_account_spent_calls") == CAP
        assert second.metric("imgsweep_budget_members") == 2
        assert restored >= 1, "the restarted replica read the budget topic back"

        outcomes = [record.json() for record in consume_all(kafka_bootstrap, names.outcome, expect=CAP, settle=2.0)]
        # one outcome per call, but for the calls the killed replica had not committed: their events wait with
        # the rest, uncommitted (a call is never made twice here: the day's calls are spent)
        assert CAP - WORKERS <= len(outcomes) <= CAP, "the events beyond the limit wait"
        assert {outcome["status"] for outcome in outcomes} <= {"deleted", "partially_deleted"}
        committed = _committed(kafka_bootstrap, names, EVENTS, routed=True)
        assert committed <= {outcome["event_id"] for outcome in outcomes}, "nothing committed past the limit"
        for replica in (again, second):
            assert replica.metric("imgsweep_dead_letters_total", 'reason="retries_exhausted"') == 0
        claims = second.metric("imgsweep_budget_claim_seconds_count")
        assert claims >= 1, "the surviving replica claimed its calls before making them"
        claim_ms = 1000 * second.metric("imgsweep_budget_claim_seconds_sum") / claims
        line = json.dumps(
            {"test": "budget_shared_sigkill", "cap": CAP, "calls": stats["calls_total"], "calls_at_kill": calls_at_kill,
             "restored_records": restored, "outcomes": len(outcomes),
             "claims": claims, "claim_ms_mean": round(claim_ms, 1)}
        )  # fmt: skip
        print(f"FIGURES {line}")
        FIGURES.append(line)
    finally:
        kafka_admin.delete_topics([budget_topic], operation_timeout=30)
