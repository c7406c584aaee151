"""``python -m bench.reader_latency [--before REV] [--update docs/performance.md]``: what exactly-once delivery
adds to the time an outcome takes to reach a ``read_committed`` reader, against at-least-once.

Issue 20 asks for it: with ``KAFKA__DELIVERY=exactly_once`` (the default) outcomes are written in Kafka
transactions committed every 100-250 ms, and a ``read_committed`` reader of the outcome topic sees none of them
before the commit marker; with ``at_least_once`` they are visible as soon as the broker has them.

Each run, on fresh topics (a 3-partition input): one version's ``python -m service run`` (the working tree by
default; ``--before REV`` runs that revision, from a git worktree, as the at-least-once side) against one instant
sandbox (``API__QPS=1000``, ``API__DAILY_CALLS=-1``, ``BATCH__LINGER_SECONDS=0``,
``BATCH__RELIST_GRACE_SECONDS=0``: nothing waits but the pipeline and the delivery), ready and given its
partitions; then single-image events at ``--rate`` a second for ``--warmup`` plus ``--seconds`` seconds (their
images stored in the sandbox first, so each is deleted for real); the events of the first ``--warmup`` seconds
(default 2) are left out of the figures: a started service holds its first second or two of events until its first
fetch and call are under way, up to 2 s in both modes, a start-up cost and not the delivery's. Two readers run the
whole time: one of the input, for each record's timestamp (the producer's clock when it was produced), and one of
the outcome topic with ``isolation.level=read_committed`` (``fetch.wait.max.ms=20``), which notes the wall clock
when each outcome comes out of ``poll``. An outcome's latency is that moment minus its input record's timestamp
(same machine, same clock); the first outcome of each event counts. The runs alternate at-least-once, exactly-once,
exactly-once, at-least-once (``--rounds`` pairs). The report gives each mode's median, p95 and p99 over all its
outcomes, the range of the runs' medians, and the difference (exactly-once minus at-least-once) and ratio.
``--setting``/``--before-setting``/``--after-setting`` as ``bench.ab``'s; the modes are set with
``KAFKA__DELIVERY``, so a side setting of that name wins.
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from bench.ab import add_side_arguments, commit_p99_ms, open_sides, side_settings
from bench.machine import Machine
from bench.standalone import section_parser, write_section
from devkit.processes import SandboxProcess, ServiceProcess, Topics, event, send

__all__ = ["HEADING", "MODES", "Latencies", "main", "measure_latency", "report_lines"]

HEADING: Final = "## Exactly once: the added latency to a read_committed reader"
MODES: Final = {"before": "at_least_once", "after": "exactly_once"}
"""Each side's delivery: ``before`` is the at-least-once side, ``after`` the exactly-once one."""
PARTITIONS: Final = 3
DRAIN_TIMEOUT: Final = 60.0
BASE_SETTINGS: Final = {
    "API__QPS": "1000",
    "API__DAILY_CALLS": "-1",
    "BATCH__LINGER_SECONDS": "0",
    "BATCH__RELIST_GRACE_SECONDS": "0",
    "LOG__LEVEL": "WARNING",
}


@dataclass(frozen=True)
class Latencies:
    side: str
    """``before`` (at-least-once) or ``after`` (exactly-once)."""
    delivery: str
    milliseconds: list[float]
    """One per event, from its input record's timestamp to a read_committed reader's receipt of its outcome."""
    commit_p99_ms: float | None = None
    """The p99 of its transactions' commit time at this load (bucket bound); None at-least-once."""


class _Reader:
    """A consumer of one topic from its start, on a thread: per record, its value, its timestamp (ms) and the
    wall clock (s) when ``poll`` gave it, until stopped."""

    def __init__(self, bootstrap: str, topic: str, *, isolation: str) -> None:
        self._consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": f"latency-{uuid.uuid4().hex}", "auto.offset.reset": "earliest",
            "enable.auto.commit": False, "isolation.level": isolation, "fetch.wait.max.ms": 20,
        })  # fmt: skip
        self._consumer.subscribe([topic])
        self.records: list[tuple[bytes, int, float]] = []
        self.assigned = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            message = self._consumer.poll(0.1)
            if self._consumer.assignment():
                self.assigned.set()
            if message is None or message.error() is not None:
                continue
            self.records.append((message.value() or b"", message.timestamp()[1], time.time()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()


def measure_latency(*, tree: Path, side: str, bootstrap: str, sandbox: SandboxProcess, rate: float,
                    seconds: tuple[float, float], settings: Mapping[str, str], workdir: Path) -> Latencies:  # fmt: skip
    """One run on fresh topics: the service ready, both readers assigned, the events fed (``seconds``: the
    warm-up, then the measured time); the latency of every outcome of an event fed after the warm-up."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = Topics.create(admin, f"latency.{uuid.uuid4().hex[:8]}", partitions=PARTITIONS)
    warm, count = round(rate * seconds[0]), round(rate * sum(seconds))
    records = [event(f"e{n}", f"c{n % 4}", f"p{n}", [f"{n}.jpg"]) for n in range(count)]
    sandbox.seed({f"c{c}": [(f"p{n}", f"{n}.jpg") for n in range(c, count, 4)] for c in range(4)})
    given = {**BASE_SETTINGS, "KAFKA__DELIVERY": MODES[side], **settings}
    service = ServiceProcess.start(bootstrap=bootstrap, topics=topics, endpoint=sandbox.endpoint, cwd=tree,
                                   log_path=workdir / f"{side}-{topics.input}.log", secrets_dir=workdir,
                                   settings=given)  # fmt: skip
    readers = [_Reader(bootstrap, topics.input, isolation="read_uncommitted"),
               _Reader(bootstrap, topics.outcome, isolation="read_committed")]  # fmt: skip
    try:
        service.wait_assigned(PARTITIONS)
        for reader in readers:
            if not reader.assigned.wait(30):
                raise RuntimeError(f"{side}: a reader was given no partition in 30 s")
        send(Producer({"bootstrap.servers": bootstrap, "linger.ms": 0}), topics.input, records, rate=rate)
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while len(_firsts(readers[1].records)) < count and time.monotonic() < deadline:
            time.sleep(0.2)
        commit_p99 = commit_p99_ms(service.exposition())
    finally:
        for reader in readers:
            reader.stop()
        service.stop()
        for future in admin.delete_topics(topics.names, operation_timeout=30).values():
            future.result(30)  # the run's topics go before the next run starts
    produced = {json.loads(value)["event_id"]: stamp for value, stamp, _ in readers[0].records}
    received = _firsts(readers[1].records)
    if len(received) < count:
        raise RuntimeError(f"{side}: {len(received)} of {count} outcomes in {DRAIN_TIMEOUT:.0f} s after the feed")
    measured = {f"e{n}" for n in range(warm, count)}
    latencies = [at * 1000 - produced[name] for name, at in received.items() if name in measured]
    return Latencies(side, given["KAFKA__DELIVERY"], latencies, commit_p99)


def _firsts(records: Sequence[tuple[bytes, int, float]]) -> dict[str, float]:
    """When each event's first outcome was received, by event id."""
    firsts: dict[str, float] = {}
    for value, _, at in list(records):
        firsts.setdefault(json.loads(value)["event_id"], at)
    return firsts


def _percentile(values: Sequence[float], share: float) -> float:
    """The ``share`` quantile (0.95 for p95), nearest rank: a value some outcome really took."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def report_lines(runs: Sequence[Latencies], machine: Machine, *, revisions: str, rate: float, seconds: float,
                 warmup: float, settings: Mapping[str, str]) -> list[str]:  # fmt: skip
    given = ", ".join(f"`{name}={value}`" for name, value in settings.items()) or "none"
    pooled = {side: [ms for run in runs if run.side == side for ms in run.milliseconds] for side in MODES}
    lines = [
        HEADING,
        "",
        f"Generated by `python -m bench.reader_latency` on {machine.date}, {machine.cores} cores, load average at "
        f"the start {machine.load_start[0]:.2f}; how it is measured is in the module's docstring. {revisions}; "
        f"{rate:.0f} single-image events/s for {seconds:.0f} s a run (after {warmup:.0f} s left out); other "
        f"settings: {given}. {len(runs)} runs "
        "alternating at-least-once, exactly-once, exactly-once, at-least-once; milliseconds from the input "
        "record's timestamp to a `read_committed` reader's receipt of its outcome, over every outcome of a mode.",
        "",
        "| | at_least_once | exactly_once | difference, ms | exactly_once ÷ at_least_once |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, share in (("median", 0.5), ("p95", 0.95), ("p99", 0.99)):
        low, high = (_percentile(pooled[side], share) for side in MODES)
        lines.append(f"| {label} | {low:.0f} | {high:.0f} | {high - low:+.0f} | {high / max(low, 1e-9):.2f} |")
    medians = {side: [statistics.median(run.milliseconds) for run in runs if run.side == side] for side in MODES}
    lines.append(
        "| the runs' medians, range | "
        + " | ".join(f"{min(medians[side]):.0f} to {max(medians[side]):.0f}" for side in MODES)
        + " | | |"
    )
    each = [f"{run.delivery} {statistics.median(run.milliseconds):.0f} / {_percentile(run.milliseconds, 0.99):.0f} ms "
            f"({len(run.milliseconds)} outcomes)" for run in runs]  # fmt: skip
    lines += ["", "Each run, in order (median / p99): " + "; ".join(each) + "."]
    commits = [run.commit_p99_ms for run in runs if run.commit_p99_ms is not None]
    if commits:
        lines += ["", f"Transaction commit p99 at this load (`imgsweep_transaction_commit_seconds`, bucket bound; "
                      f"exactly-once runs): {statistics.median(commits):.0f} ms (each run: "
                      + ", ".join(f"{ms:.0f}" for ms in commits) + ")."]  # fmt: skip
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = section_parser("bench.reader_latency", __doc__)
    add_side_arguments(parser, before_required=False)
    parser.add_argument("--rate", type=float, default=20.0, help="single-image events a second on the input")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long each run feeds them, measured")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds fed first, left out of the figures")
    args = parser.parse_args(argv)
    settings, sides = side_settings(args)
    runs: list[Latencies] = []
    with ExitStack() as stack:
        run = open_sides(stack, args, "imgsweep-latency-")
        for side in run.order:
            runs.append(measure_latency(tree=run.trees[side], side=side, bootstrap=run.bootstrap, sandbox=run.sandbox,
                                        rate=args.rate, seconds=(args.warmup, args.seconds),
                                        settings={**settings, **sides[side]}, workdir=run.workdir))  # fmt: skip
            print(f"[reader_latency] {side} {runs[-1].delivery}: median "
                  f"{statistics.median(runs[-1].milliseconds):.0f} ms", file=sys.stderr, flush=True)  # fmt: skip
    machine = run.machine
    tree = f"the working tree ({machine.revision_text})"
    revisions = (f"at-least-once: `{args.before}`" if args.before else f"both modes: {tree}") + (
        f", exactly-once: `{args.after}`" if args.after else (f", exactly-once: {tree}" if args.before else "")
    )
    given = {**settings, **{f"{side}: {name}": value for side, named in sides.items() for name, value in named.items()}}
    lines = report_lines(runs, machine, revisions=revisions, rate=args.rate, seconds=args.seconds,
                         warmup=args.warmup, settings=given)  # fmt: skip
    return write_section(lines, HEADING, args.update)


if __name__ == "__main__":
    sys.exit(main())
