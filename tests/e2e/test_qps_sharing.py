"""Replicas share the account's QPS by what each has to send (issue 13, point 4; docs/decisions/0009).

Real broker, the sandbox at 2 QPS (it counts calls per sliding second and answers 10043 beyond), imgsweep
replicas as processes in one group with one demand topic. QPS use is the sandbox's successful calls over a
window that starts and ends on a call, divided by its 2 QPS; the figures are reported with the session's.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import pytest

from devkit.fixtures import FIGURES, SandboxFactory, ServiceFactory, TopicsFactory
from devkit.processes import SandboxProcess, ServiceProcess, Topics, produce_spread, wait_for
from devkit.spread import one_collection_per_partition

pytestmark = pytest.mark.e2e

QPS = 2
WINDOW_SECONDS = 15.0
SETTINGS = {"API__QPS": str(QPS), "BATCH__MAX_ITEMS": "10", "KAFKA__MAX_PENDING_EVENTS": "2000"}
"""Small calls, so a backlog that outlasts the window is quick to produce; every image is absent (a call
answered 10000 all the same)."""
COLLECTIONS = one_collection_per_partition(4)
"""A collection on each partition of the collections topic (4, as the input): behind the router (the default) the
collection, not the input partition, says which replica does the work."""


@dataclass(frozen=True)
class Use:
    calls_ok: int
    calls_10043: int
    seconds: float

    @property
    def qps_use(self) -> float:
        return self.calls_ok / self.seconds / QPS

    @property
    def rejected(self) -> float:
        return self.calls_10043 / max(1, self.calls_ok + self.calls_10043)


def _ok(stats: dict[str, Any]) -> int:
    return int(stats["calls_by_code"].get("10000", 0))


def _rejected(stats: dict[str, Any]) -> int:
    return int(stats["calls_by_code"].get("10043", 0))


def _next_call(sandbox: SandboxProcess, after: int, timeout: float = 30) -> tuple[float, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = sandbox.stats()
        if _ok(stats) > after:
            return time.monotonic(), stats
        time.sleep(0.01)
    raise AssertionError(f"no successful call after the {after}th within {timeout:.0f} s")


def measure(sandbox: SandboxProcess, seconds: float) -> Use:
    """From one successful call to the first one after ``seconds``: the calls and 10043s in between."""
    started, first = _next_call(sandbox, _ok(sandbox.stats()))
    time.sleep(seconds)
    ended, last = _next_call(sandbox, _ok(sandbox.stats()))
    return Use(_ok(last) - _ok(first), _rejected(last) - _rejected(first), ended - started)


def assigned(replica: ServiceProcess) -> list[int]:
    partitions: list[int] = replica.get("/readyz").json()["assigned_partitions"]
    return partitions


def start_replicas(
    service_process: ServiceFactory, names: Topics, sandbox: SandboxProcess, count: int, **settings: str
) -> list[ServiceProcess]:
    replicas = [service_process(names, sandbox, **{**SETTINGS, **settings}) for _ in range(count)]
    wait_for(
        lambda: (
            sorted(p for replica in replicas for p in assigned(replica)) == [0, 1, 2, 3]
            and all(assigned(replica) for replica in replicas)
        ),
        60,
        "the 4 partitions were never spread over every replica",
    )
    return replicas


def sharing_by_demand(replicas: list[ServiceProcess]) -> None:
    wait_for(
        lambda: all(r.metric("imgsweep_qps_share_members") == len(replicas) for r in replicas),
        30,
        "the replicas never saw each other on the demand topic",
        interval=0.25,
    )


def report(name: str, use: Use) -> None:
    FIGURES.append(
        json.dumps(
            {
                "figure": f"QPS sharing, {name}",
                "qps_use": round(use.qps_use, 3),
                "calls": use.calls_ok,
                "calls_10043": use.calls_10043,
                "seconds": round(use.seconds, 1),
            }
        )
    )


def test_two_replicas_with_the_whole_backlog_on_one_use_the_account_qps(
    kafka_bootstrap: str, topics: TopicsFactory, sandbox_process: SandboxFactory, service_process: ServiceFactory
) -> None:
    names = topics(partitions=4)
    sandbox = sandbox_process("--qps", str(QPS), "--log-level", "WARNING")
    busy, idle = start_replicas(service_process, names, sandbox, 2)
    sharing_by_demand([busy, idle])
    held = assigned(busy)  # partitions of the collections topic: the backlog's collections are on them
    on_busy = [COLLECTIONS[p] for p in held]
    produce_spread(kafka_bootstrap, names.input, [0, 1, 2, 3], 1500, timeout=30, collections=on_busy)
    wait_for(lambda: busy.metric("imgsweep_qps_share") > 1.9, 30, "the busy replica never took the idle one's share")
    use = measure(sandbox, WINDOW_SECONDS)
    report("2 replicas, backlog on one", use)
    assert idle.metric("imgsweep_outcomes_total") == 0, "the backlog was not on the busy replica's partitions"
    assert use.rejected <= 0.01, use
    assert use.qps_use >= 0.9, use  # the target is 0.95: docs/performance.md measures it


@pytest.mark.parametrize("count", [1, 2, 4])
def test_replicas_on_an_even_backlog_use_the_account_qps(
    count: int,
    kafka_bootstrap: str,
    topics: TopicsFactory,
    sandbox_process: SandboxFactory,
    service_process: ServiceFactory,
) -> None:
    names = topics(partitions=4)
    sandbox = sandbox_process("--qps", str(QPS), "--log-level", "WARNING")
    replicas = start_replicas(service_process, names, sandbox, count)
    sharing_by_demand(replicas)
    produce_spread(kafka_bootstrap, names.input, [0, 1, 2, 3], 1500, timeout=30, collections=COLLECTIONS)
    wait_for(lambda: _ok(sandbox.stats()) >= 4, 30, "no calls")
    use = measure(sandbox, WINDOW_SECONDS)
    report(f"{count} replica(s), even backlog", use)
    assert use.rejected <= 0.01, use
    # At 2 QPS a 15 s window holds 30 calls: one call is 3.3 % of QPS use. Four replicas hand the two whole calls a
    # second between them, and a handover costs a call now and then (27 of 30 seen in a fresh-clone run on a busy
    # machine): 0.85 for them, still far above the partition share's 0.51. The bench measures the 0.95 target.
    assert use.qps_use >= (0.85 if count == 4 else 0.9), use
