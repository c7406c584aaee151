"""``python -m bench.run [--quick] [--out docs/performance.md]``: every figure, side by side, in one run.

One broker, one pre-loaded backlog, then one phase after another (never two at once, so they do not share the
cores): the raw consumer, imgsweep draining the backlog against an instant API, a py-spy profile, imgsweep and
the naive peer at the API's 2 QPS, imgsweep under light load, the sandbox's own capacity, and a simulated day
of the call budget (no broker: a virtual clock, ``bench/simulated_day.py``). The report and
its plot are written at the end; logs of every process stay in ``--workdir`` (a temporary directory unless
given). See ``bench/__init__.py`` for what each figure means.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any

from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from bench.figures import Results, compute_figures
from bench.gil_profile import GilProfile, record_gil_profile
from bench.machine import Machine
from bench.measure import (
    CallWindow,
    DrainRun,
    LatencyRun,
    ThroughputRun,
    call_window,
    drain,
    forward_loop,
    minimal_loop,
    outcome_latencies,
    raw_consume,
    sandbox_capacity,
)
from bench.report import write_plot, write_report
from bench.service_defaults import ServiceDefaults
from bench.simulated_day import simulate as simulate_days
from bench.workload import Backlog, LiveStream, create_topics, preload_backlog, produce_live
from devkit.processes import (
    ACCESS_KEY,
    SECRET_KEY,
    SandboxProcess,
    ServiceProcess,
    Topics,
    clean_env,
    load_kafka_local,
)

__all__ = ["FULL", "QUICK", "Plan", "main"]


@dataclass(frozen=True)
class Plan:
    """Sizes of one run. The full plan takes 10 to 15 minutes on 2 cores; the quick one under 2."""

    backlog_events: int
    head_events: int
    """Events whose images the 2-QPS sandboxes hold: more than imgsweep and the peer reach in their windows."""
    qps_seconds: float
    peer_seconds: float
    light_seconds: float
    light_rate: float
    light_latency_ms: float
    capacity_seconds: float
    profile_seconds: int
    sample_interval: float
    memory_events: int
    """Events the second, smaller-memory drain waits for (its RSS levels off within the first seconds)."""
    raw_passes: int
    memory_pending: int | None
    """IMGSWEEP_KAFKA__MAX_PENDING_EVENTS of that drain (None: half the service's default, which the first
    drain keeps)."""
    partitions: int = 4


FULL = Plan(
    backlog_events=1_000_000,
    head_events=40_000,
    qps_seconds=60,
    peer_seconds=60,
    light_seconds=60,
    light_rate=10,
    light_latency_ms=100,
    capacity_seconds=5,
    profile_seconds=15,
    sample_interval=0.5,
    memory_events=60_000,
    raw_passes=3,
    memory_pending=None,
)
QUICK = Plan(
    backlog_events=3_000,
    head_events=3_000,
    qps_seconds=4,
    peer_seconds=4,
    light_seconds=4,
    light_rate=10,
    light_latency_ms=100,
    capacity_seconds=1,
    profile_seconds=2,
    sample_interval=0.1,
    memory_events=3_000,
    raw_passes=3,
    memory_pending=1_000,
)
INSTANT_QPS = "1000"
"""IMGSWEEP_API__QPS for the drain: the setting's maximum, far above what the drain reaches."""


def _say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Bench:
    plan: Plan
    bootstrap: str
    workdir: Path
    stack: ExitStack
    tag: str
    seed: int

    def topic(self, name: str) -> str:
        return f"bench.{self.tag}.{name}"

    @property
    def secrets_dir(self) -> Path:
        """An empty secrets directory: the work directory fills with logs, and settings refuse one over 16 MB."""
        path = self.workdir / "no-secrets"
        path.mkdir(exist_ok=True)
        return path

    def sandbox(self, name: str, *flags: str, cpu: int | None = None) -> SandboxProcess:
        log_level = ("--log-level", "WARNING")  # the sandbox's request log would cost the bench's CPU
        sandbox = SandboxProcess.start(self.workdir / f"sandbox-{name}.log", [*log_level, *flags], cpu=cpu)
        self.stack.callback(sandbox.stop)
        return sandbox

    @contextmanager
    def imgsweep(
        self,
        name: str,
        sandbox: SandboxProcess,
        *,
        input_topic: str,
        outcome_topic: str,
        dlq_topic: str,
        **settings: str,
    ) -> Iterator[ServiceProcess]:
        service = ServiceProcess.start(
            bootstrap=self.bootstrap,
            topics=Topics(input_topic, outcome_topic, dlq_topic, group=self.topic(f"group-{name}")),
            endpoint=sandbox.endpoint,
            log_path=self.workdir / f"imgsweep-{name}.log",
            secrets_dir=self.secrets_dir,
            # No relist grace: the figures measure the pipeline, and a grace only adds its own length to every
            # image's wait (the light-load latency with it is the figure plus the grace).
            # No brake either: a backlog's collections lose far more than an hour's limit at full QPS, by design.
            settings={
                "BATCH__RELIST_GRACE_SECONDS": "0",
                "API__DAILY_CALLS": "-1",
                "BRAKE__MAX_IMAGES_PER_HOUR": "0",
                **settings,
            },
        )
        try:
            yield service
        finally:
            service.stop()

    # ---- phases ----------------------------------------------------------------------------------------

    def preload(self, instant: SandboxProcess) -> Backlog:
        plan = self.plan
        _say(f"pre-loading {plan.backlog_events} events and storing their images in the instant sandbox")
        backlog = preload_backlog(
            self.bootstrap,
            self.topic("backlog"),
            plan.partitions,
            plan.backlog_events,
            seed=self.seed,
            head=plan.head_events,
            seed_all=instant.seed,
            progress=_say,
        )
        _say(f"pre-loaded in {backlog.seconds:.0f} s: {dict(backlog.kinds)}")
        return backlog

    def raw_and_forward(self, backlog: Backlog) -> tuple[ThroughputRun, float, ThroughputRun]:
        """The raw consumer and the forwarding floor, pass for pass in turn, each rate the median of its passes:
        one pass is short, and the broker's rate drifts over a run (warm-up, page cache, whatever else runs),
        so taking them alternately keeps the drift out of their ratio. CPU is the raw consumer's, per pass."""
        passes = self.plan.raw_passes
        _say(f"raw confluent-kafka consumer and forwarding loop on the backlog, {passes} passes each, alternately")
        raws, forwards, cpu = [], [], 0.0
        for n in range(passes):
            run, seconds = _with_cpu(lambda: raw_consume(self.bootstrap, backlog.topic, backlog.events, timeout=600))
            raws.append(run)
            cpu += seconds
            forwards.append(
                forward_loop(self.bootstrap, backlog.topic, self.topic("forward-outcomes"), backlog.events, timeout=900)
            )
            _say(
                f"pass {n + 1}: raw {run.events_per_second:,.0f}, "
                f"forwarding {forwards[-1].events_per_second:,.0f} events/s"
            )
        return _median(raws), cpu / passes, _median(forwards)

    def minimal(self, backlog: Backlog) -> tuple[ThroughputRun, float]:
        _say("minimal Python loop (consume, json.loads, produce an outcome) on the backlog")
        run, cpu = _with_cpu(
            lambda: minimal_loop(
                self.bootstrap, backlog.topic, self.topic("minimal-outcomes"), backlog.events, timeout=900
            )
        )
        _say(f"minimal loop: {run.events_per_second:,.0f} events/s")
        return run, cpu

    def drain(self, backlog: Backlog, instant: SandboxProcess) -> DrainRun:
        _say(f"imgsweep drains the {backlog.events}-event backlog against the instant sandbox")
        with self.imgsweep(
            "drain",
            instant,
            input_topic=backlog.topic,
            outcome_topic=self.topic("outcomes"),
            dlq_topic=self.topic("dlq"),
            API__QPS=INSTANT_QPS,
        ) as service:
            run = drain(
                service,
                backlog.events,
                interval=self.plan.sample_interval,
                timeout=300 + backlog.events / 500,
            )
        _say(f"imgsweep: {run.events_per_second:,.0f} events/s, peak RSS {run.peak_rss_mb:.0f} MB")
        return run

    def memory(self, backlog: Backlog, instant: SandboxProcess, pending: int) -> DrainRun:
        plan = self.plan
        events = min(plan.memory_events, backlog.events)
        _say(f"imgsweep with MAX_PENDING_EVENTS={pending} drains the first {events} events")
        with self.imgsweep(
            "memory",
            instant,
            input_topic=backlog.topic,
            outcome_topic=self.topic("outcomes"),
            dlq_topic=self.topic("dlq"),
            API__QPS=INSTANT_QPS,
            KAFKA__MAX_PENDING_EVENTS=str(pending),
        ) as service:
            run = drain(service, events, interval=plan.sample_interval, timeout=300 + events / 500)
        _say(f"imgsweep: peak RSS {run.peak_rss_mb:.0f} MB")
        return run

    def profile(self, backlog: Backlog, instant: SandboxProcess) -> GilProfile | str:
        _say(f"py-spy --gil on a second imgsweep draining the same backlog ({self.plan.profile_seconds} s)")
        with self.imgsweep(
            "profile",
            instant,
            input_topic=backlog.topic,
            outcome_topic=self.topic("outcomes"),
            dlq_topic=self.topic("dlq"),
            API__QPS=INSTANT_QPS,
        ) as service:
            return record_gil_profile(service.pid, self.plan.profile_seconds, self.workdir / "py-spy.txt")

    def qps(self, backlog: Backlog) -> CallWindow:
        _say(f"imgsweep at 2 QPS against a 2-QPS sandbox ({self.plan.qps_seconds:.0f} s window)")
        sandbox = self.sandbox("qps")
        sandbox.seed(backlog.head_present)
        with self.imgsweep(
            "qps",
            sandbox,
            input_topic=backlog.topic,
            outcome_topic=self.topic("outcomes-qps"),
            dlq_topic=self.topic("dlq"),
            API__QPS="2",
        ) as service:
            window = call_window(sandbox, self.plan.qps_seconds, service=service)
        sandbox.stop()
        _say(f"imgsweep: {window.calls_per_second:.3f} calls/s, {window.items_per_call:.1f} items/call")
        return window

    def peer(self, backlog: Backlog) -> tuple[CallWindow, dict[str, Any]]:
        _say(f"the naive peer at 2 QPS against a 2-QPS sandbox ({self.plan.peer_seconds:.0f} s window)")
        sandbox = self.sandbox("peer")
        sandbox.seed(backlog.head_present)
        log = (self.workdir / "naive-peer.log").open("w")
        command = [
            sys.executable,
            "-m",
            "bench.naive_peer",
            "--bootstrap",
            self.bootstrap,
            "--topic",
            backlog.topic,
            "--group",
            self.topic("group-peer"),
            "--endpoint",
            sandbox.endpoint,
            "--qps",
            "2",
            "--duration",
            str(self.plan.peer_seconds + 300),
        ]
        env = {**clean_env(), "IMGSWEEP_API__ACCESS_KEY": ACCESS_KEY, "IMGSWEEP_API__SECRET_KEY": SECRET_KEY}
        peer = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        try:
            window = call_window(sandbox, self.plan.peer_seconds)
        finally:
            peer.terminate()
            out, _ = peer.communicate(timeout=60)
        sandbox.stop()
        summary: dict[str, Any] = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        _say(f"peer: {window.calls_per_second:.3f} calls/s, {window.items_per_call:.1f} items/call")
        return window, summary

    def light(self) -> LatencyRun:
        plan = self.plan
        count = int(plan.light_rate * plan.light_seconds)
        _say(f"light load: {count} events at {plan.light_rate:g}/s, sandbox latency {plan.light_latency_ms:g} ms")
        live = LiveStream.generate(count, plan.light_rate, seed=self.seed + 1)
        sandbox = self.sandbox("light", "--latency-ms", f"{plan.light_latency_ms:g}")
        sandbox.seed(live.present())
        with self.imgsweep(
            "light",
            sandbox,
            input_topic=self.topic("light"),
            outcome_topic=self.topic("light-outcomes"),
            dlq_topic=self.topic("light-dlq"),
        ) as service:
            service.wait_assigned(plan.partitions)
            before = sandbox.stats()
            started = time.monotonic()
            produce_live(self.bootstrap, self.topic("light"), live)
            latencies, outcomes = outcome_latencies(
                self.bootstrap, self.topic("light-outcomes"), live.created_ms, timeout=60
            )
            after = sandbox.stats()
            elapsed = time.monotonic() - started
        sandbox.stop()
        calls = after["calls_by_code"].get("10000", 0) - before["calls_by_code"].get("10000", 0)
        run = LatencyRun(len(live.created_ms), outcomes, latencies, calls / elapsed)
        _say(f"light load: p50 {run.p50:.2f} s, p99 {run.p99:.2f} s over {outcomes} outcomes")
        return run

    def capacity(self) -> Any:
        cores = os.cpu_count() or 1
        _say(f"the sandbox's capacity on one core ({self.plan.capacity_seconds:g} s)")
        sandbox = self.sandbox("capacity", "--qps", "0", "--quota", "-1", cpu=0 if cores > 1 else None)
        result = sandbox_capacity(sandbox.endpoint, self.plan.capacity_seconds, client_cpu=1 if cores > 1 else None)
        sandbox.stop()
        _say(f"sandbox: {result.calls_per_second:,.0f} calls/s")
        return result


def _median(runs: list[ThroughputRun]) -> ThroughputRun:
    """The median pass, carrying the rates of every pass."""
    median = sorted(runs, key=lambda run: run.events_per_second)[len(runs) // 2]
    return replace(median, passes=tuple(run.events_per_second for run in runs))


def _with_cpu(measure: Callable[[], ThroughputRun]) -> tuple[ThroughputRun, float]:
    """Runs a measurement in this process; returns it with the CPU seconds (user+sys, all threads) it took.
    Nothing else runs in the bench process meanwhile."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    run = measure()
    after = resource.getrusage(resource.RUSAGE_SELF)
    return run, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _topics(bench: Bench) -> list[NewTopic]:
    partitions = bench.plan.partitions
    log_append = {"message.timestamp.type": "LogAppendTime"}
    return [
        NewTopic(bench.topic("backlog"), num_partitions=partitions, replication_factor=1),
        NewTopic(bench.topic("outcomes"), num_partitions=partitions, replication_factor=1),
        NewTopic(bench.topic("outcomes-qps"), num_partitions=partitions, replication_factor=1),
        NewTopic(bench.topic("minimal-outcomes"), num_partitions=partitions, replication_factor=1),
        NewTopic(bench.topic("forward-outcomes"), num_partitions=partitions, replication_factor=1),
        NewTopic(bench.topic("dlq"), num_partitions=1, replication_factor=1),
        NewTopic(bench.topic("light"), num_partitions=partitions, replication_factor=1),
        NewTopic(bench.topic("light-outcomes"), num_partitions=partitions, replication_factor=1, config=log_append),
        NewTopic(bench.topic("light-dlq"), num_partitions=1, replication_factor=1),
    ]


def run_bench(plan: Plan, *, bootstrap: str | None, workdir: Path, seed: int, command: str) -> Results:
    kafka_local = load_kafka_local()
    external = bootstrap is not None
    machine_start = Machine.now(kafka_version=kafka_local.KAFKA_VERSION, external_broker=external)
    started = time.monotonic()
    with ExitStack() as stack:
        if bootstrap is None:
            _say("starting a local Kafka broker")
            kafka_local.fetch()
            broker = kafka_local.LocalKafka(data_dir=None)
            bootstrap = str(broker.start())
            stack.callback(broker.stop)
        bench = Bench(plan, bootstrap, workdir, stack, uuid.uuid4().hex[:8], seed)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        topics = _topics(bench)
        create_topics(admin, topics)
        if external:  # a broker of our own is thrown away whole
            stack.callback(_delete_topics, admin, [topic.topic for topic in topics])
        instant = bench.sandbox("instant", "--qps", "0", "--quota", "-1")
        backlog = bench.preload(instant)
        raw, raw_cpu, forward = bench.raw_and_forward(backlog)
        minimal, minimal_cpu = bench.minimal(backlog)
        drained = bench.drain(backlog, instant)
        defaults = ServiceDefaults.read()
        memory_pending = plan.memory_pending or max(1, defaults.max_pending_events // 2)
        memory = bench.memory(backlog, instant, memory_pending)
        profile = bench.profile(backlog, instant)
        instant.stop()
        qps = bench.qps(backlog)
        peer, peer_summary = bench.peer(backlog)
        light = bench.light()
        capacity = bench.capacity()
    _say("a simulated day of delists against the call budget (virtual clock, no broker)")
    simulated = simulate_days(quick=plan is QUICK)
    machine = machine_start.finished()
    return Results(
        plan=asdict(plan),
        defaults=defaults,
        memory_pending=memory_pending,
        machine=machine,
        command=command,
        seconds=time.monotonic() - started,
        backlog=backlog,
        raw=raw,
        raw_cpu_seconds=raw_cpu,
        minimal=minimal,
        minimal_cpu_seconds=minimal_cpu,
        forward=forward,
        drain=drained,
        memory=memory,
        profile=profile,
        qps=qps,
        peer=peer,
        peer_summary=peer_summary,
        light=light,
        light_linger_seconds=defaults.linger_seconds,
        light_latency_seconds=plan.light_latency_ms / 1000,
        capacity=capacity,
        simulated_day=simulated,
    )


def _delete_topics(admin: AdminClient, names: list[str]) -> None:
    for future in admin.delete_topics(names, operation_timeout=60).values():
        try:
            future.result(60)
        except Exception as error:  # noqa: BLE001 - best effort clean-up of a shared broker
            _say(f"could not delete a topic: {error}")


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the bench works, proves nothing")
    parser.add_argument("--out", type=Path, default=Path("docs/performance.md"), help="the report (markdown)")
    parser.add_argument("--plot", type=Path, help="the PNG plot (default: next to --out, .png)")
    parser.add_argument("--bootstrap", help="use this broker instead of starting one (KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--workdir", type=Path, help="keep every process's log here (default: a temporary dir)")
    parser.add_argument("--backlog-events", type=int, help="override the backlog size of the plan")
    parser.add_argument("--seed", type=int, default=20240611, help="random seed of the event streams")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # so every process started is stopped on the way out
    plan = QUICK if args.quick else FULL
    if args.backlog_events:
        plan = replace(plan, backlog_events=args.backlog_events, head_events=min(plan.head_events, args.backlog_events))
    bootstrap = args.bootstrap or os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None
    plot = args.plot or args.out.with_suffix(".png")
    command = shlex.join(["python", "-m", "bench.run", *(argv if argv is not None else sys.argv[1:])])
    with ExitStack() as stack:
        workdir = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="imgsweep-bench-")))
        workdir.mkdir(parents=True, exist_ok=True)
        results = run_bench(plan, bootstrap=bootstrap, workdir=workdir, seed=args.seed, command=command)
    figures = compute_figures(results)
    try:
        write_plot(results, figures, plot)
        drawn: Path | str = plot
    except ImportError as error:  # matplotlib is in the bench extra, not in every install
        drawn = f"no plot: {error.name or 'matplotlib'} is not installed (pip install -e '.[bench]')"
        _say(drawn)
    write_report(results, figures, args.out, drawn)
    _say(f"wrote {args.out} ({drawn}) after {results.seconds / 60:.1f} min")
    for figure in figures:
        print(f"{figure.name}: {figure.value:.3f} (target {figure.target})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
