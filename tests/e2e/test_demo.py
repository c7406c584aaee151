"""The one-command demo and produce-sample (``python -m devkit``), run as a user would run them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from devkit.fixtures import TopicsFactory
from devkit.processes import clean_env, consume_all

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in command:
            found.append(command)
    return found


def test_demo_runs_everything_reports_and_leaves_nothing_behind() -> None:
    env = clean_env()
    result = subprocess.run(
        [sys.executable, "-m", "devkit", "demo", "--count", "80", "--rate", "200", "--qps", "20", "--seed", "3"],
        capture_output=True, text=True, timeout=300, env=env, cwd=REPO, check=False,
    )  # fmt: skip
    output = result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "[##############################] 80/80 events" in output
    assert re.search(r"images deleted [1-9]\d*, absent [1-9]\d*", output)
    assert "dead letters: {" in output
    assert "sample outcomes:" in output
    assert re.search(r"metrics at http://127\.0\.0\.1:\d+/metrics", output)
    assert "done: nothing left running" in output
    workdir = re.search(r"(/\S*imgsweep-demo-\w+)", output)
    assert workdir is not None
    assert _processes_mentioning(workdir.group(1)) == []  # no broker, sandbox or service left
    assert not Path(workdir.group(1)).exists()


def _produce_sample(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devkit", "produce-sample", *args],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO, check=False,
    )  # fmt: skip


def test_produce_sample_makes_a_realistic_mix(kafka_bootstrap: str, topics: TopicsFactory) -> None:
    names = topics(partitions=1)
    env = {**clean_env(), "IMGSWEEP_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap}  # the input topic: the default
    result = _produce_sample(
        env, "--topic", names.input, "--count", "400", "--seed", "5", "--invalid-fraction", "0.1",
        "--cloudevents-fraction", "0.3",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["produced"] == 400
    assert summary["topic"] == names.input
    kinds = Counter(summary["by_kind"])
    assert kinds["invalid"] > 10
    assert kinds["cloudevents-structured"] > 20
    assert kinds["cloudevents-binary"] > 20
    assert kinds["plain"] > 150
    records = consume_all(kafka_bootstrap, names.input, expect=400, timeout=60)
    assert len(records) == 400
    assert sum(1 for r in records if "ce_specversion" in r.headers) == kinds["cloudevents-binary"]


@pytest.mark.parametrize(
    ("args", "configured", "says"),
    [
        pytest.param([], None, "name the topic to write to with --topic", id="no-topic"),
        pytest.param(["--topic", "catalog.product-delisted"], None, "refusing", id="the-default-input-topic"),
        pytest.param(["--topic", "shop.delisted"], "shop.delisted", "refusing", id="the-configured-input-topic"),
    ],
)
def test_produce_sample_refuses_the_live_input_topic_unless_told(
    args: list[str], configured: str | None, says: str
) -> None:
    """Exit 2 with one clear line, before a record is made: the broker and the sandbox named here do not
    exist, so any attempt to seed or produce would fail otherwise (and slowly)."""
    env = {**clean_env(), "IMGSWEEP_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:9"}
    if configured is not None:
        env["IMGSWEEP_KAFKA__INPUT_TOPIC"] = configured
    result = _produce_sample(env, *args, "--count", "5", "--seed-sandbox", "http://127.0.0.1:9", timeout=30)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("devkit produce-sample: ")
    assert says in line
    assert repr(configured or "catalog.product-delisted") in line
    assert "IMGSWEEP_KAFKA__INPUT_TOPIC" in line
    assert "--yes" in line


def test_produce_sample_writes_the_configured_input_topic_with_yes(kafka_bootstrap: str, topics: TopicsFactory) -> None:
    names = topics(partitions=1)
    env = {
        **clean_env(),
        "IMGSWEEP_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "IMGSWEEP_KAFKA__INPUT_TOPIC": names.input,
    }
    result = _produce_sample(env, "--yes", "--count", "20", "--seed", "7")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)["topic"] == names.input
    assert len(consume_all(kafka_bootstrap, names.input, expect=20, timeout=60, settle=1.0)) == 20
