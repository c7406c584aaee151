"""``python -m bench.ab --before REV [--after REV] [--update docs/performance.md]``: two versions, side by side.

What a change did to the pipeline's cost, measured in one run: each version's ``python -m service run``, from a
git worktree of its revision (the working tree itself for ``--after`` by default), drains the same backlog
(``--events`` events of 2 images, 4 collections, a 4-partition input) against one instant sandbox
(``--qps 0 --quota -1``, ``IMGSWEEP_API__QPS=1000``: the API out of the way), in its own consumer group and
output topics; the sandbox's images are stored again before each run, so every run deletes them for real.
The runs alternate before, after, after, before (``--rounds`` pairs), so a machine that warms up or slows down
weighs on both alike. Per run: events/s between 10 % and 90 % of the backlog finished
(``imgsweep_outcomes_total``, read every 0.1 s: start-up and the last linger stay out; timed from the last
reading below 10 %, so a drain that passes 10 % and 90 % between two readings still has a rate), the process's peak RSS
(VmHWM) and CPU seconds (user + system, whole process, start to finish). The report gives each side's median,
its range, and the ratios after ÷ before. ``--setting NAME=VALUE`` (an ``IMGSWEEP_`` name without the prefix)
goes to both versions: only settings both know; ``--before-setting``/``--after-setting`` to one side only (two
modes of one version: ``--before HEAD --before-setting KAFKA__DELIVERY=at_least_once``). Where a version exposes
``imgsweep_transaction_commit_seconds``, the report also gives the p99 of its transactions' commit time. Both
versions run on this virtualenv's packages: a change of dependencies between them is not measured.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from bench.machine import Machine
from bench.standalone import broker_and_machine, section_parser, write_section
from devkit.processes import (
    ACCESS_KEY,
    SECRET_KEY,
    SandboxProcess,
    clean_env,
    event,
    exposition_samples,
    free_port,
    produce,
    read_usage,
    sample_total,
    stop_process,
)

__all__ = [
    "HEADING",
    "REPO",
    "Run",
    "Sides",
    "add_side_arguments",
    "commit_p99_ms",
    "main",
    "open_sides",
    "report_lines",
    "run_ab",
    "side_settings",
    "worktree",
]

HEADING: Final = "## Before and after: one backlog, two versions"
REPO: Final = Path(__file__).resolve().parent.parent
COLLECTIONS: Final = 4
PARTITIONS: Final = 4
DRAIN_TIMEOUT: Final = 600.0


@dataclass(frozen=True)
class Run:
    side: str
    """``before`` or ``after``."""
    events_per_second: float
    peak_rss_mb: float
    cpu_seconds: float
    commit_p99_ms: float | None = None
    """The p99 of the transactions' commit time (bucket bound), when the version has transactions."""


@contextmanager
def worktree(revision: str) -> Iterator[Path]:
    """A detached worktree of ``revision`` (removed afterwards)."""
    with tempfile.TemporaryDirectory(prefix="imgsweep-ab-") as parent:
        path = Path(parent) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", str(path), revision], cwd=REPO, check=True,
                       capture_output=True)  # fmt: skip
        try:
            yield path
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=REPO, check=False,
                           capture_output=True)  # fmt: skip


def _drain(tree: Path, *, bootstrap: str, topic: str, tag: str, endpoint: str, events: int,
           settings: Mapping[str, str], log: Path) -> Run:  # fmt: skip
    """One version drains the backlog; blocks until every event has its outcome (or raises after 10 minutes)."""
    port = free_port()
    env = {
        **clean_env(),
        "IMGSWEEP_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "IMGSWEEP_KAFKA__GROUP_ID": f"{topic}.{tag}",
        "IMGSWEEP_KAFKA__INPUT_TOPIC": topic,
        "IMGSWEEP_KAFKA__OUTCOME_TOPIC": f"{topic}.{tag}.out",
        "IMGSWEEP_KAFKA__DLQ_TOPIC": f"{topic}.{tag}.dlq",
        "IMGSWEEP_API__ACCESS_KEY": ACCESS_KEY,
        "IMGSWEEP_API__SECRET_KEY": SECRET_KEY,
        "IMGSWEEP_API__ENDPOINT": endpoint,
        "IMGSWEEP_API__QPS": "1000",
        "IMGSWEEP_HTTP__HOST": "127.0.0.1",
        "IMGSWEEP_HTTP__PORT": str(port),
        "IMGSWEEP_LOG__LEVEL": "WARNING",
        **{f"IMGSWEEP_{name.upper()}": value for name, value in settings.items()},
    }
    with log.open("w") as output:
        process = subprocess.Popen([sys.executable, "-m", "service", "run"], cwd=tree, env=env, stdout=output,
                                   stderr=subprocess.STDOUT)  # fmt: skip
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=5)
    start: tuple[float, float] | None = None
    first: tuple[float, float] | None = None
    last: tuple[float, float] | None = None
    peak = cpu = 0.0
    deadline = time.monotonic() + DRAIN_TIMEOUT
    try:
        while time.monotonic() < deadline:
            time.sleep(0.1)
            if process.poll() is not None:
                raise _failed(f"{tag} exited with {process.returncode}", log)
            try:
                text = client.get("/metrics").text
            except httpx.HTTPError:
                continue
            done = sample_total(exposition_samples(text), "imgsweep_outcomes_total")
            usage = read_usage(process.pid)
            peak, cpu = max(peak, usage.peak_rss_mb), usage.cpu_seconds
            now = time.monotonic()
            if first is None and (done < 0.1 * events or start is None):
                start = (now, done)  # the last reading before the first tenth: a drain faster than one reading
            if first is None and start is not None and done >= 0.1 * events:  # is still timed from ``start``
                first = start if start[1] < done else (now, done)
            if last is None and done >= 0.9 * events:
                last = (now, done)
            if done >= events and first is not None and last is not None:
                if last[0] <= first[0]:
                    raise _failed(f"{tag} drained {events} events before a reading could time it: give more", log)
                rate = (last[1] - first[1]) / (last[0] - first[0])
                return Run(tag.rstrip("0123456789"), rate, peak, cpu, commit_p99_ms(text))
        raise _failed(f"{tag} did not drain {events} events in {DRAIN_TIMEOUT:.0f} s", log)
    finally:
        client.close()
        stop_process(process)


def commit_p99_ms(exposition: str) -> float | None:
    """The p99 of ``imgsweep_transaction_commit_seconds``, as the upper bound of its bucket; None without it."""
    buckets: list[tuple[float, float]] = []
    for series, value in exposition_samples(exposition).items():
        if series.startswith("imgsweep_transaction_commit_seconds_bucket{"):
            bound = series.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(bound), value))
    buckets.sort()
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    return next(bound for bound, count in buckets if count >= 0.99 * total) * 1000


def _failed(what: str, log: Path) -> RuntimeError:
    """The error of a run that failed, with the end of its log (a temporary log directory goes with the run)."""
    return RuntimeError(f"{what}; the end of its log ({log}):\n{log.read_text(errors='replace')[-3000:]}")


def run_ab(*, before: str, after: str | None, events: int, rounds: int, settings: Mapping[str, str],
           bootstrap: str | None, workdir: Path,
           sides: Mapping[str, Mapping[str, str]] | None = None) -> tuple[list[Run], Machine]:  # fmt: skip
    with ExitStack() as stack:
        bootstrap, machine = broker_and_machine(stack, bootstrap)
        trees = {"before": stack.enter_context(worktree(before))}
        trees["after"] = stack.enter_context(worktree(after)) if after else REPO
        topic = f"ab.{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        order = [side for _ in range(rounds) for side in ("before", "after", "after", "before")][: 2 * rounds]
        names = [topic] + [f"{topic}.{side}{n}.{kind}" for n, side in enumerate(order) for kind in ("out", "dlq")]
        for future in admin.create_topics([NewTopic(name, PARTITIONS, 1) for name in names]).values():
            future.result(30)
        stack.callback(_delete_topics, admin, names)
        sandbox = SandboxProcess.start(
            workdir / "sandbox.log", ["--qps", "0", "--quota", "-1", "--log-level", "WARNING"]
        )
        stack.callback(sandbox.stop)
        images = {
            f"c{c}": [(f"p{n}", f"{n}-{i}.jpg") for n in range(c, events, COLLECTIONS) for i in range(2)]
            for c in range(COLLECTIONS)
        }
        produce(bootstrap, topic, [event(f"e{n}", f"c{n % COLLECTIONS}", f"p{n}", [f"{n}-0.jpg", f"{n}-1.jpg"])
                                   for n in range(events)])  # fmt: skip
        runs = []
        for number, side in enumerate(order):
            tag = f"{side}{number}"
            sandbox.seed(images)  # what the last run deleted is there again
            runs.append(_drain(trees[side], bootstrap=bootstrap, topic=topic, tag=tag, endpoint=sandbox.endpoint,
                               events=events, settings={**settings, **(sides or {}).get(side, {})},
                               log=workdir / f"{tag}.log"))  # fmt: skip
            print(f"[ab] {tag}: {runs[-1]}", file=sys.stderr, flush=True)
    return runs, machine


def _delete_topics(admin: AdminClient, names: Sequence[str]) -> None:
    """The run's topics go, whatever happened (they hold the whole backlog)."""
    for future in admin.delete_topics(list(names), operation_timeout=60).values():
        try:
            future.result(60)
        except Exception as error:  # noqa: BLE001 - a leftover topic is worth a line, not a failed report
            print(f"[ab] could not delete a topic: {error}", file=sys.stderr)


def report_lines(runs: Sequence[Run], machine: Machine, *, title: str, before: str, after: str,
                 events: int, settings: Mapping[str, str]) -> list[str]:  # fmt: skip
    def values(side: str, field: str) -> list[float]:
        return [float(getattr(run, field)) for run in runs if run.side == side]

    rows = [("events/s (higher is better)", "events_per_second", "{:,.0f}"),
            ("peak RSS, MB", "peak_rss_mb", "{:,.0f}"),
            ("CPU seconds, whole process", "cpu_seconds", "{:.1f}")]  # fmt: skip
    extra = ""
    if all(run.commit_p99_ms is not None for run in runs):
        rows.append(("transaction commit p99, ms (bucket bound)", "commit_p99_ms", "{:.0f}"))
    elif any(run.commit_p99_ms is not None for run in runs):  # one side commits transactions, the other not
        p99s = [run.commit_p99_ms for run in runs if run.commit_p99_ms is not None]
        committing = "after" if any(run.commit_p99_ms is not None for run in runs if run.side == "after") else "before"
        extra = f"Transaction commit p99 ({committing} side only, bucket bound): {statistics.median(p99s):.0f} ms."
    else:
        extra = ""
    given = ", ".join(f"`{name}={value}`" for name, value in settings.items()) or "none"
    lines = [
        HEADING.replace("one backlog, two versions", title),
        "",
        f"Generated by `python -m bench.ab --before {before}` on {machine.date}, {machine.cores} cores, load "
        f"average at the start {machine.load_start[0]:.2f}; how it is measured is in the module's docstring. "
        f"{events:,} events of 2 images, before = `{before}`, after = {after}; settings given to both: {given}. "
        f"{len(runs)} runs alternating before, after, after, before; medians.",
        "",
        "| | before (median, range) | after (median, range) | after ÷ before |",
        "|---|---:|---:|---:|",
    ]
    for label, field, shown in rows:
        cells, medians = [], []
        for side in ("before", "after"):
            found = values(side, field)
            medians.append(statistics.median(found))
            spread = f"{shown.format(min(found))} to {shown.format(max(found))}"
            cells.append(f"{shown.format(medians[-1])} ({spread})")
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | {medians[1] / medians[0]:.3f} |")
    each = [
        f"{run.side} {run.events_per_second:,.0f} ev/s, {run.peak_rss_mb:.0f} MB, {run.cpu_seconds:.1f} s"
        for run in runs
    ]
    lines += ["", "Each run, in order: " + "; ".join(each) + "."]
    if extra:
        lines += ["", extra]
    apart = [
        label
        for label, field, _ in rows
        if max(values("before", field)) < min(values("after", field))
        or max(values("after", field)) < min(values("before", field))
    ]
    lines += [
        "",
        f"Where the two sides' ranges do not overlap: {', '.join(apart)}."
        if apart
        else "Every row's ranges overlap: no difference this run can tell apart from run-to-run noise.",
    ]
    return lines


def add_side_arguments(parser: argparse.ArgumentParser, *, before_required: bool = True) -> None:
    """The options of a side-by-side run (``bench.ab``, ``bench.restart``, ``bench.reader_latency``): the two
    revisions, the rounds, the settings for both or one side, the broker and where the logs go. Without
    ``before_required``, no ``--before`` means the working tree on both sides (two modes of one version)."""
    parser.add_argument("--before", required=before_required, help="the git revision measured as before")
    parser.add_argument("--after", help="the git revision measured as after (default: the working tree)")
    parser.add_argument("--rounds", type=int, default=2, help="pairs of runs (default 2: before, after, after, before)")
    parser.add_argument("--setting", action="append", default=[], help="NAME=VALUE for both, e.g. API__DAILY_CALLS=-1")
    parser.add_argument("--before-setting", action="append", default=[], help="NAME=VALUE for the before side only")
    parser.add_argument("--after-setting", action="append", default=[], help="NAME=VALUE for the after side only")
    parser.add_argument("--bootstrap", help="use this broker instead of starting one (KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--workdir", type=Path, help="keep every process's log here (default: a temporary dir)")


@dataclass(frozen=True)
class Sides:
    """What the runs of a side-by-side bench share (``open_sides``)."""

    workdir: Path
    bootstrap: str
    machine: Machine
    trees: dict[str, Path]
    """Each side's source tree: a worktree of its revision, or this one."""
    sandbox: SandboxProcess
    """An instant sandbox (no QPS, no quota)."""
    order: list[str]
    """The sides in the order they run: before, after, after, before, ``--rounds`` pairs."""


def open_sides(stack: ExitStack, args: argparse.Namespace, prefix: str) -> Sides:
    """The workdir (``--workdir``, else a temporary one named ``prefix``), the broker, a tree per side and the
    sandbox of a side-by-side run (``add_side_arguments``), all closed with ``stack``."""
    workdir = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))
    workdir.mkdir(parents=True, exist_ok=True)
    bootstrap, machine = broker_and_machine(stack, args.bootstrap)
    trees = {side: stack.enter_context(worktree(revision)) if revision else REPO
             for side, revision in (("before", args.before), ("after", args.after))}  # fmt: skip
    sandbox = SandboxProcess.start(workdir / "sandbox.log", ["--qps", "0", "--quota", "-1", "--log-level", "WARNING"])
    stack.callback(sandbox.stop)
    order = [side for _ in range(args.rounds) for side in ("before", "after", "after", "before")]
    return Sides(workdir, bootstrap, machine, trees, sandbox, order[: 2 * args.rounds])


def side_settings(args: argparse.Namespace) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """The settings for both sides, and each side's own (``add_side_arguments``)."""
    settings = dict(item.split("=", 1) for item in args.setting)
    sides = {
        side: dict(item.split("=", 1) for item in getattr(args, f"{side}_setting")) for side in ("before", "after")
    }
    return settings, sides


def main(argv: Sequence[str] | None = None) -> int:
    parser = section_parser("bench.ab", __doc__)
    add_side_arguments(parser)
    parser.add_argument(
        "--title", default="one backlog, two versions", help="the section's heading, after 'Before and after: '"
    )
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args(argv)
    settings, sides = side_settings(args)
    with tempfile.TemporaryDirectory(prefix="imgsweep-ab-logs-") as scratch:
        workdir = args.workdir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        runs, machine = run_ab(before=args.before, after=args.after, events=args.events, rounds=args.rounds,
                               settings=settings, bootstrap=args.bootstrap, workdir=workdir,
                               sides=sides)  # fmt: skip
    after = f"`{args.after}`" if args.after else f"the working tree ({machine.revision_text})"
    given = {**settings, **{f"{side}: {name}": value for side, named in sides.items() for name, value in named.items()}}
    lines = report_lines(runs, machine, title=args.title, before=args.before, after=after, events=args.events,
                         settings=given)  # fmt: skip
    return write_section(lines, HEADING.replace("one backlog, two versions", args.title), args.update)


if __name__ == "__main__":
    sys.exit(main())
