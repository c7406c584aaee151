"""imgsweep's container image for the tests: built as `make image` builds it, run with podman as a pod runs it.

`image()` builds the image with deploy/image/build.sh once per test session (that script reuses the image when
nothing it is built from changed, so a warm run costs about a second) and returns its reference.
`ContainerService` is `imgsweep run` in that image, with the same interface as the harness's ServiceProcess:
host networking (the test broker and the sandbox are on loopback), a read-only root filesystem with a tmpfs
at /tmp (the chart's emptyDir), user 10001, no capabilities.

The tests are skipped, saying why, only where podman cannot run: it is not installed, or cannot start a
container. With CI=true they fail instead, because make installs podman there (deploy/tools/install-podman.sh).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from devkit.processes import ServiceProcess, free_port

REPO = Path(__file__).resolve().parents[1]
TOOLS_DIR = Path(os.environ.get("IMGSWEEP_TOOLS_DIR") or Path.home() / ".cache" / "imgsweep" / "tools")
CONTAINERS_CONF = TOOLS_DIR / "podman" / "containers.conf"
IMAGE_UID = 10001
BUILD_TIMEOUT_S = 540.0
TEST_TIMEOUT_S = 600
"""pytest-timeout for a module whose first test may build the image cold (about 40 s here; the base is
downloaded from Debian's archive, so a slow mirror can take minutes)."""
PODMAN_TIMEOUT_S = 120.0
# Messages of a runtime that cannot start a container at all (not of a Dockerfile step that failed).
RUNTIME_FAILURES = ("OCI runtime", "runc create failed", "cannot set up namespace", "error during container init")

_built: list[str] = []
_unavailable: list[str] = []


def podman_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a podman command: this machine's configuration (runc, cgroupfs, host network, ulimits)."""
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF), **(extra or {})}


def podman(*args: str, timeout: float = PODMAN_TIMEOUT_S, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["podman", *args], capture_output=True, text=True, env=podman_env(), timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


def _cannot_run(reason: str) -> None:
    """Skips the test, saying why; under CI, where make installs podman, fails instead."""
    _unavailable.append(reason)
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true, so the container tests must run, but {reason}")
    pytest.skip(reason)


def image() -> str:
    """The image built from the Dockerfile (`make image`'s script), once per session."""
    if _built:
        return _built[0]
    if _unavailable:
        _cannot_run(_unavailable[0])
    if shutil.which("podman") is None:
        _cannot_run("podman is not installed (deploy/tools/install-podman.sh installs it; make tools runs it)")
    if not CONTAINERS_CONF.is_file():  # podman is there: the project's setup was not run, a failure
        pytest.fail(f"no {CONTAINERS_CONF}: run deploy/tools/install-podman.sh (make tools does)")
    info = podman("info", "--format", "{{.Host.OCIRuntime.Name}}", check=False)
    if info.returncode != 0:
        _cannot_run(f"podman cannot run here: {info.stderr.strip()[-500:]}")
    built = subprocess.run(
        [str(REPO / "deploy" / "image" / "build.sh")],
        capture_output=True,
        text=True,
        env=podman_env(),
        cwd=REPO,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    if built.returncode != 0:
        if any(marker in built.stderr for marker in RUNTIME_FAILURES):
            _cannot_run(f"podman cannot start a container here:\n{built.stderr.strip()[-1500:]}")
        raise AssertionError(f"deploy/image/build.sh exited {built.returncode}:\n{built.stderr[-5000:]}")
    reference = built.stdout.strip().splitlines()[-1]
    _built.append(reference)
    return reference


def run_image(
    *args: str, env: Mapping[str, str] | None = None, volumes: tuple[str, ...] = (), entrypoint: str | None = None
) -> subprocess.CompletedProcess[str]:
    """One command in a fresh container of the image, as the pod runs it; the variables are passed by name only,
    so no value (no secret) is on a command line."""
    command = ["run", "--rm", *hardened_flags(), *(f"--env={name}" for name in env or {})]
    command += [f"--volume={volume}" for volume in volumes]
    if entrypoint is not None:
        command.append(f"--entrypoint={entrypoint}")
    result = subprocess.run(
        ["podman", *command, image(), *args],
        capture_output=True,
        text=True,
        env=podman_env(env),
        timeout=PODMAN_TIMEOUT_S,
        check=False,
    )
    if any(marker in result.stderr for marker in RUNTIME_FAILURES):
        raise AssertionError(f"the container did not start:\n{result.stderr[-3000:]}")
    return result


def hardened_flags() -> list[str]:
    """The Helm chart's security context in podman's words, on the host's network (never the default bridge)."""
    return [
        "--network=host",
        "--read-only",
        "--read-only-tmpfs=false",
        "--tmpfs=/tmp:rw,size=64m,mode=1777",
        f"--user={IMAGE_UID}:{IMAGE_UID}",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
    ]


@dataclass
class ContainerService(ServiceProcess):
    """``imgsweep run`` in the image; ``process`` is the attached ``podman run`` (its exit code is the container's)."""

    name: str = ""

    @classmethod
    def start_container(cls, env: Mapping[str, str], log_path: Path, port: int | None = None) -> ContainerService:
        """Starts the container with ``env`` (IMGSWEEP_* settings) and blocks until /readyz answers 200."""
        port = port or free_port()
        settings = {**env, "IMGSWEEP_HTTP__HOST": "127.0.0.1", "IMGSWEEP_HTTP__PORT": str(port)}
        name = f"imgsweep-test-{uuid.uuid4().hex[:10]}"
        command = ["podman", "run", "--rm", f"--name={name}", "--stop-timeout=60", *hardened_flags()]
        command += [f"--env={variable}" for variable in settings]
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [*command, image(), "run"], stdout=log, stderr=subprocess.STDOUT, env=podman_env(settings)
            )
        service = cls(process, port, log_path, dict(settings), name=name)
        try:
            service.wait_ready()
        except BaseException:
            service.stop()
            raise
        return service

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM to the container's process, as Kubernetes stops a pod; the container's exit code."""
        podman("kill", "--signal=TERM", self.name)
        return self.process.wait(timeout)

    def kill(self) -> None:
        podman("kill", "--signal=KILL", self.name, check=False)
        self.process.wait(30)

    def stop(self) -> bool:
        """`podman stop` (SIGTERM, then SIGKILL after 60 s) if it still runs; the container is removed. False if
        it had to be killed."""
        if self.process.poll() is not None:
            return True
        stopped = podman("stop", "--time=60", self.name, check=False, timeout=90)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            return False
        return stopped.returncode == 0 and self.process.returncode == 0
