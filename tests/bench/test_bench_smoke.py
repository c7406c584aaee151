"""The benchmark still runs: ``python -m bench.run --quick`` completes and writes a report holding every figure.

Tiny sizes on the session's broker; it proves the bench works, nothing about speed. No assertion here is
about time or about how good a figure is: those are for docs/performance.md, written by a full run.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.figures import FIGURE_KEYS

REPO = Path(__file__).resolve().parents[2]


def _bench(module: str, *arguments: str) -> None:
    """``python -m <module> <arguments>`` from the repository; fails the test, with its stderr, if it fails."""
    result = subprocess.run(
        [sys.executable, "-m", module, *arguments], cwd=REPO, capture_output=True, text=True, timeout=280, check=False
    )
    assert result.returncode == 0, result.stderr[-4000:]


def _section(report: Path, heading: str, module: str, *arguments: str) -> str:
    """``_bench(module, *arguments, "--update", report)`` on a report of a heading and "## Reproduce"; the section
    it wrote there, from just after ``heading``."""
    report.write_text("# Performance\n\n## Reproduce\n", encoding="utf-8")
    _bench(module, *arguments, "--update", str(report))
    return report.read_text(encoding="utf-8").split(heading, 1)[1].split("## Reproduce", 1)[0]


@pytest.mark.e2e
def test_quick_run_writes_a_report_with_every_figure(kafka_bootstrap: str, tmp_path: Path) -> None:
    out = tmp_path / "docs" / "performance.md"
    _bench(
        "bench.run", "--quick", "--out", str(out), "--bootstrap", kafka_bootstrap, "--workdir", str(tmp_path / "work")
    )

    report = out.read_text(encoding="utf-8")
    summary = report.split("## Summary", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in summary.splitlines() if line.startswith("| ") and not line.startswith("| figure")]
    assert len(rows) == len(FIGURE_KEYS)
    for row in rows:
        ratio = row.split("|")[2].strip()
        assert re.fullmatch(r"-?[\d,]+(\.\d+)?", ratio), row
    for needed in ("cores", "Python", "Apache Kafka", "python -m bench.run --quick", "Measured on 2", "simulated day"):
        assert needed in report
    if importlib.util.find_spec("matplotlib") is not None:
        assert (out.parent / "performance.png").read_bytes().startswith(b"\x89PNG")
        assert "![The figures of this run](performance.png)" in report


@pytest.mark.e2e
def test_the_before_and_after_bench_runs_two_versions_and_writes_its_section(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """``bench.ab`` on a tiny backlog, HEAD against the working tree: both drain it, the section has the ratios."""
    section = _section(tmp_path / "performance.md", "## Before and after: smoke", "bench.ab", "--before", "HEAD",
                       "--events", "400", "--rounds", "1", "--bootstrap", kafka_bootstrap,
                       "--title", "smoke")  # fmt: skip
    rows = [line for line in section.splitlines() if line.startswith("| ") and "after ÷ before" not in line]
    assert [row.split("|")[1].strip() for row in rows] == [
        "events/s (higher is better)",
        "peak RSS, MB",
        "CPU seconds, whole process",
        "transaction commit p99, ms (bucket bound)",  # both sides deliver exactly once, in transactions
    ]
    for row in rows:
        assert re.fullmatch(r"\d+\.\d{3}", row.split("|")[4].strip()), row
    assert "Each run, in order: before " in section


@pytest.mark.e2e
def test_the_restart_bench_kills_and_restarts_both_versions_and_writes_its_section(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """``bench.restart``, HEAD against the working tree, one run each: the section has the three timings."""
    section = _section(tmp_path / "performance.md", "## Same-name restart", "bench.restart", "--before", "HEAD",
                       "--rounds", "1", "--bootstrap", kafka_bootstrap)  # fmt: skip
    rows = [line for line in section.splitlines() if line.startswith("| ") and "after ÷ before" not in line]
    assert [row.split("|")[1].strip() for row in rows] == [
        "ready (/readyz 200)",
        "consuming again (every partition, a record)",
        "outcome topic's LSO unblocked",
    ]
    for row in rows[:2]:
        assert re.fullmatch(r"\d+\.\d{3}", row.split("|")[4].strip()), row


@pytest.mark.e2e
def test_the_reader_latency_bench_runs_both_deliveries_and_writes_its_section(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """``bench.reader_latency``, one run of each delivery for 2 s: the section has the three rows with figures."""
    section = _section(tmp_path / "performance.md", "## Exactly once: the added latency", "bench.reader_latency",
                       "--rounds", "1", "--seconds", "2", "--bootstrap", kafka_bootstrap)  # fmt: skip
    rows = [line.split("|") for line in section.splitlines() if line.startswith("| ") and "difference" not in line]
    assert [row[1].strip() for row in rows[:3]] == ["median", "p95", "p99"]
    for row in rows[:3]:
        cells = "|".join(cell.strip() for cell in row[2:6])  # at-least-once | exactly-once | difference | ratio
        assert re.fullmatch(r"\d+\|\d+\|[+-]\d+\|\d+\.\d{2}", cells), row
    assert "Each run, in order (median / p99): at_least_once " in section
    assert "(40 outcomes); exactly_once " in section
    assert re.search(r"Transaction commit p99 at this load .*: \d+ ms \(each run: \d+\)\.", section), section


@pytest.mark.e2e
def test_the_commit_floor_bench_times_a_bare_client_in_three_conditions(kafka_bootstrap: str, tmp_path: Path) -> None:
    """``bench.commit_floor``, 5 transactions a condition: the section has the three conditions with figures."""
    section = _section(tmp_path / "performance.md", "## Exactly once: a bare client's commit", "bench.commit_floor",
                       "--transactions", "5", "--hogs", "1", "--bootstrap", kafka_bootstrap)  # fmt: skip
    rows = [line.split("|") for line in section.splitlines() if line.startswith("| ") and "condition" not in line]
    assert [row[1].strip().split(" ")[0] for row in rows] == ["alone", "a", "and"], section
    for row in rows:
        p50, p99, most = (float(cell) for cell in row[2:5])
        assert 0 < p50 <= p99 <= most, row


@pytest.mark.e2e
def test_the_isolation_bench_samples_both_accounts_restarts_and_writes_its_section(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """``bench.isolation`` for 9 s, a sample every 3 s, 1 s of A's work ahead: a row a sample with every cell a
    figure, and the summary line with the restart's redone and in-flight counts (how good they are is for
    docs/reliability.md); B's events neither committed past nor given an outcome."""
    short = ("--minutes", "0.15", "--every", "3", "--backlog", "1", "--bootstrap", kafka_bootstrap)
    section = _section(tmp_path / "reliability.md", "### One account out of quota", "bench.isolation", *short)
    rows = [line.split("|")[1:-1] for line in section.splitlines() if re.match(r"\| \d+:\d\d \|", line)]
    assert len(rows) == 3, section
    for row in rows:
        # time | A calls/s | A's commit lag | B produced | B committed | B failed | RSS | products remembered
        cells = "|".join(cell.strip() for cell in row)
        assert re.fullmatch(r"\d+:\d\d\|\d+\.\d\d\|\d+\.\d\|[\d,]+\|[\d,]+\|\d+\|\d+\|[\d,]+", cells), row
    summary = re.search(
        r"Summary: A made \d+\.\d\d calls/s .* B: [\d,]+ events produced, (\d+) committed, \d+ failed, (\d+) "
        r"outcomes; .* SIGKILL and restart: (\d+) of A's images redone, (\d+) in flight",
        section,
    )
    assert summary is not None, section
    assert int(summary.group(1)) == 0, "B's events wait: none committed past"
    assert int(summary.group(2)) == 0, "B's events wait: none failed"
