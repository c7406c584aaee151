"""A dry run changes nothing live: its own consumer group and output topics; the live run then does it all."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from devkit.fixtures import SandboxFactory, ServiceFactory, TopicsFactory
from devkit.processes import consume_all, event, produce, wait_for
from service.settings import DRY_RUN_SUFFIX

pytestmark = pytest.mark.e2e

EVENTS = 40


def test_a_dry_run_then_live_deletes_every_event_seen_during_the_dry_run(
    kafka_bootstrap: str,
    kafka_admin: AdminClient,
    topics: TopicsFactory,
    sandbox_process: SandboxFactory,
    service_process: ServiceFactory,
) -> None:
    names = topics(partitions=2)
    dry_topics = [names.outcome + DRY_RUN_SUFFIX, names.dlq + DRY_RUN_SUFFIX]  # created by the operator, as told
    for future in kafka_admin.create_topics(
        [NewTopic(t, num_partitions=1, replication_factor=1) for t in dry_topics]
    ).values():
        future.result(30)
    try:
        sandbox = sandbox_process("--qps", "0")
        sandbox.seed({"shoes": [(f"p{n}", f"{n}.jpg") for n in range(EVENTS)]})
        produce(kafka_bootstrap, names.input, [event(f"e{n}", "shoes", f"p{n}", [f"{n}.jpg"]) for n in range(EVENTS)])
        rehearsal = service_process(names, None, DRY_RUN="true")
        dry = consume_all(kafka_bootstrap, dry_topics[0], expect=EVENTS, settle=1)
        assert len(dry) == EVENTS
        assert all(record.json()["dry_run"] for record in dry)
        wait_for(lambda: rehearsal.metric("imgsweep_offset_commits_total") > 0, 10, "the dry run never committed")
        rehearsal.stop()
        assert sandbox.stats()["calls_total"] == 0
        assert consume_all(kafka_bootstrap, names.outcome, expect=0, timeout=2) == []  # nothing on the live topic

        service_process(names, sandbox)  # dry-run off: the live group has not moved
        live = consume_all(kafka_bootstrap, names.outcome, expect=EVENTS, settle=1)
        assert sorted(record.json()["event_id"] for record in live) == sorted(f"e{n}" for n in range(EVENTS))
        assert {record.json()["status"] for record in live} == {"deleted"}
        assert not any(record.json()["dry_run"] for record in live)
        assert sandbox.admin("/admin/images?collection_name=shoes")["count"] == 0
    finally:
        for future in kafka_admin.delete_topics(dry_topics, operation_timeout=30).values():
            future.result(30)
