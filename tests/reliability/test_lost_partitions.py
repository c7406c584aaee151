"""A Kafka outage past the session timeout: the partitions are lost and come back, and only calls in flight are
redone (issue 21, point 5; docs/decisions/0024-answers-kept-through-a-lost-partition.md).

The only broker is down longer than the service's session timeout (shortened to the broker's minimum, 6 s, so a
12 s outage is enough): librdkafka declares the partitions lost, the open transaction is aborted, and when the
broker is back the same process gets the same partitions. Before the answers in hand were kept, every image the
aborted transaction carried was called again (5,280 and 5,400 images in the issue's trial; see
docs/reliability.md for this test's figures before and after).
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from devkit.fixtures import SandboxFactory, ServiceFactory
from devkit.processes import ServiceProcess, Topics, wait_for
from tests.reliability.test_reliability import (
    figures,
    outcome_ids,
    produce_tracked,
    read_to_end,
    remaining_images,
    scan_for_secret,
    seeded,
)
from tests.support.committed import finished

pytestmark = pytest.mark.reliability

EVENTS = 2_000
IMAGES = 2
COLLECTIONS = 3
WORKERS = 2
MAX_ITEMS = 60
SESSION_TIMEOUT_MS = 6_000
"""The broker's group.min.session.timeout.ms, its default: the shortest session a consumer may ask for."""
DOWN_SECONDS = 12.0
"""Well past the session timeout (librdkafka counts it from the last heartbeat answered, at most 3 s before)."""


def test_a_kafka_outage_past_the_session_timeout_redoes_only_the_calls_in_flight(
    own_broker: Any, sandbox_process: SandboxFactory, service_process: ServiceFactory
) -> None:
    bootstrap: str = own_broker.bootstrap_servers
    names = Topics.create(AdminClient({"bootstrap.servers": bootstrap}), f"t-{uuid.uuid4().hex[:8]}", partitions=3)
    sandbox = sandbox_process("--qps", "0", "--latency-ms", "30")
    records = seeded(sandbox, EVENTS, images=IMAGES, collections=COLLECTIONS)
    produce_tracked(bootstrap, names.input, records)
    service: ServiceProcess = service_process(
        names,
        sandbox,
        KAFKA__BOOTSTRAP_SERVERS=bootstrap,
        KAFKA__SESSION_TIMEOUT_MS=str(SESSION_TIMEOUT_MS),
        KAFKA__GROUP_INSTANCE_ID="imgsweep-0",
        API__QPS="5",
        API__WORKERS=str(WORKERS),
        BATCH__MAX_ITEMS=str(MAX_ITEMS),
    )
    wait_for(lambda: service.metric("imgsweep_outcomes_total") >= 300, 90, "no progress before the outage")
    before = service.metric("imgsweep_outcomes_total")
    restart_seconds = own_broker.restart(down_seconds=DOWN_SECONDS)
    assert service.process.poll() is None, "the service died with the broker"
    wait_for(lambda: remaining_images(sandbox, COLLECTIONS) == 0, 120, "images left after the outage")
    wait_for(lambda: finished(bootstrap, names, EVENTS), 120, "offsets never caught up after the outage")
    assert service.process.poll() is None, "the service did not stay up"
    logs = service.logs()
    assert "partitions lost" in logs, "the outage never outlasted the session: the test proves nothing"
    outcomes = outcome_ids(read_to_end(bootstrap, names.outcome))
    assert outcomes == Counter({f"e{n}": 1 for n in range(EVENTS)}), "every event has exactly one outcome"
    stats = sandbox.stats()
    # Every seeded image exists once: an image called again is answered absent.
    redone = stats["items_absent"]
    # What may be redone: the images in calls at the loss (a worker's batch each), and per collection the one
    # event whose images straddle the last batch called and the next (its answered images are not an outcome yet).
    in_flight = WORKERS * MAX_ITEMS + COLLECTIONS * (IMAGES - 1)
    assert redone <= in_flight, (redone, in_flight)
    figures(
        "lost_partitions",
        events=EVENTS,
        images=EVENTS * IMAGES,
        outcomes_before_outage=int(before),
        broker_down_seconds=DOWN_SECONDS,
        broker_restart_seconds=round(restart_seconds, 1),
        session_timeout_ms=SESSION_TIMEOUT_MS,
        images_redone=redone,
        in_flight_bound=in_flight,
        answers_recalled="used again, without calls" in logs,
        api_calls=stats["calls_total"],
        duplicate_outcomes=sum(n - 1 for n in outcomes.values()),
        service_stayed_up=service.process.poll() is None,
    )
    scan_for_secret(bootstrap, names, [service])
