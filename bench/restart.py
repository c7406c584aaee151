"""``python -m bench.restart --before REV [--after REV] [--update docs/performance.md]``: a same-name restart,
two versions side by side.

Issue 20's target: a replica SIGKILLed and started again with its instance id (the kubelet restarting a crashed
container in the same pod) consumes again within 2 s, and unblocks the outcome topic's last stable offset (LSO)
within 2 s: the dead process's open transaction holds every ``read_committed`` reader of the outcome topic until
the new one's ``init_transactions`` aborts it.

Each run: fresh topics (a 3-partition input), events fed at ``--rate`` a second against one instant sandbox
(``API__QPS=1000``, ``BATCH__LINGER_SECONDS=0.05``: a transaction every 100 ms or so); the version's ``python -m
service run`` (from a git worktree of its revision, the working tree for ``--after`` by default) with static
instance id ``imgsweep-0`` until outcomes flow, one more second, then SIGKILL, while a transaction is open on the
outcome topic (its LSO below its high watermark, as when a replica dies under load), and at once the same command
again. From the kill, read every 20 ms: ``/readyz`` 200 (ready); every partition assigned and a record consumed
(consuming, ``tests/reliability/test_membership.py``'s measure); the outcome topic's LSO, read as a
``read_committed`` reader's high watermark, back at or above the high watermark after the kill (the dead
transaction aborted; 0 when it committed before the kill after all). Runs alternate before, after, after,
before. The report gives each side's median, range and after ÷ before. ``--setting``/``--before-setting``/
``--after-setting`` as ``bench.ab``'s.
"""

from __future__ import annotations

import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from bench.ab import add_side_arguments, open_sides, side_settings
from bench.machine import Machine
from bench.standalone import section_parser, write_section
from devkit.processes import (
    Topics,
    clean_env,
    event,
    exposition_samples,
    free_port,
    imgsweep_env,
    sample_total,
    stop_process,
)

__all__ = ["HEADING", "Restart", "main", "measure_restart"]

HEADING: Final = "## Same-name restart: one version against another"
PARTITIONS: Final = 3
INSTANCE_ID: Final = "imgsweep-0"
TIMEOUT: Final = 60.0
READ_EVERY: Final = 0.02


@dataclass(frozen=True)
class Restart:
    side: str
    ready_s: float
    consuming_s: float
    lso_s: float
    """From the kill to the outcome topic's LSO back at the high watermark of the kill (0: nothing was open)."""


class _Feed:
    """Events at a steady rate on the input, on a thread, until stopped."""

    def __init__(self, bootstrap: str, topic: str, rate: float) -> None:
        self._producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        self._topic, self._rate = topic, rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        number = 0
        while not self._stop.wait(1 / self._rate):
            key, value, _ = event(f"e{number}", f"c{number % 4}", f"p{number}", [f"{number}.jpg"])
            self._producer.produce(self._topic, key=key, value=value)
            self._producer.poll(0)
            number += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._producer.flush(5)


class _Replica:
    def __init__(self, tree: Path, env: Mapping[str, str], log: Path) -> None:
        self.port = free_port()
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service", "run"],
                cwd=tree,
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**env, "IMGSWEEP_HTTP__PORT": str(self.port)},
            )
        self._client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", trust_env=False, timeout=1)

    def ready(self) -> bool:
        return self._get("/readyz") is not None

    def consuming(self) -> bool:
        readiness = self._get("/readyz")
        if readiness is None or len(readiness.json().get("assigned_partitions", [])) != PARTITIONS:
            return False
        return self._total("imgsweep_events_consumed_total") > 0

    def flowing(self) -> bool:
        return self._total("imgsweep_outcomes_total") > 0

    def _total(self, name: str) -> float:
        metrics = self._get("/metrics")
        return 0.0 if metrics is None else sample_total(exposition_samples(metrics.text), name)

    def _get(self, path: str) -> httpx.Response | None:
        try:
            response = self._client.get(path)
        except httpx.HTTPError:
            return None
        return response if response.status_code == 200 else None

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self._client.close()

    def stop(self) -> None:
        stop_process(self.process)
        self._client.close()


def _moments(conditions: Mapping[str, Callable[[], bool]], what: str) -> dict[str, float]:
    """When each condition first held, all read in turn every 20 ms; RuntimeError if one never did."""
    moments: dict[str, float] = {}
    deadline = time.monotonic() + TIMEOUT
    while len(moments) < len(conditions) and time.monotonic() < deadline:
        for name, condition in conditions.items():
            if name not in moments and condition():
                moments[name] = time.monotonic()
        time.sleep(READ_EVERY)
    if len(moments) < len(conditions):
        raise RuntimeError(f"{what}: {', '.join(sorted(set(conditions) - set(moments)))} never within {TIMEOUT:.0f} s")
    return moments


def measure_restart(*, tree: Path, side: str, bootstrap: str, endpoint: str, rate: float,
                    settings: Mapping[str, str], workdir: Path) -> Restart:  # fmt: skip
    """One run on fresh topics: start, flow, SIGKILL, start again with the same instance id; the timings."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = Topics.create(admin, f"restart.{uuid.uuid4().hex[:8]}", partitions=PARTITIONS)
    base = {"KAFKA__GROUP_INSTANCE_ID": INSTANCE_ID, "HTTP__HOST": "127.0.0.1", "LOG__LEVEL": "INFO",
            "API__QPS": "1000", "BATCH__LINGER_SECONDS": "0.05", **settings}  # fmt: skip
    env = {**clean_env(), **imgsweep_env(bootstrap=bootstrap, topics=topics, endpoint=endpoint, settings=base)}
    committed, everything = (
        Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topics.group}.lso", "isolation.level": level})
        for level in ("read_committed", "read_uncommitted")
    )
    feed = _Feed(bootstrap, topics.input, rate)
    log = workdir / f"{side}-{topics.input}.log"
    replicas: list[_Replica] = []
    try:
        replicas.append(_Replica(tree, env, log))
        _moments({"flowing": replicas[0].flowing}, side)
        time.sleep(1.0)
        outcome = TopicPartition(topics.outcome, 0)
        _moments({"open": lambda: _high(committed, outcome) < _high(everything, outcome)}, side)
        replicas[0].kill()
        killed = time.monotonic()
        replicas.append(_Replica(tree, env, log))
        high = _high(everything, outcome)  # all the dead process wrote; below it, its open transaction's first
        blocked = _high(committed, outcome) < high
        unblocked = (lambda: _high(committed, outcome) >= high) if blocked else (lambda: True)
        moments = _moments({"ready": replicas[1].ready, "consuming": replicas[1].consuming, "lso": unblocked}, side)
        lso = moments["lso"] - killed if blocked else 0.0
        return Restart(side, moments["ready"] - killed, moments["consuming"] - killed, lso)
    finally:
        for replica in replicas[1:]:
            replica.stop()
        feed.stop()
        committed.close()
        everything.close()
        for future in admin.delete_topics(topics.names, operation_timeout=30).values():
            future.result(30)  # the run's topics go before the next run starts


def _high(reader: Consumer, partition: TopicPartition) -> int:
    """The high watermark as ``reader`` sees it: the last stable offset for a ``read_committed`` one (librdkafka
    asks with the reader's isolation level)."""
    offsets = reader.get_watermark_offsets(partition, timeout=5, cached=False)
    return -1 if offsets is None else int(offsets[1])


def report_lines(runs: Sequence[Restart], machine: Machine, *, before: str, after: str, rate: float,
                 settings: Mapping[str, str]) -> list[str]:  # fmt: skip
    given = ", ".join(f"`{name}={value}`" for name, value in settings.items()) or "none"
    lines = [
        HEADING,
        "",
        f"Generated by `python -m bench.restart --before {before}` on {machine.date}, {machine.cores} cores, load "
        f"average at the start {machine.load_start[0]:.2f}; how it is measured is in the module's docstring. "
        f"{rate:.0f} events/s, before = `{before}`, after = {after}; settings: {given}. {len(runs)} runs "
        "alternating before, after, after, before; medians; seconds from the SIGKILL.",
        "",
        "| | before (median, range) | after (median, range) | after ÷ before |",
        "|---|---:|---:|---:|",
    ]
    for label, field in (("ready (/readyz 200)", "ready_s"), ("consuming again (every partition, a record)",
                         "consuming_s"), ("outcome topic's LSO unblocked", "lso_s")):  # fmt: skip
        cells, medians = [], []
        for side in ("before", "after"):
            found = [float(getattr(run, field)) for run in runs if run.side == side]
            medians.append(statistics.median(found))
            cells.append(f"{medians[-1]:.2f} ({min(found):.2f} to {max(found):.2f})")
        ratio = f"{medians[1] / medians[0]:.3f}" if medians[0] > 0 else "-"
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | {ratio} |")
    each = [f"{run.side} {run.ready_s:.2f} / {run.consuming_s:.2f} / {run.lso_s:.2f} s" for run in runs]
    return [*lines, "", "Each run, in order (ready / consuming / LSO): " + "; ".join(each) + "."]


def main(argv: Sequence[str] | None = None) -> int:
    parser = section_parser("bench.restart", __doc__)
    add_side_arguments(parser)
    parser.add_argument("--rate", type=float, default=50.0, help="events a second on the input")
    args = parser.parse_args(argv)
    settings, sides = side_settings(args)
    runs: list[Restart] = []
    with ExitStack() as stack:
        run = open_sides(stack, args, "imgsweep-restart-")
        machine = run.machine
        for side in run.order:
            given = {**settings, **sides[side]}
            runs.append(measure_restart(tree=run.trees[side], side=side, bootstrap=run.bootstrap,
                                        endpoint=run.sandbox.endpoint, rate=args.rate, settings=given,
                                        workdir=run.workdir))  # fmt: skip
            print(f"[restart] {runs[-1]}", file=sys.stderr, flush=True)
    after = f"`{args.after}`" if args.after else f"the working tree ({machine.revision_text})"
    given = {**settings, **{f"{side}: {name}": value for side, named in sides.items() for name, value in named.items()}}
    lines = report_lines(runs, machine, before=args.before, after=after, rate=args.rate, settings=given)
    return write_section(lines, HEADING, args.update)


if __name__ == "__main__":
    sys.exit(main())
