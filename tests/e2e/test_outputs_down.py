"""Outcomes that cannot be delivered stop the calls at a bound, and everything resumes by itself (issue 21, point 5).

The outcome topic is deleted mid-run (the broker creates no topic by itself: ``auto.create.topics.enable`` is
false, as in production), for longer than a transaction may wait for its records (``STUCK_SECONDS``, 10 s).
Records pile up unacknowledged; at ``IMGSWEEP_KAFKA__MAX_UNACKNOWLEDGED`` no call starts and /readyz is 503 with
the reason. Once the topic is created again, the service (never restarted) delivers what it kept and calls on; a
``read_committed`` reader sees each event's outcome once and the sandbox saw each image in one call (no call
redone). Both deliveries: with exactly-once (the default) the rest of the events are produced only once the
deletion is complete, so that the next transaction names the deleted partition in its AddPartitionsToTxn: the
path where librdkafka's abort turns the producer fatal (decision 0020) and a new producer takes over.
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
OUTAGE_SECONDS = 15.0
"""How long the topic stays gone once calls stopped: longer than a transaction waits for its records (10 s)."""


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


def _gone(admin: AdminClient, topic: str) -> bool:
    return topic not in admin.list_topics(timeout=10).topics


@pytest.mark.parametrize("delivery", ["exactly_once", "at_least_once"])
def test_calls_stop_at_the_bound_while_the_outcome_topic_is_gone_and_all_completes_once_when_it_is_back(
    kafka_bootstrap: str,
    kafka_admin: AdminClient,
    topics: TopicsFactory,
    sandbox_process: SandboxFactory,
    service_process: ServiceFactory,
    *,
    delivery: str,
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
        KAFKA__DELIVERY=delivery,
    )
    try:
        records = [event(f"e{n}", "shoes", f"p{n}", [f"i{n}.jpg"]) for n in range(EVENTS)]
        produce(kafka_bootstrap, names.input, records[:FIRST])
        before = consume_all(kafka_bootstrap, names.outcome, expect=FIRST, timeout=60, settle=1)
        calls_before = sandbox.stats()["calls_total"]
        kafka_admin.delete_topics([names.outcome])[names.outcome].result(30)  # the outcome topic is gone
        wait_for(lambda: _gone(kafka_admin, names.outcome), 30, "the deletion complete")
        produce(kafka_bootstrap, names.input, records[FIRST:])
        deleted_at_outage = sandbox.stats()["items_deleted"]
        broken_at = time.monotonic()
        wait_for(lambda: service.get("/readyz").status_code == 503, 60, "readiness off for the outputs")
        ready = service.get("/readyz").json()
        blocked_after = time.monotonic() - broken_at
        time.sleep(1.0)  # calls under way finish
        stopped_at = sandbox.stats()["items_deleted"]
        time.sleep(OUTAGE_SECONDS)
        assert sandbox.stats()["items_deleted"] == stopped_at, "no call starts while the bound is reached"
        assert service.metric("imgsweep_outputs_blocked") == 1
        assert service.get("/readyz").status_code == 503
        assert service.get("/livez").status_code == 200, "the loop turns while it waits (the issue saw 503 after 32 s)"
        waiting = service.metric("imgsweep_unacknowledged_records")
        _recreate(kafka_admin, names.outcome)  # the topic is back
        fixed_at = time.monotonic()
        after = consume_all(kafka_bootstrap, names.outcome, expect=EVENTS - FIRST, timeout=120, settle=3)
        completed_after = time.monotonic() - fixed_at
        wait_for(lambda: service.get("/readyz").status_code == 200, 30, "ready again")
        assert service.metric("imgsweep_outputs_blocked") == 0
        assert service.process.poll() is None, "never restarted"
        renewed = service.metric("imgsweep_transaction_aborts_total", '{reason="producer_failed"}')
        aborted = service.metric("imgsweep_transaction_aborts_total")
        dead_letters = service.metric("imgsweep_dead_letters_total")
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
    assert len(outcomes) == EVENTS, "every event's outcome, each once (read_committed)"
    assert len({outcome.json()["event_id"] for outcome in outcomes}) == EVENTS
    assert {outcome.json()["status"] for outcome in outcomes} == {"deleted"}
    assert {outcome.json()["api_calls"] for outcome in outcomes} == {1}
    assert dead_letters == 0, "no outcome was dead-lettered for its missing topic"
    stats = sandbox.stats()
    assert (stats["items_deleted"], stats["items_absent"], stats["items_deleted_more_than_once"]) == (EVENTS, 0, 0), (
        "each image in one call: no call redone"
    )
    assert stats["nonces_reused"] == 0, "no call sent again"
    assert stats["calls_total"] >= EVENTS // MAX_ITEMS
    FIGURES.append(
        f'{{"test": "outputs_down", "delivery": "{delivery}", "blocked_after_s": {blocked_after:.1f}, '
        f'"deleted_after_break": {stopped_at - deleted_at_outage}, "unacknowledged": {waiting:.0f}, '
        f'"completed_after_fix_s": {completed_after:.1f}, "calls": {stats["calls_total"]}, '
        f'"calls_after_break": {stats["calls_total"] - calls_before}, "aborts": {aborted:.0f}, '
        f'"producers_renewed": {renewed:.0f}}}'
    )
    print(FIGURES[-1])
