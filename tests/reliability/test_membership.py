"""How long partitions stand still after a crash and during a rolling update, by group membership and protocol.

A steady stream of events (every partition, all the time) flows through the real service processes; a reader
notes when each outcome arrives, per input partition. "Consuming again" is read from the restarted process
itself (all partitions assigned and records consumed, from /readyz and /metrics); a stall is the longest gap
between two outcomes of one partition. docs/decisions/0005-group-membership.md chose the defaults from these
figures; docs/reliability.md keeps them.

The scenarios that wait out the broker's 45 s session timeout run side by side, each on its own topics and
group, while the short ones run one after the other; the whole file takes about a minute and a half.
"""

from __future__ import annotations

import functools
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from devkit.fixtures import FIGURES, TEST_SETTINGS, SandboxFactory, TopicsFactory
from devkit.processes import REPO, SandboxProcess, ServiceProcess, Topics, event, wait_for
from devkit.spread import one_collection_per_partition

pytestmark = pytest.mark.reliability

PARTITIONS = 3
EVENTS_PER_SECOND = 10
"""Per partition: a gap in outcomes longer than about a second means the partition stood still."""
FLOW_TIMEOUT = 120.0
"""Long enough for the broker's 45 s session timeout (the KIP-848 minimum) with room for a slow machine."""
COLLECTIONS = one_collection_per_partition(PARTITIONS)
"""Input partition n's events are of collection n, on partition n of the collections topic behind the router (the
default): a stall of one shows as a stall of the other, and every replica has work."""
SERVICE = {
    "API__QPS": "50",
    "API__WORKERS": "2",
    "BATCH__LINGER_SECONDS": "0.2",
    "SHUTDOWN_GRACE_SECONDS": "10",
}


def figures(name: str, **values: object) -> None:
    line = json.dumps({"test": name, **values})
    print(f"FIGURES {line}")
    FIGURES.append(line)


class Feed:
    """Produces EVENTS_PER_SECOND events to every partition of the input topic until stopped."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._bootstrap, self._topic = bootstrap, topic
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feed", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        producer = Producer({"bootstrap.servers": self._bootstrap, "linger.ms": 5})
        sequence = 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            for partition in range(PARTITIONS):
                collection = COLLECTIONS[partition]  # behind the router, on the same partition of the collections topic
                key, value, _ = event(
                    f"m{partition}-{sequence}", collection, f"p{partition}-{sequence}", [f"{sequence}.jpg"]
                )
                producer.produce(self._topic, key=key, value=value, partition=partition)
            producer.poll(0)
            sequence += 1
            next_at += 1 / EVENTS_PER_SECOND
            self._stop.wait(max(0.0, next_at - time.monotonic()))
        producer.flush(10)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


class Watch:
    """Reads the outcome topic as it is written: the arrival time of every outcome, by input partition."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.arrivals: dict[int, list[float]] = {partition: [] for partition in range(PARTITIONS)}
        self._bootstrap, self._topic = bootstrap, topic
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": self._bootstrap,
                "group.id": f"watch-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 20,
            }
        )
        consumer.assign([TopicPartition(self._topic, 0, OFFSET_BEGINNING)])
        try:
            while not self._stop.is_set():
                for message in consumer.consume(500, timeout=0.05):
                    if message.error() is not None or message.value() is None:
                        continue
                    arrived = time.monotonic()
                    event_id: str = json.loads(message.value() or b"{}")["event_id"]
                    self.arrivals[int(event_id[1:].partition("-")[0])].append(arrived)
        finally:
            consumer.close()

    def flowing_since(self, moment: float) -> bool:
        """Every partition has had an outcome after ``moment``."""
        return all(times and times[-1] > moment for times in self.arrivals.values())

    def longest_gap(self, start: float, end: float) -> float:
        """The longest time, over all partitions, without an outcome between ``start`` and ``end``."""
        longest = 0.0
        for times in self.arrivals.values():
            inside = [start, *(t for t in list(times) if start < t < end), end]
            longest = max(longest, *(b - a for a, b in itertools.pairwise(inside)))
        return longest

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


@dataclass
class Run:
    """One scenario's topics, stream and reader, and the replicas it started (each with a membership)."""

    name: str
    protocol: str
    topics: Topics
    feed: Feed
    watch: Watch
    launch: Callable[[Topics, str, dict[str, str], bool], ServiceProcess]
    replicas: list[ServiceProcess] = field(default_factory=list)

    def start_replica(self, instance_id: str | None, *, wait: bool = True) -> ServiceProcess:
        """Starts ``imgsweep run`` and, with ``wait``, returns once /readyz answers 200 (subscribed; not yet
        assigned)."""
        membership = {"KAFKA__GROUP_PROTOCOL": self.protocol}
        if instance_id is not None:
            membership["KAFKA__GROUP_INSTANCE_ID"] = instance_id
        replica = self.launch(self.topics, f"{self.name}-{len(self.replicas)}", membership, wait)
        self.replicas.append(replica)
        return replica

    def settle(self) -> None:
        """Waits until outcomes flow on every partition, then one more second of steady state."""
        started = time.monotonic()
        wait_for(lambda: self.watch.flowing_since(started), FLOW_TIMEOUT, f"{self.name}: outcomes never flowed")
        time.sleep(1.0)

    def until_flowing_again(self, moment: float) -> None:
        wait_for(lambda: self.watch.flowing_since(moment), FLOW_TIMEOUT, f"{self.name}: a partition never flowed again")

    def stop(self) -> None:
        """Stops the replicas, the stream and the reader (again: a no-op)."""
        for replica in self.replicas:
            replica.stop()
        self.replicas.clear()
        self.feed.stop()
        self.watch.stop()


Scenario = Callable[[str, str], Run]


@pytest.fixture
def scenario(
    kafka_bootstrap: str, topics: TopicsFactory, sandbox_process: SandboxFactory, tmp_path: Path
) -> Iterator[Scenario]:
    """``scenario(name, protocol)``: fresh topics and group with the stream flowing; replicas started on demand
    (from any thread: each has its own log, ``tmp_path/<name>-<n>.log``), all stopped at the end."""
    runs: list[Run] = []
    sandboxes: list[SandboxProcess] = []
    secrets_dir = tmp_path / "no-secrets"
    secrets_dir.mkdir()

    def launch(names: Topics, log_name: str, membership: dict[str, str], wait: bool) -> ServiceProcess:
        return ServiceProcess.start(
            bootstrap=kafka_bootstrap,
            topics=names,
            endpoint=sandboxes[0].endpoint,
            log_path=tmp_path / f"{log_name}.log",
            secrets_dir=secrets_dir,
            settings={**TEST_SETTINGS, **SERVICE, **membership},
            wait=wait,
        )

    def start(name: str, protocol: str) -> Run:
        if not sandboxes:
            sandboxes.append(sandbox_process("--qps", "0", "--latency-ms", "20"))
        names = topics(partitions=PARTITIONS)
        run = Run(
            name, protocol, names, Feed(kafka_bootstrap, names.input), Watch(kafka_bootstrap, names.outcome), launch
        )
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.stop()


def consuming_everything(service: ServiceProcess) -> bool:
    """The process holds every partition and has consumed records."""
    try:
        assigned = len(service.get("/readyz").json()["assigned_partitions"])
        return assigned == PARTITIONS and service.metric("imgsweep_events_consumed_total") > 0
    except (httpx.HTTPError, ValueError, KeyError):
        return False


def sharing_all_partitions(*replicas: ServiceProcess) -> bool:
    """Every replica holds partitions, and together, without overlap, all of them (a stable group)."""
    try:
        held = [set(replica.get("/readyz").json()["assigned_partitions"]) for replica in replicas]
    except (httpx.HTTPError, ValueError, KeyError):
        return False
    return all(held) and sum(map(len, held)) == len(set().union(*held)) == PARTITIONS


FENCED = "The instance ID is still used by another member"
"""librdkafka's words when the broker refuses a static member whose instance id the dead one still holds."""


def restart_after_sigkill(
    run: Run, instance_id: str | None, disrupted: Callable[[], None] = lambda: None
) -> dict[str, object]:
    """SIGKILL the only replica and start it again at once with the same instance id, as the kubelet restarts
    a crashed container in the same pod (same pod name)."""
    old = run.start_replica(instance_id)
    run.settle()
    old.kill()
    killed = time.monotonic()
    new = run.start_replica(instance_id, wait=False)
    # KIP-848 may refuse it (fatal) before /readyz was ever seen 200: fenced is an answer, not a timeout.
    new.wait_ready(cancelled=lambda: FENCED in new.logs())
    ready = time.monotonic()
    disrupted()
    deadline = ready + FLOW_TIMEOUT
    while not consuming_everything(new) and time.monotonic() < deadline:
        if FENCED in new.logs():
            return {"ready_s": round(ready - killed, 1), "restart_to_consuming_s": None, "fenced": True}
        time.sleep(0.1)
    assert consuming_everything(new), f"{run.name}: the restarted replica never consumed everything"
    consuming = time.monotonic()
    run.until_flowing_again(ready)  # outcomes after ready are the new process's
    return {
        "ready_s": round(ready - killed, 1),
        "restart_to_consuming_s": round(consuming - killed, 1),
        "longest_stall_s": round(run.watch.longest_gap(killed, time.monotonic()), 1),
    }


def rolling_update(
    run: Run, static: bool, workload: str, disrupted: Callable[[], None] = lambda: None
) -> dict[str, object]:
    """Two replicas; one is replaced as Kubernetes replaces its pod. A Deployment (maxSurge 1, maxUnavailable 0,
    the chart's strategy) starts the new pod, under a new name, and terminates the old one once the new one is
    ready; a StatefulSet terminates the old pod first and starts its successor under the same name."""
    old_id, other_id, new_id = ("imgsweep-0", "imgsweep-1", "imgsweep-2") if static else (None, None, None)
    old = run.start_replica(old_id)
    other = run.start_replica(other_id)
    # In a cluster the pods have run for a while: the rebalance that admitted the second one is long over.
    wait_for(lambda: sharing_all_partitions(old, other), FLOW_TIMEOUT, f"{run.name}: the group never settled")
    run.settle()
    steady = run.watch.longest_gap(time.monotonic() - 1.0, time.monotonic())
    begin = time.monotonic()
    if workload == "StatefulSet":
        assert old.terminate() == 0
        run.start_replica(old_id)
    else:
        run.start_replica(new_id)
        assert old.terminate() == 0
    replaced = time.monotonic()
    disrupted()
    run.until_flowing_again(replaced)
    return {
        "steady_gap_s": round(steady, 2),
        "replace_s": round(replaced - begin, 1),
        "longest_stall_s": round(run.watch.longest_gap(begin, time.monotonic()), 1),
    }


def chart_static_membership() -> bool:
    values = yaml.safe_load((REPO / "helm" / "imgsweep" / "values.yaml").read_text(encoding="utf-8"))
    return bool(values["kafka"]["staticMembership"])


def test_a_crashed_replica_restarted_with_its_instance_id_consumes_again_within_5_s(scenario: Scenario) -> None:
    """Issue 11's target: within 5 s (dynamic membership waits out the 45 s session timeout, measured below)."""
    measured = restart_after_sigkill(scenario("sigkill-static-classic", "classic"), "imgsweep-0")
    figures("restart_after_sigkill", protocol="classic", static=True, **measured)
    assert seconds(measured, "restart_to_consuming_s") <= 5.0, measured


Labels = dict[str, object]
Measured = dict[str, object]


def long_scenarios(scenario: Scenario) -> list[tuple[Labels, Callable[[Callable[[], None]], Measured]]]:
    """The four that wait out a 45 s session timeout: started at once, side by side."""
    runs: list[tuple[Labels, Callable[[Callable[[], None]], Measured]]] = []
    for protocol in ("classic", "consumer"):
        run = scenario(f"sigkill-dynamic-{protocol}", protocol)
        labels: Labels = {"test": "restart_after_sigkill", "protocol": protocol, "static": False}
        runs.append((labels, functools.partial(restart_after_sigkill, run, None)))
        run = scenario(f"rolling-static-Deployment-{protocol}", protocol)
        labels = {"test": "rolling_update", "protocol": protocol, "static": True, "workload": "Deployment"}
        runs.append((labels, functools.partial(rolling_update, run, True, "Deployment")))
    return runs


def short_scenarios() -> list[tuple[Labels, Callable[[Run], Measured]]]:
    """The others, one after the other, each on a run started only when its turn comes."""
    runs: list[tuple[Labels, Callable[[Run], Measured]]] = [
        (
            {"test": "restart_after_sigkill", "protocol": "consumer", "static": True},
            functools.partial(restart_after_sigkill, instance_id="imgsweep-0"),
        )
    ]
    for workload in ("Deployment", "StatefulSet"):
        for protocol in ("classic", "consumer"):
            for static in (False, True):
                if not (static and workload == "Deployment"):  # that one waits out a session: a long one
                    labels: Labels = {"test": "rolling_update", "protocol": protocol, "static": static}
                    labels["workload"] = workload
                    runs.append((labels, functools.partial(rolling_update, static=static, workload=workload)))
    return runs


def seconds(measured: Measured, name: str) -> float:
    value = measured[name]
    assert isinstance(value, int | float), measured
    return float(value)


def test_membership_and_protocol_matrix(scenario: Scenario) -> None:
    """Every other combination, for docs/decisions/0005: the long ones in the background, the short ones one
    after the other meanwhile (once the long ones have started their replicas, so that process starts do not
    overlap the short measurements)."""
    long_runs = long_scenarios(scenario)
    results: list[Measured] = []
    with ThreadPoolExecutor(max_workers=len(long_runs), thread_name_prefix="long") as pool:
        started = [threading.Event() for _ in long_runs]
        futures: list[Future[Measured]] = [
            pool.submit(measure, event.set) for (_, measure), event in zip(long_runs, started, strict=True)
        ]
        for event, future in zip(started, futures, strict=True):
            while not event.wait(0.2):
                if future.done():
                    future.result()  # raises what went wrong
        for labels, measure_short in short_scenarios():
            run = scenario("-".join(str(value) for value in labels.values()), str(labels["protocol"]))
            try:
                results.append({**labels, **measure_short(run)})
            finally:
                run.stop()  # no load left behind for the next measurement
        for (labels, _), future in zip(long_runs, futures, strict=True):
            results.append({**labels, **future.result()})
    for result in results:
        values = dict(result)
        figures(str(values.pop("test")), **values)

    def find(**labels: object) -> Measured:
        (found,) = [r for r in results if all(r[k] == v for k, v in labels.items())]
        return found

    # Without static membership the dead member's partitions wait for its session to expire (45 s by default).
    for protocol in ("classic", "consumer"):
        assert (
            seconds(find(test="restart_after_sigkill", protocol=protocol, static=False), "restart_to_consuming_s") > 20
        )
    # KIP-848 fences the restarted static member while the dead one's session lasts (a fatal error for librdkafka).
    assert find(test="restart_after_sigkill", protocol="consumer", static=True).get("fenced") is True
    # The chart's default membership must not make a rolling update stall longer than dynamic membership does.
    rolling = {"test": "rolling_update", "protocol": "classic", "workload": "Deployment"}
    chart_default = find(**rolling, static=chart_static_membership())
    today = find(**rolling, static=False)
    limit = max(5.0, 2 * seconds(today, "longest_stall_s"))
    assert seconds(chart_default, "longest_stall_s") <= limit, (chart_default, today)
