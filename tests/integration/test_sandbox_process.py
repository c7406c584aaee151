"""The sandbox as its own process: the one stdout line a parent reads, SIGTERM, and configuration errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devkit.processes import clean_env

pytestmark = pytest.mark.integration

LISTENING = "sandbox listening on "


def environment(**extra: str) -> dict[str, str]:
    clean = clean_env()
    return {**clean, **extra}


def start(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "service.sandbox", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.fixture
def sandbox_url(tmp_path: Path) -> Iterator[str]:
    seed_file = tmp_path / "seed.jsonl"
    seed_file.write_text('{"collection_name": "c", "product_id": "p", "image_id": "i"}\n')
    process = start(
        "--seed-file",
        str(seed_file),
        "--qps",
        "0",
        env=environment(IMGSWEEP_API__ACCESS_KEY="AK-env", IMGSWEEP_API__SECRET_KEY="SK-env"),
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith(LISTENING), line
        yield line.removeprefix(LISTENING).strip()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


def test_prints_its_url_serves_and_stops_on_sigterm(sandbox_url: str) -> None:
    assert sandbox_url.startswith("http://127.0.0.1:")
    assert httpx.get(sandbox_url + "/healthz").json() == {"status": "ok"}
    images = httpx.get(sandbox_url + "/admin/images", params={"collection_name": "c"}).json()
    assert images["count"] == 1
    assert httpx.get(sandbox_url + "/admin/faults").json()["qps"] == 0


def test_without_keys_exits_2_naming_variables_and_flags(tmp_path: Path) -> None:
    process = start(env=environment(IMGSWEEP_SECRETS_DIR=str(tmp_path)))
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 2
    for name in ("IMGSWEEP_API__ACCESS_KEY", "IMGSWEEP_API__SECRET_KEY", "--access-key", "--secret-key"):
        assert name in stderr


def test_bad_fault_flag_exits_2(tmp_path: Path) -> None:
    process = start("--access-key", "AK", "--secret-key", "SK", "--busy-rate", "2", env=environment())
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 2
    assert "--busy-rate" in stderr
    bad_seed = tmp_path / "seed.json"
    bad_seed.write_text(json.dumps({"collection_name": "c"}))
    process = start("--access-key", "AK", "--secret-key", "SK", "--seed-file", str(bad_seed), env=environment())
    _, stderr = process.communicate(timeout=30)
    assert (process.returncode, "seed.json" in stderr) == (2, True)
