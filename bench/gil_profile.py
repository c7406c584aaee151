"""Where imgsweep's Python time goes: py-spy samples of whichever thread holds the GIL, summed by pipeline stage.

``py-spy record --gil --nonblocking`` attaches to the running service from outside (no code change, the
process is never paused). With ``--gil`` a sample is taken only when some thread holds the GIL, so the samples
add up to the time the interpreter was busy, and the share of the wall clock they cover says how close the
service is to being bound by one core. Each stack is put in the first stage that one of its frames belongs to,
looking from the innermost frame outwards (logging inside the decoder counts as logging, json inside the
batcher as batching). py-spy is optional: without it the report says the profile was skipped.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["STAGES", "GilProfile", "classify_stack", "parse_collapsed", "record_gil_profile"]

# (stage, substrings of a frame "function (path:line)"); the first stage any frame matches, innermost first.
STAGES: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("logging", ("/logging/", "service/logs.py")),
    ("metrics", ("prometheus_client/",)),
    ("metrics endpoint (scrapes)", ("http/server.py", "socketserver.py", "service/health.py")),
    ("decode event (json, checks)", ("decode_event ",)),
    ("copy consumed record", ("_source_record ",)),
    ("build outcome (json)", ("build_outcome ", "outcome_headers ", "outcome_id_for ", "_publish_outcome ")),
    ("dead-letter copy", ("_dead_letter ", "dead_letter_headers ")),
    ("delivery callbacks", ("_delivered ",)),
    ("produce (librdkafka)", ("_produce ",)),
    ("batching", ("service/pipeline/batcher.py",)),
    ("apply results", ("_apply ", "decide ", "took_part ", "PendingEvent.complete ")),
    ("offsets and commit", ("_commit ", "service/pipeline/offsets.py")),
    ("pause, gauges, stats", ("_apply_pause ", "_update_gauges ", "on_stats ", "_after_rebalance ")),
    ("accept (bookkeeping)", ("_accept ",)),
    ("classify response", ("classify_response ", "service/api/classify.py")),
    ("sign request", ("service/api/signing.py",)),
    ("encode body", ("encode_body ",)),
    ("rate limiter, quota", ("service/api/rate_limit.py", "service/api/quota.py")),
    ("HTTP client (httpx)", ("httpx/", "httpcore/", "h11/")),
    ("dispatch to workers", ("_dispatch ", "concurrent/futures/")),
    ("collect results", ("_collect_results ",)),
    ("consume, poll (librdkafka, in C)", ("_step ",)),
)
OTHER: Final = "other"


def classify_stack(frames: list[str]) -> str:
    """The stage of one stack (outermost frame first, as py-spy writes them)."""
    for frame in reversed(frames):
        for stage, needles in STAGES:
            if any(needle in frame for needle in needles):
                return stage
    return OTHER


def parse_collapsed(text: str) -> Counter[str]:
    """Samples per stage from py-spy's ``--format raw`` output (``frame;frame;... count`` per line)."""
    stages: Counter[str] = Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stages[classify_stack(stack.split(";"))] += int(count)
    return stages


@dataclass(frozen=True)
class GilProfile:
    seconds: float
    rate: int
    stages: Counter[str]

    @property
    def samples(self) -> int:
        return sum(self.stages.values())

    @property
    def gil_busy(self) -> float:
        """Share of the wall clock some thread held the GIL (samples ÷ samples possible)."""
        return self.samples / (self.seconds * self.rate)

    def shares(self) -> list[tuple[str, float]]:
        total = self.samples or 1
        return [(stage, count / total) for stage, count in self.stages.most_common()]


def record_gil_profile(pid: int, seconds: int, out: Path, *, rate: int = 100) -> GilProfile | str:
    """Blocks for ``seconds`` sampling ``pid``; returns the profile, or why there is none."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        return "py-spy is not installed (pip install py-spy, or the project's bench extra)"
    command = [
        py_spy,
        "record",
        "--pid",
        str(pid),
        "--gil",
        "--nonblocking",
        "--rate",
        str(rate),
        "--duration",
        str(seconds),
        "--format",
        "raw",
        "--output",
        str(out),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if result.returncode != 0 or not out.exists():
        return f"py-spy failed ({result.returncode}): {(result.stderr or result.stdout).strip()[-300:]}"
    return GilProfile(float(seconds), rate, parse_collapsed(out.read_text()))
