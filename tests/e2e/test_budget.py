"""The call budget end to end (issue 13, points 2-3): light load stays within its budget; the reserve is never spent.

The service runs as its own process against the real broker and the sandbox, whose ``--quota`` is the
account's daily calls. The light-load test sets the service's daily reset 12 hours ahead, so its budget day is
the same whatever the time of day. Calls are counted by the sandbox (answers 10000), what is left by its
``remainTimes``.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta

import pytest

from devkit.fixtures import SandboxFactory, ServiceFactory, TopicsFactory
from devkit.processes import ServiceProcess, event, produce, wait_for

pytestmark = pytest.mark.e2e

COLLECTIONS = ("shoes", "bags", "hats", "coats")


def _calls(stats: dict[str, object]) -> int:
    by_code = stats["calls_by_code"]
    assert isinstance(by_code, dict)
    return int(by_code.get("10000", 0))


def _seconds_until_reset(quota: dict[str, object]) -> float:
    return datetime.fromisoformat(str(quota["resets_at"])).timestamp() - time.time()


def _reset_hours_away(sandbox_quota: dict[str, object], hours: float = 12.0) -> dict[str, str]:
    """The service's daily reset ``hours`` from now (in UTC), whatever the time of day, so the budget's day is the
    same on every run; and, if the sandbox's own reset (midnight China Standard Time) is within two minutes, it
    is waited out first, so that the account's calls left do not jump back up during the test."""
    sandbox_reset = _seconds_until_reset(sandbox_quota)
    if sandbox_reset < 120:
        time.sleep(max(0.0, sandbox_reset) + 2)
    reset_at = datetime.now(UTC) + timedelta(hours=hours)
    return {"API__QUOTA_RESET_ZONE": "+00:00", "API__QUOTA_RESET_TIME": reset_at.strftime("%H:%M:%S")}


def test_light_load_stays_within_its_budget(
    sandbox_process: SandboxFactory, service_process: ServiceFactory, topics: TopicsFactory, kafka_bootstrap: str
) -> None:
    """1 event/s of 5 images over 4 collections for 60 s, on a 100-call day with the default 10 % reserve.

    At that pace the day's images need far more full calls than the 90 spendable, so the budget keeps every
    call for full batches (20 items here): the calls made are at most the full batches the arrivals fill, plus
    the spare calls the day's pace could give 60 s (none, with needed above spendable), plus one; each
    collection's last 15 images wait. Linger only (0.3 s here, less than the 1 s between events) would send each
    event's images in a call of their own: 60.
    """
    daily_calls, max_items, seconds, images = 100, 20, 60, 5
    sandbox = sandbox_process("--quota", str(daily_calls))
    names = topics(partitions=4)
    reset = _reset_hours_away(sandbox.admin("/admin/quota"))  # the last minutes before a reset spend every call
    service = service_process(
        names, sandbox, API__DAILY_CALLS=str(daily_calls), BATCH__MAX_ITEMS=str(max_items), **reset
    )
    service.wait_assigned(4)
    wait_for(lambda: service.metric("imgsweep_quota_reset_seconds") > 11 * 3600, 5, "the reset is not 12 h away")
    until_reset = service.metric("imgsweep_quota_reset_seconds")
    records = [
        event(f"e{n}", COLLECTIONS[n % len(COLLECTIONS)], f"p{n}", [f"p{n}-{i}.jpg" for i in range(images)])
        for n in range(seconds)
    ]
    produce(kafka_bootstrap, names.input, records, rate=1.0)
    time.sleep(2)  # the last events' turn: a full batch goes at once

    calls = _calls(sandbox.stats())
    images_per_collection = len(records) // len(COLLECTIONS) * images
    full_batches = len(COLLECTIONS) * (images_per_collection // max_items)
    expected = daily_calls - calls - math.ceil(0.1 * daily_calls)  # the default reserve: 10 % of the day
    wait_for(
        lambda: service.metric("imgsweep_budget_spendable_calls") == expected,
        5,
        f"the budget never counted {expected} spendable calls",
    )  # the gauges follow the budget's decisions, the turn after the last call
    spendable = service.metric("imgsweep_budget_spendable_calls")
    needed = service.metric("imgsweep_budget_needed_calls")
    assert needed > spendable  # the day does not fit: ImgsweepBudgetWillNotFit's condition
    spare_pace = max(0.0, spendable - needed) * seconds / until_reset
    assert calls <= full_batches + math.ceil(spare_pace) + 1
    assert calls <= len(records) // 4, "far fewer calls than one per event"
    assert calls == service.metric("imgsweep_budget_decisions_total", 'why="full"')
    assert service.metric("imgsweep_batch_items_sum") == calls * max_items, "only full batches went"
    assert calls >= full_batches - len(COLLECTIONS), "the full batches went as they filled"


def test_the_reserve_is_never_spent(
    sandbox_process: SandboxFactory, service_process: ServiceFactory, topics: TopicsFactory, kafka_bootstrap: str
) -> None:
    """A 30-call day with 10 kept in reserve, and a backlog that would take 60 full calls.

    imgsweep spends the 20 others as the QPS allows, then waits for the reset as if the quota were spent
    (``imgsweep_budget_waiting_for_reset{why="reserve_only"}`` is 1; the API never said the quota was spent, so
    ``imgsweep_quota_exhausted`` stays 0), and the sandbox's calls left never drop below the reserve.
    """
    daily_calls, reserve = 30, 10
    sandbox = sandbox_process("--quota", str(daily_calls))
    names = topics(partitions=1)
    service = service_process(
        names,
        sandbox,
        API__DAILY_CALLS=str(daily_calls),
        API__RESERVE_CALLS=str(reserve),
        BATCH__MAX_ITEMS="5",
    )
    records = [event(f"e{n}", "shoes", f"p{n}", [f"p{n}-{i}.jpg" for i in range(5)]) for n in range(60)]
    produce(kafka_bootstrap, names.input, records)

    lowest = daily_calls

    def held_for_the_reset(service: ServiceProcess = service) -> bool:
        nonlocal lowest
        lowest = min(lowest, int(sandbox.stats()["quota_remaining"]))
        return service.metric("imgsweep_budget_waiting_for_reset", 'why="reserve_only"') == 1

    wait_for(held_for_the_reset, 60, "imgsweep never said it waits for the reset with only the reserve left")
    time.sleep(3)  # nothing more goes
    stats = sandbox.stats()
    lowest = min(lowest, int(stats["quota_remaining"]))
    assert lowest >= reserve, f"the reserve was spent: {lowest} calls left"
    assert _calls(stats) == daily_calls - reserve, "every call above the reserve was spent"
    assert "10040" not in stats["calls_by_code"]
    assert service.metric("imgsweep_budget_spendable_calls") == 0
    assert service.metric("imgsweep_budget_calls_left") == reserve
    assert service.metric("imgsweep_quota_exhausted") == 0
