"""One set of versions: the tests run with the image's dependencies.

deploy/image/requirements.lock (the image) and deploy/image/dev.lock (.venv: the same plus the dev and bench extras)
come from one `make lock`; `make setup` installs dev.lock with --require-hashes.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

LOCKS = Path(__file__).resolve().parents[2] / "deploy" / "image"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ ;\\]+)")


def pins(lock: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in (LOCKS / lock).read_text().splitlines():
        match = PIN.match(line)
        if match:
            found[metadata_name(match.group(1))] = match.group(2)
    return found


def metadata_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_image_runs_the_versions_the_tests_run() -> None:
    image, tests = pins("requirements.lock"), pins("dev.lock")
    assert {"confluent-kafka", "httpx", "httpcore", "pydantic"} <= image.keys()
    assert {name: version for name, version in image.items() if tests.get(name) != version} == {}


def test_every_pin_carries_its_hashes() -> None:
    for lock in ("requirements.lock", "dev.lock", "pip.lock"):
        text = (LOCKS / lock).read_text()
        blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 1)[1])
        for block in blocks:
            if PIN.match(block):
                assert "--hash=sha256:" in block, f"{lock}: {block.splitlines()[0]} has no hash"


def test_this_environment_is_installed_from_the_lock() -> None:
    """`pip install -e '.[dev]'` resolves the newest versions instead: run `make setup` (it reinstalls from
    deploy/image/dev.lock whenever a lock file changes)."""
    differ = {}
    for name, version in pins("dev.lock").items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = "not installed"
        if installed != version:
            differ[name] = f"{installed} installed, {version} locked"
    assert differ == {}, "not the locked versions; run make setup"
