"""``python -m bench.isolation --minutes N [--update docs/reliability.md]``: one account out of quota for N minutes,
half the input its events; does the other account keep its full QPS and its commits?

Issue 21 point 2, for an hour rather than a test's minute: two accounts, each with a sandbox of its own; account B's
sandbox answers every call 10040 (``--quota 0``: out of quota) for the whole run, account A's is instant. imgsweep
routes (``IMGSWEEP_KAFKA__REPARTITION=true``, decision 0022), with static instance id ``imgsweep-0``, A's QPS
``--qps`` and ``--items`` images per call, logs at WARNING, every other setting the tests' (the default pending
limit of 10,000 events: B's waiting events reach it within minutes). A feeder keeps A busy without burying it: twice
a second it tops A's produced events up to what A's sandbox has deleted plus ``--backlog`` seconds of A's work, and
produces as many events of B's (one image each, A's over 4 collections, B's over 2), so half the input is B's and A
never runs dry. Each image is stored in its account's sandbox before its event is produced, so a deletion done twice
finds its image absent: that is how a redo is counted. ``--control``: B's sandbox answers as A's, the same run with
no account waiting, for A's calls a second side by side.

Every ``--every`` seconds: A's calls a second (its sandbox's answers 10000) against its QPS; A's commit lag,
the age of A's oldest uncommitted event (the record at the pipeline group's committed offset on each of A's
partitions of the collections topic; the router keeps the input's timestamp), 0 when committed to the end;
B's events produced, committed (the group's offsets on B's partitions) and failed (outcomes other than
``deleted`` plus dead letters, every one of which would be B's); the service's RSS and the products its memory of
deletions holds (each of A's events is a product of its own, remembered for relists). At the end, the feeder
stops and imgsweep is SIGKILLed mid-work and started again with the same instance id; in flight at the kill
are A's events deleted at its sandbox but not committed (deleted minus A's records below the committed
offsets), and redone are A's images deleted again after the restart, once every A event is done. Never
asserts: the figures go to docs/reliability.md.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from bench.machine import Machine
from bench.standalone import broker_and_machine, section_parser, write_section
from devkit.fixtures import TEST_SETTINGS
from devkit.processes import (
    SandboxProcess,
    ServiceProcess,
    Topics,
    consume_all,
    event,
    sample_total,
    send,
    wait_for,
)

if TYPE_CHECKING:
    from devkit.processes import Record

__all__ = ["CONTROL_HEADING", "HEADING", "Sample", "main"]

HEADING: Final = "### One account out of quota for an hour (`bench.isolation`)"
CONTROL_HEADING: Final = "### The control run: no account waits (`bench.isolation --control`)"
KEYS: Final = {"A": ("isolation-a-access-key", "isolation-a-secret-never-shown"),
               "B": ("isolation-b-access-key", "isolation-b-secret-never-shown")}  # fmt: skip
COLLECTIONS: Final = {"A": [f"a{n}" for n in range(4)], "B": [f"b{n}" for n in range(2)]}
PARTITIONS: Final = 4


@dataclass(frozen=True)
class Sample:
    seconds: float
    a_calls_per_s: float
    a_lag_s: float
    b_produced: int
    b_committed: int
    b_failed: int
    rss_mb: float
    remembered: int
    """Products in the memory of deletions (for relists): what RSS grows with, one a deleted event here."""


@dataclass
class _Feed:
    """A's events topped up to its sandbox's deletions plus a backlog, as many of B's beside them, on a thread."""

    bootstrap: str
    topic: str
    sandboxes: dict[str, SandboxProcess]
    backlog: int
    produced: dict[str, int] = field(default_factory=lambda: {"A": 0, "B": 0})
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        return thread

    def _run(self) -> None:
        producer = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True, "linger.ms": 20})
        while not self._stop.wait(0.5):
            wanted = self.sandboxes["A"].stats()["items_deleted"] + self.backlog - self.produced["A"]
            if wanted > 0:
                send(producer, self.topic, self._records(wanted))
        producer.flush(30)

    def _records(self, count: int) -> list[Record]:
        records: list[Record] = []
        images: dict[str, list[tuple[str, str]]] = {}
        for _ in range(count):
            for account, collections in COLLECTIONS.items():
                n = self.produced[account]
                collection = collections[n % len(collections)]
                product, image = f"{account}-p{n}", f"{account}-{n}.jpg"
                images.setdefault(collection, []).append((product, image))
                records.append(event(f"{account}{n}", collection, product, [image]))
                self.produced[account] += 1
        for account, sandbox in self.sandboxes.items():
            sandbox.seed({name: found for name, found in images.items() if name in COLLECTIONS[account]})
        return records

    def stop(self, thread: threading.Thread) -> None:
        self._stop.set()
        thread.join(60)


class _Offsets:
    """The pipeline group's committed offsets on the collections topic, and the records at them, read from beside
    the group (never joining it)."""

    def __init__(self, bootstrap: str, topics: Topics) -> None:
        self.topic = topics.collections_topic
        common = {"bootstrap.servers": bootstrap, "enable.auto.commit": False}
        self._group = Consumer({**common, "group.id": f"{topics.group}.collections"})
        self._reader, self._peek = (
            Consumer({**common, "group.id": f"isolation-{uuid.uuid4().hex[:8]}", "isolation.level": level})
            for level in ("read_committed", "read_uncommitted")  # the pipeline's view; the record at an offset
        )
        self.owner: dict[int, str] = {}

    def committed(self, account: str) -> dict[int, int]:
        partitions = [TopicPartition(self.topic, p) for p, owner in self.owner.items() if owner == account]
        return {tp.partition: max(tp.offset, 0) for tp in self._group.committed(partitions, timeout=10)}

    def learn_owners(self) -> None:
        """Which account each partition holds, from the records' collections (the router deals partitions out
        by account); until both accounts' partitions are known."""
        wait_for(self._read_owners, 60, "the collections topic has not got both accounts' records")

    def _read_owners(self) -> bool:
        for partition in range(PARTITIONS):
            first = self._records(partition, 0, 1)
            if first:
                collection = first[0]
                self.owner[partition] = next(a for a, names in COLLECTIONS.items() if collection in names)
        return set(self.owner.values()) == set(COLLECTIONS)

    def _records(self, partition: int, start: int, count: int) -> list[str]:
        """The collections of up to ``count`` records from ``start`` (fewer when the partition ends first)."""
        self._reader.assign([TopicPartition(self.topic, partition, start)])
        found: list[str] = []
        while len(found) < count:
            messages = self._reader.consume(min(500, count - len(found)), timeout=1)
            if not messages:
                break
            found += [str(json.loads(m.value() or b"{}")["collection_name"]) for m in messages if m.error() is None]
        return found

    def oldest_age(self, account: str) -> float:
        """Seconds since the timestamp of the account's oldest uncommitted record; 0 when all are committed."""
        ages = [0.0]
        for partition, offset in self.committed(account).items():
            self._peek.assign([TopicPartition(self.topic, partition, offset)])
            messages = [m for m in self._peek.consume(1, timeout=1) if m.error() is None]
            if messages:
                ages.append(time.time() - messages[0].timestamp()[1] / 1000)
        return max(ages)

    def below(self, committed: dict[int, int]) -> int:
        """Records (read_committed) below these offsets."""
        total = 0
        for partition, offset in committed.items():
            self._reader.assign([TopicPartition(self.topic, partition, 0)])
            while True:
                messages = [m for m in self._reader.consume(500, timeout=2) if m.error() is None]
                total += sum(1 for m in messages if (m.offset() or 0) < offset)
                if not messages or (messages[-1].offset() or 0) >= offset - 1:
                    break
        return total

    def close(self) -> None:
        self._group.close()
        self._reader.close()
        self._peek.close()


@dataclass(frozen=True)
class Restart:
    a_produced: int
    in_flight: int
    """A's images deleted at its sandbox and not committed at the kill."""
    uncommitted: int
    """A's events not committed at the kill (in flight and its backlog)."""
    redone: int
    back_s: float
    """From the kill to A's first call of the new process."""


@dataclass
class _Run:
    """The processes of one run, for starting imgsweep (again) with the same settings."""

    bootstrap: str
    topics: Topics
    workdir: Path
    sandboxes: dict[str, SandboxProcess]
    settings: dict[str, str]

    def start(self) -> ServiceProcess:
        secrets = self.workdir / "secrets"
        secrets.mkdir(exist_ok=True)
        for account, (access_key, secret_key) in KEYS.items():
            (secrets / f"IMGSWEEP_ACCOUNTS__{account}__ACCESS_KEY").write_text(access_key)
            (secrets / f"IMGSWEEP_ACCOUNTS__{account}__SECRET_KEY").write_text(secret_key)
        return ServiceProcess.start(bootstrap=self.bootstrap, topics=self.topics, endpoint=None,
                                    log_path=self.workdir / "service.log", secrets_dir=secrets,
                                    settings=self.settings)  # fmt: skip

    def a_stats(self) -> dict[str, int]:
        stats = self.sandboxes["A"].stats()
        return {"calls": stats["calls_by_code"].get("10000", 0), "deleted": stats["items_deleted"],
                "absent": stats["items_absent"]}  # fmt: skip


def _sample(run: _Run, service: ServiceProcess, offsets: _Offsets, feed: _Feed, *, began: float,
            before: tuple[float, int]) -> tuple[Sample, tuple[float, int]]:  # fmt: skip
    """A sample, and the moment and A's calls it starts the next one from."""
    now, calls = time.monotonic(), run.a_stats()["calls"]
    metrics = service.metrics()
    failed = sample_total(metrics, "imgsweep_outcomes_total") - sample_total(
        metrics, "imgsweep_outcomes_total", 'status="deleted"'
    ) + sample_total(metrics, "imgsweep_dead_letters_total")  # fmt: skip
    return Sample(
        seconds=round(now - began, 1), a_calls_per_s=(calls - before[1]) / max(now - before[0], 1e-9),
        a_lag_s=offsets.oldest_age("A"), b_produced=feed.produced["B"],
        b_committed=sum(offsets.committed("B").values()), b_failed=int(failed), rss_mb=service.usage().rss_mb,
        remembered=int(sample_total(metrics, "imgsweep_state_remembered_products")),
    ), (now, calls)  # fmt: skip


def _restart(run: _Run, service: ServiceProcess, offsets: _Offsets, produced: int) -> tuple[Restart, int]:
    """SIGKILL mid-work, the same instance id again, until every A event is done and committed; and B's
    outcomes on the outcome topic (which must be none)."""
    absent_before = run.a_stats()["absent"]
    service.kill()
    killed = time.monotonic()
    time.sleep(1.0)  # a call the dead process had sent is answered, or never
    at_kill = run.a_stats()
    committed = offsets.below(offsets.committed("A"))
    again = run.start()
    try:
        wait_for(lambda: run.a_stats()["calls"] > at_kill["calls"], 120, "A made no call after the restart", 0.05)
        back = time.monotonic() - killed
        wait_for(lambda: run.a_stats()["deleted"] >= produced and offsets.oldest_age("A") == 0, 300,
                 "A's events were not all done and committed after the restart", 1.0)  # fmt: skip
    finally:
        again.stop()
    outcomes = consume_all(run.bootstrap, run.topics.outcome, expect=produced, timeout=120, settle=2)
    b_outcomes = sum(1 for o in outcomes if str(o.json().get("event_id", "")).startswith("B"))
    redone = run.a_stats()["absent"] - absent_before
    return Restart(produced, at_kill["deleted"] - committed, produced - committed, redone, back), b_outcomes


def measure(bootstrap: str, workdir: Path, *, minutes: float, qps: int, items: int, backlog: float,
            every: float, b_waits: bool = True) -> tuple[list[Sample], Restart, int]:  # fmt: skip
    """One run: the samples, the restart, and the outcomes B's events got (none expected while ``b_waits``;
    without it, B's sandbox answers as A's: the control run, where no account waits)."""
    topics = Topics.create(AdminClient({"bootstrap.servers": bootstrap}), f"iso.{uuid.uuid4().hex[:8]}",
                           partitions=PARTITIONS)  # fmt: skip
    quota = ["--quota", "0"] if b_waits else []
    with ExitStack() as stack:
        sandboxes = {
            "A": SandboxProcess.start(workdir / "sandbox-a.log", ["--qps", "0"], keys=KEYS["A"]),
            "B": SandboxProcess.start(workdir / "sandbox-b.log", ["--qps", "0", *quota], keys=KEYS["B"]),
        }
        for sandbox in sandboxes.values():
            stack.callback(sandbox.stop)
        settings = {**TEST_SETTINGS, "KAFKA__REPARTITION": "true", "KAFKA__GROUP_INSTANCE_ID": "imgsweep-0",
                    "API__QPS": str(qps), "BATCH__MAX_ITEMS": str(items), "LOG__LEVEL": "WARNING"}  # fmt: skip
        for account, sandbox in sandboxes.items():
            settings[f"ACCOUNTS__{account}__COLLECTIONS"] = json.dumps(COLLECTIONS[account])
            settings[f"ACCOUNTS__{account}__ENDPOINT"] = sandbox.endpoint
        run = _Run(bootstrap, topics, workdir, sandboxes, settings)
        service = run.start()
        stack.callback(service.stop)
        offsets = _Offsets(bootstrap, topics)
        stack.callback(offsets.close)
        feed = _Feed(bootstrap, topics.input, sandboxes, backlog=max(1, round(qps * items * backlog)))
        thread = feed.start()
        try:
            offsets.learn_owners()
            samples: list[Sample] = []
            began = time.monotonic()
            before = (began, run.a_stats()["calls"])
            while time.monotonic() - began < minutes * 60:
                time.sleep(max(0.0, began + (len(samples) + 1) * every - time.monotonic()))
                sample, before = _sample(run, service, offsets, feed, began=began, before=before)
                samples.append(sample)
                print(f"[isolation] {samples[-1]}", file=sys.stderr, flush=True)
        finally:
            feed.stop(thread)
        restart, b_outcomes = _restart(run, service, offsets, feed.produced["A"])
    return samples, restart, b_outcomes


def report_lines(samples: Sequence[Sample], restart: Restart, b_outcomes: int, machine: Machine, *, minutes: float,
                 qps: int, items: int, backlog: float, b_waits: bool) -> list[str]:  # fmt: skip
    step = max(1, len(samples) // 12)
    shown = [*samples[::step], *([samples[-1]] if (len(samples) - 1) % step else [])]
    command = f"python -m bench.isolation --minutes {minutes:g}" + ("" if b_waits else " --control")
    b_answers = "every call answered 10040" if b_waits else "answered as A's (the control run: no account waits)"
    lines = [
        HEADING if b_waits else CONTROL_HEADING,
        "",
        f"Generated by `{command}` on {machine.date}, {machine.cores} cores, load average at the start "
        f"{machine.load_start[0]:.2f}; how it is measured is in the module's docstring. Account A: QPS {qps}, "
        f"{items} images a call, kept {backlog:g} s of work ahead; account B: {b_answers}. {len(samples)} samples, "
        f"{len(shown)} shown.",
        "",
        f"| time, m:s | A calls/s (QPS {qps}) | A commit lag, s | B events produced | B committed | B failed | "
        "RSS, MB | products remembered |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in shown:
        lines.append(f"| {int(s.seconds // 60)}:{int(s.seconds % 60):02d} | {s.a_calls_per_s:.2f} | "
                     f"{s.a_lag_s:.1f} | {s.b_produced:,} | {s.b_committed:,} | {s.b_failed} | "
                     f"{s.rss_mb:.0f} | {s.remembered:,} |")  # fmt: skip
    return [*lines, "", summary(samples, restart, b_outcomes, qps)]


def summary(samples: Sequence[Sample], restart: Restart, b_outcomes: int, qps: int) -> str:
    """The run in one line."""
    rates = [s.a_calls_per_s for s in samples]
    lags = [s.a_lag_s for s in samples]
    rss = [s.rss_mb for s in samples]
    last = samples[-1]
    return (
        f"Summary: A made {statistics.fmean(rates):.2f} calls/s on average (lowest sample {min(rates):.2f}) at "
        f"QPS {qps}, its commit lag at most {max(lags):.1f} s (median {statistics.median(lags):.1f}); "
        f"B: {last.b_produced:,} events produced, {last.b_committed:,} committed, "
        f"{max(s.b_failed for s in samples)} failed, {b_outcomes} outcomes; RSS {rss[0]:.0f} to {rss[-1]:.0f} MB "
        f"(peak {max(rss):.0f}) with {last.remembered:,} products remembered for relists; SIGKILL and restart: "
        f"{restart.redone} of A's images redone, {restart.in_flight} in flight (deleted, not committed; "
        f"{restart.uncommitted} of A's events uncommitted), A calling again {restart.back_s:.1f} s after the kill."
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = section_parser("bench.isolation", __doc__)
    parser.add_argument("--minutes", type=float, default=60.0, help="how long B stays out of quota")
    parser.add_argument("--qps", type=int, default=5, help="account A's QPS")
    parser.add_argument("--items", type=int, default=4, help="images a call (IMGSWEEP_BATCH__MAX_ITEMS)")
    parser.add_argument("--backlog", type=float, default=5.0, help="seconds of A's work kept waiting")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--control", action="store_true", help="B's sandbox answers too: no account waits")
    parser.add_argument("--workdir", type=Path, help="keep the processes' logs here (default: a temporary directory)")
    parser.add_argument("--bootstrap", help="use this broker instead of starting one (KAFKA_BOOTSTRAP_SERVERS)")
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        bootstrap, machine = broker_and_machine(stack, args.bootstrap)
        if args.workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="imgsweep-isolation-")))
        else:
            workdir = args.workdir
            workdir.mkdir(parents=True, exist_ok=True)
            print(f"[isolation] logs in {workdir}", file=sys.stderr, flush=True)
        samples, restart, b_outcomes = measure(bootstrap, workdir, minutes=args.minutes, qps=args.qps,
                                               items=args.items, backlog=args.backlog, every=args.every,
                                               b_waits=not args.control)  # fmt: skip
    lines = report_lines(samples, restart, b_outcomes, machine, minutes=args.minutes, qps=args.qps, items=args.items,
                         backlog=args.backlog, b_waits=not args.control)  # fmt: skip
    return write_section(lines, lines[0], args.update)


if __name__ == "__main__":
    sys.exit(main())
