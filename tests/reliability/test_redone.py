"""After a SIGKILL, only what was in flight is done again: finished offsets above the watermark are remembered.

The scenario of the issue that asked for it: 3 partitions, 700 events, transient API faults so that some
batches sit in retries while others finish, one SIGKILL early in the run, then a restart that drains the rest.
Before the committed offset carried metadata, 667 of 700 events were processed and published twice.
"""

from __future__ import annotations

import time

import pytest

from devkit.fixtures import SandboxFactory, ServiceFactory, TopicsFactory
from devkit.processes import wait_for
from tests.reliability.test_reliability import (
    figures,
    outcome_ids,
    produce_tracked,
    read_to_end,
    remaining_images,
    scan_for_secret,
    seeded,
)
from tests.support.committed import finished, work_committed

pytestmark = pytest.mark.reliability

EVENTS = 700


def test_a_sigkill_redoes_only_the_events_in_flight(
    kafka_bootstrap: str, topics: TopicsFactory, sandbox_process: SandboxFactory, service_process: ServiceFactory
) -> None:
    names = topics(partitions=3)
    sandbox = sandbox_process(
        "--qps", "0", "--latency-ms", "80", "--http-503-rate", "0.05", "--item-error-rate", "0.05", "--seed", "11"
    )
    records = seeded(sandbox, EVENTS, images=3)
    produce_tracked(kafka_bootstrap, names.input, records)
    settings = {"API__QPS": "8", "API__WORKERS": "3", "BATCH__MAX_ITEMS": "40", "BATCH__LINGER_SECONDS": "0.3"}
    first = service_process(names, sandbox, **settings)
    wait_for(lambda: first.metric("imgsweep_outcomes_total") >= EVENTS // 4, 120, "no outcomes")
    before = first.metric("imgsweep_outcomes_total")
    time.sleep(1.5)  # at least one commit interval: what was acknowledged before it is in the commit
    at_kill = first.metrics()
    first.kill()
    outcomes_at_kill = sum(v for k, v in at_kill.items() if k.startswith("imgsweep_outcomes_total{"))
    in_flight = at_kill["imgsweep_pending_events"] + (outcomes_at_kill - before)
    after_kill = work_committed(kafka_bootstrap, names)

    second = service_process(names, sandbox, **{**settings, "API__QPS": "50"})
    wait_for(lambda: finished(kafka_bootstrap, names, EVENTS), 180, "the rest never finished", interval=1)
    skipped = second.metric("imgsweep_events_skipped_total", 'reason="already_done"')
    outcomes = outcome_ids(read_to_end(kafka_bootstrap, names.outcome))
    assert set(outcomes) == {f"e{n}" for n in range(EVENTS)}
    assert remaining_images(sandbox) == 0
    redone = sum(n - 1 for n in outcomes.values())
    # What the killed instance had consumed and not finished, plus what it finished after its last commit
    # (at most one commit interval, 1 s, within the 1.5 s measured): nothing else is done twice.
    assert redone <= in_flight, (redone, in_flight)
    figures(
        "sigkill_redone",
        events=EVENTS,
        outcomes_before_kill=int(outcomes_at_kill),
        in_flight_at_kill=int(in_flight),
        committed_at_kill=len(after_kill),
        skipped_as_already_done=int(skipped),
        events_redone=redone,
        redone_ratio=round(redone / EVENTS, 4),
        api_calls=sandbox.stats()["calls_total"],
        images_answered_absent=sandbox.stats()["items_absent"],
    )
    scan_for_secret(kafka_bootstrap, names, [first, second])
