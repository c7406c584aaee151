"""Outcomes that cannot be delivered stop the calls at a bound, and everything resumes by itself (issue 21, point 5).

The outcome topic is deleted mid-run (the broker creates no topic by itself: ``auto.create.topics.enable`` is
false, as in production). Records pile up unacknowledged; at ``IMGSWEEP_KAFKA__MAX_UNACKNOWLEDGED`` no call
starts and /readyz is 503 with the reason. Once the topic is created again, the service (never restarted)
delivers what it kept and calls on; a ``read_committed`` reader sees each outcome once and the sandbox saw each
image deleted once (no call redone). At-least-once delivery: with exactly-once, see the decision 0020.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from devkit.fixtures import FIGURES, SandboxFactory, ServiceFactory, TopicsFactory
from devkit.processes import consume_all, event, produce, wait_for

pytestmark = pytest.mark.e2e

EVENTS = 300
FIRST = 50
"""Events done before the outcome topic is deleted (their outcomes are read first: the deletion takes them)."""
MAX_UNACKNOWLEDGED = 30
MAX_ITEMS = 5
WORKERS = 4


def _recreate(admin: AdminClient, topic: str) -> None:
    """Creates ``topic`` again once its deletion is complete (the broker refuses while it is under way)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
        else:
            return


def test_calls_stop_at_the_bound_while_the_outcome_topic_is_gone_and_all_completes_once_when_it_is_back(
    kafka_bootstrap: str,
    kafka_admin: AdminClient,
    topics: TopicsFactory,
    sandbox_process: SandboxFactory,
    service_process: ServiceFactory,
) -> None:
    sandbox = sandbox_process("--qps", "0")
    sandbox.seed({"shoes": [(f"p{n}", f"i{n}.jpg") for n in range(EVENTS)]})
    names = topics(partitions=2)
    service = service_process(
        names,
        sandbox,
        KAFKA__MAX_UNACKNOWLEDGED=str(MAX_UNACKNOWLEDGED),
        BATCH__MAX_ITEMS=str(MAX_ITEMS),
        API__WORKERS=str(WORKERS),
        API__QPS="4",
        # Exactly-once cannot survive a deleted outcome topic yet: the transactional producer turns fatal
        # (INVALID_TXN_STATE after UNKNOWN_TOPIC_OR_PART in AddPartitionsToTxn) and the process exits;
        # docs/decisions/0020-fatal-recheck-and-outputs-down.md. Acknowledged records keep and resend.
        KAFKA__DELIVERY="at_least_once",
    )
    try:
        records = [event(f"e{n}", "shoes", f"p{n}", [f"i{n}.jpg"]) for n in range(EVENTS)]
        produce(kafka_bootstrap, names.input, records[:FIRST])
        before = consume_all(kafka_bootstrap, names.outcome, expect=FIRST, timeout=60, settle=1)
        kafka_admin.delete_topics([names.outcome])[names.outcome].result(30)  # the outcome topic is gone
        produce(kafka_bootstrap, names.input, records[FIRST:])
        deleted_at_outage = sandbox.stats()["items_deleted"]
        broken_at = time.monotonic()
        wait_for(lambda: service.get("/readyz").status_code == 503, 60, "readiness off for the outputs")
        ready = service.get("/readyz").json()
        blocked_after = time.monotonic() - broken_at
        time.sleep(1.0)  # calls under way finish
        stopped_at = sandbox.stats()["items_deleted"]
        time.sleep(4.0)
        assert sandbox.stats()["items_deleted"] == stopped_at, "no call starts while the bound is reached"
        assert service.metric("imgsweep_outputs_blocked") == 1
        waiting = service.metric("imgsweep_unacknowledged_records")
        _recreate(kafka_admin, names.outcome)  # the topic is back
        fixed_at = time.monotonic()
        after = consume_all(kafka_bootstrap, names.outcome, expect=EVENTS - FIRST, timeout=120, settle=3)
        completed_after = time.monotonic() - fixed_at
        wait_for(lambda: service.get("/readyz").status_code == 200, 30, "ready again")
        assert service.metric("imgsweep_outputs_blocked") == 0
        assert service.process.poll() is None, "never restarted"
    finally:
        service.stop()
    assert ready["outputs_blocked"] is not None
    assert "IMGSWEEP_KAFKA__MAX_UNACKNOWLEDGED" in ready["outputs_blocked"]
    assert waiting >= MAX_UNACKNOWLEDGED
    # Images deleted after the topic went: the bound, and the calls under way when it was reached.
    assert stopped_at - deleted_at_outage <= MAX_UNACKNOWLEDGED + WORKERS * MAX_ITEMS
    assert stopped_at < EVENTS
    outcomes = before + after
    assert len(before) == FIRST
    assert len(outcomes) == EVENTS
    assert len({outcome.json()["event_id"] for outcome in outcomes}) == EVENTS, "each outcome once"
    assert {outcome.json()["status"] for outcome in outcomes} == {"deleted"}
    stats = sandbox.stats()
    assert (stats["items_deleted"], stats["items_absent"]) == (EVENTS, 0), "no call redone"
    FIGURES.append(
        f'{{"test": "outputs_down", "blocked_after_s": {blocked_after:.1f}, "deleted_after_break": '
        f'{stopped_at - deleted_at_outage}, "unacknowledged": {waiting:.0f}, "completed_after_fix_s": '
        f"{completed_after:.1f}}}"
    )
    print(FIGURES[-1])
