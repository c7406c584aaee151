#!/usr/bin/env python3
"""A real Confluent-compatible Schema Registry for tests and local runs, without Docker: Apicurio Registry.

Apicurio Registry (Apache-2.0) serves the Confluent Schema Registry API at ``/apis/ccompat/v7``; its ready-to-run
distribution is on Maven Central (``io.apicurio:apicurio-registry-app:<version>:tar.gz:all``, about 158 MB).
``fetch`` downloads it with Maven and unpacks it into the cache, once; ``start`` runs it on loopback with
in-memory storage and no auth, and waits until the API answers (7-15 s). Version 2.6.x runs on Java 17 (3.x
needs Java 21).

Command line (progress on stderr; ``run`` prints the Confluent URL on stdout)::

    python deploy/local/schema_registry_local.py fetch
    python deploy/local/schema_registry_local.py run [--port 8081]

From Python (pytest's ``schema_registry_url`` fixture does this)::

    with LocalSchemaRegistry(log_path) as registry:
        use(registry.url)   # http://127.0.0.1:<port>/apis/ccompat/v7

Environment: ``IMGSWEEP_SCHEMA_REGISTRY_CACHE`` replaces the cache directory (default
``${XDG_CACHE_HOME:-~/.cache}/imgsweep/apicurio-registry-<version>``), ``APICURIO_VERSION`` the version,
``JAVA_HOME`` picks the JVM.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Self

__all__ = ["APICURIO_VERSION", "LocalSchemaRegistry", "RegistryFailedToStart", "cache_dir", "fetch"]

APICURIO_VERSION = os.environ.get("APICURIO_VERSION", "2.6.13.Final")
ARTIFACT = "io.apicurio:apicurio-registry-app:{version}:tar.gz:all"
API_PATH = "/apis/ccompat/v7"
MIN_JAVA = 11 if APICURIO_VERSION.startswith("2.") else 21
FETCH_TIMEOUT_S = 1800.0
START_TIMEOUT_S = 120.0
_FETCH_MARKER = ".fetched"
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


class RegistryError(Exception):
    """The registry could not be fetched or started; the CLI prints it."""


class RegistryFailedToStart(RegistryError):
    """It exited, or did not answer before the deadline; carries the log tail."""


def cache_dir() -> Path:
    override = os.environ.get("IMGSWEEP_SCHEMA_REGISTRY_CACHE")
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "imgsweep" / f"apicurio-registry-{APICURIO_VERSION}"


def _progress(message: str) -> None:
    print(f"schema_registry_local: {message}", file=sys.stderr, flush=True)


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).is_file():
        raise RegistryError(f"java was not found: install a JDK >= {MIN_JAVA} or set JAVA_HOME")
    result = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    major = int(match.group(1)) if match else 0
    if match and major == 1 and match.group(2):
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise RegistryError(f"{java} is Java {major or '?'}; Apicurio Registry {APICURIO_VERSION} needs >= {MIN_JAVA}")
    return java


def _runner(app: Path) -> Path | None:
    """3.x: Quarkus fast-jar (quarkus-run.jar); 2.x: the legacy *-runner.jar."""
    return next(iter([*app.glob("quarkus-run.jar"), *app.glob("*-runner.jar")]), None)


def _is_fetched(cache: Path) -> bool:
    return (cache / _FETCH_MARKER).is_file() and _runner(cache / "app") is not None


def fetch(cache: Path | None = None) -> Path:
    """The unpacked distribution's directory; downloads it with Maven (into ~/.m2) the first time only.

    Safe to run concurrently (a file lock); a no-op, offline, once a fetch completed (the marker is written last).
    """
    cache = cache or cache_dir()
    app = cache / "app"
    if _is_fetched(cache):
        return app
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".fetch.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_fetched(cache):
            return app
        mvn = shutil.which("mvn")
        if mvn is None:
            raise RegistryError("mvn was not found: install Apache Maven >= 3.6 (apt-get install maven)")
        artifact = ARTIFACT.format(version=APICURIO_VERSION)
        _progress(f"fetching {artifact} with Maven into {app} (about 158 MB, once)")
        command = [
            mvn,
            "-q",
            "-B",
            "-Dstyle.color=never",
            "dependency:get",
            f"-Dartifact={artifact}",
            "-Dtransitive=false",
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S, check=False)
        if result.returncode != 0:
            output = _ANSI_ESCAPE.sub("", result.stdout + result.stderr).strip()
            raise RegistryError(f"`{' '.join(command)}` failed with exit code {result.returncode}:\n{output}")
        repository = Path(os.environ.get("MAVEN_REPOSITORY", Path.home() / ".m2" / "repository"))
        archive = (
            repository / "io" / "apicurio" / "apicurio-registry-app" / APICURIO_VERSION
            / f"apicurio-registry-app-{APICURIO_VERSION}-all.tar.gz"
        )  # fmt: skip
        if not archive.is_file():
            raise RegistryError(f"Maven succeeded but {archive} is missing (set MAVEN_REPOSITORY to the local repo)")
        staging = Path(tempfile.mkdtemp(prefix="app.", dir=cache))
        staging.chmod(0o755)
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(staging, filter="data")
            if _runner(staging) is None:
                raise RegistryError(f"{archive} holds no quarkus-run.jar or *-runner.jar")
            shutil.rmtree(app, ignore_errors=True)
            staging.rename(app)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        (cache / _FETCH_MARKER).write_text(APICURIO_VERSION + "\n", encoding="utf-8")
    return app


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/subjects", timeout=2) as response:  # noqa: S310 - our loopback URL
            return bool(response.status == 200)
    except OSError:
        return False


class LocalSchemaRegistry:
    """One Apicurio Registry process on free loopback ports; in-memory storage, so every start is empty."""

    def __init__(self, log_path: Path, *, port: int | None = None, heap: str = "256m") -> None:
        self._log_path, self._port, self._heap = log_path, port, heap
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.url = ""
        self.started_in_seconds = 0.0

    @property
    def port(self) -> int:
        if self._port is None:
            raise RegistryError("not started")
        return self._port

    def start(self) -> str:
        """Starts it and blocks until the Confluent API answers; returns its URL."""
        app = fetch()
        runner = _runner(app)
        if runner is None:
            raise RegistryError(f"{app} holds no runner jar: fetch again")
        java = _java()
        self._port = self._port or _free_port()
        management = _free_port()
        self.url = f"http://127.0.0.1:{self._port}{API_PATH}"
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self._log_path.open("wb")
        began = time.monotonic()
        self._process = subprocess.Popen(
            [
                java, f"-Xmx{self._heap}", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                "-Dquarkus.http.host=127.0.0.1", f"-Dquarkus.http.port={self._port}",
                "-Dquarkus.management.host=127.0.0.1", f"-Dquarkus.management.port={management}",
                "-Dquarkus.http.access-log.enabled=false",
                "-Dapicurio.rest.deletion.artifact.enabled=true",
                "-Dapicurio.rest.deletion.artifact-version.enabled=true",
                "-Dapicurio.rest.deletion.group.enabled=true",
                "-jar", str(runner),
            ],
            cwd=app, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        deadline = began + START_TIMEOUT_S
        while not _answers(self.url):
            if self._process.poll() is not None:
                code = self._process.returncode
                self.stop()
                raise RegistryFailedToStart(f"the registry exited with {code}:\n{self._tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RegistryFailedToStart(
                    f"the registry did not answer within {START_TIMEOUT_S:.0f} s:\n{self._tail()}"
                )
            time.sleep(0.2)
        self.started_in_seconds = time.monotonic() - began
        _progress(f"ready in {self.started_in_seconds:.1f} s at {self.url}")
        return self.url

    def _tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self._log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("fetch", help="download the registry with Maven into the cache (once)")
    run = commands.add_parser("run", help="run a registry in the foreground until Ctrl-C or SIGTERM")
    run.add_argument("--port", type=int, default=8081)
    run.add_argument("--log", type=Path, default=Path(".cache/schema-registry.log"))
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            _progress(f"fetched: {fetch()}")
            return 0
        signal.signal(signal.SIGTERM, _interrupt)
        with LocalSchemaRegistry(args.log, port=args.port) as registry:
            print(registry.url, flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                return 0
    except RegistryError as error:
        _progress(str(error))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
