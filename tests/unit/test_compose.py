"""deploy/compose.yaml, checked as a file (no Docker engine is needed): it is a valid Compose file by the
Compose Specification's JSON Schema, every local file it names exists, every IMGSWEEP_* variable it sets is a
setting imgsweep accepts, and its ports, topics, rules and dashboard are the ones the Helm chart uses by default.

The schema comes from compose-go's Go module at a pinned version (deploy/tools/fetch-schemas.sh puts it in
``${IMGSWEEP_TOOLS_DIR:-~/.cache/imgsweep/tools}/schemas``); without it that one test fails with the hint.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from devkit.__main__ import parser as devkit_parser
from service.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
CHART = REPO / "helm" / "imgsweep"
KAFKA_POM = DEPLOY / "local" / "kafka" / "pom.xml"
TOOLS_DIR = Path(os.environ.get("IMGSWEEP_TOOLS_DIR") or Path.home() / ".cache" / "imgsweep" / "tools")
COMPOSE_SCHEMA = TOOLS_DIR / "schemas" / "compose-spec.json"
IMAGE_SERVICES = ("sandbox", "imgsweep", "sample-producer")
_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}")


def interpolate(value: str) -> str:
    """Compose's ${NAME:-default} with nothing set: the default ($$ is a literal $)."""
    return _INTERPOLATION.sub(lambda m: m.group("default") or "", value).replace("$$", "$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    return loaded


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment as a mapping, so anchors can merge"
    return {name: interpolate(str(value)) for name, value in env.items()}


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """target -> local source, for the volumes that are files of this repository."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("."):
            mounts[target] = (DEPLOY / source).resolve()
    return mounts


def test_compose_file_parses_with_the_expected_services(services: dict[str, dict[str, Any]]) -> None:
    assert {"kafka", "kafka-topics", "sandbox", "imgsweep", "sample-producer", "prometheus", "grafana"} <= set(services)
    for name, service in services.items():
        assert "image" in service, f"{name} names its image"
        assert ":" in service["image"], f"{name}: a pinned tag"
        assert not str(service["image"]).endswith(":latest"), f"{name}: a pinned tag"


def test_compose_file_is_valid_by_the_compose_specification(compose: dict[str, Any]) -> None:
    if not COMPOSE_SCHEMA.is_file():
        pytest.fail(f"{COMPOSE_SCHEMA} is missing: run deploy/tools/fetch-schemas.sh (make does)")
    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []
    broken = {
        **compose,
        "services": {**compose["services"], "grafana": {**compose["services"]["grafana"], "volumez": []}},
    }
    assert not validator.is_valid(broken), "the schema rejects an unknown key"


def test_every_local_file_exists(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if "build" in service:
            context = (DEPLOY / service["build"]["context"]).resolve()
            assert (context / service["build"].get("dockerfile", "Dockerfile")).is_file(), name
        for target, source in bind_mounts(service).items():
            assert source.exists(), f"{name}: {source} (mounted at {target}) is missing"


def test_imgsweep_image_services_build_the_dockerfile_and_run_hardened(services: dict[str, dict[str, Any]]) -> None:
    for name in IMAGE_SERVICES:
        service = services[name]
        assert (DEPLOY / service["build"]["context"]).resolve() == REPO
        assert service["read_only"] is True, name
        uid, _, gid = service["user"].partition(":")
        assert uid.isdigit(), name
        assert int(uid) != 0, name
        assert gid.isdigit(), name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert any(t.split(":")[0] == "/tmp" for t in service["tmpfs"]), name  # noqa: S108 - the container's


@pytest.mark.parametrize("name", IMAGE_SERVICES)
def test_environment_is_configuration_imgsweep_accepts(
    name: str, services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for variable in list(os.environ):
        if variable.upper().startswith("IMGSWEEP_"):
            monkeypatch.delenv(variable)
    monkeypatch.setenv("IMGSWEEP_SECRETS_DIR", str(tmp_path))  # nothing from a developer's real secrets dir
    env = environment(services[name])
    assert all(variable.startswith("IMGSWEEP_") for variable in env), "only imgsweep's settings"
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    settings = load_settings()  # raises ConfigError naming any unknown or invalid setting
    if services[name]["command"][0] == "run":
        settings.require_credentials()


def test_ports_and_topics_are_the_charts_defaults(services: dict[str, dict[str, Any]], values: dict[str, Any]) -> None:
    env = environment(services["imgsweep"])
    port = values["http"]["port"]
    assert int(env["IMGSWEEP_HTTP__PORT"]) == port
    assert f"127.0.0.1:{port}:{port}" in services["imgsweep"]["ports"]
    kafka = values["kafka"]
    assert env["IMGSWEEP_KAFKA__BOOTSTRAP_SERVERS"] == kafka["bootstrapServers"]
    assert env["IMGSWEEP_KAFKA__GROUP_ID"] == kafka["groupId"]
    topics = [kafka["inputTopic"], kafka["outcomeTopic"], kafka["dlqTopic"]]
    assert [env[f"IMGSWEEP_KAFKA__{k}_TOPIC"] for k in ("INPUT", "OUTCOME", "DLQ")] == topics
    assert environment(services["sample-producer"])["IMGSWEEP_KAFKA__INPUT_TOPIC"] == kafka["inputTopic"]

    script = " ".join(services["kafka-topics"]["command"])
    created = re.search(r"for topic in (.+?); do", script)
    assert created is not None
    assert created.group(1).split() == topics, "kafka-topics creates exactly those topics"

    shutdown = float(env["IMGSWEEP_SHUTDOWN_GRACE_SECONDS"])
    assert shutdown == values["shutdownGraceSeconds"]
    assert (
        int(services["imgsweep"]["stop_grace_period"].removesuffix("s"))
        == shutdown + values["terminationGraceMarginSeconds"]
    )


def test_imgsweep_calls_the_sandbox_it_starts(services: dict[str, dict[str, Any]]) -> None:
    command = services["sandbox"]["command"]
    assert command[:1] == ["sandbox"]
    assert command[command.index("--host") + 1] == "0.0.0.0"  # noqa: S104 - inside its container, for the stack
    sandbox_port = command[command.index("--port") + 1]
    env = environment(services["imgsweep"])
    assert env["IMGSWEEP_API__ENDPOINT"] == f"http://sandbox:{sandbox_port}/jdai/product_image_del_image"
    sandbox_env = environment(services["sandbox"])
    for key in ("IMGSWEEP_API__ACCESS_KEY", "IMGSWEEP_API__SECRET_KEY"):
        assert env[key] == sandbox_env[key], "both sides of the demo account agree"
    assert env["IMGSWEEP_DRY_RUN"] == "false"
    assert f"http://sandbox:{sandbox_port}" in services["sample-producer"]["command"]


def test_sample_producer_runs_the_checkouts_devkit(services: dict[str, dict[str, Any]]) -> None:
    """The sample generator is not in the image: the checkout's devkit/ is mounted and its CLI takes the command."""
    producer = services["sample-producer"]
    assert producer["entrypoint"] == ["python", "-m", "devkit"]
    assert bind_mounts(producer)[f"{producer['working_dir']}/devkit"] == REPO / "devkit"
    assert all(volume.endswith(":ro") for volume in producer["volumes"])
    args = devkit_parser().parse_args(producer["command"])
    assert args.command == "produce-sample"
    assert args.yes, "the stack's own input topic, asked for: produce-sample refuses it otherwise"


def test_published_ports_are_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port} (the sandbox's admin API has no auth)"


def test_kafka_is_the_version_the_tests_run(services: dict[str, dict[str, Any]]) -> None:
    match = re.search(r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>", KAFKA_POM.read_text(encoding="utf-8"))
    assert match is not None
    for name in ("kafka", "kafka-topics"):
        assert services[name]["image"] == f"apache/kafka:{match.group(1)}"
    env = services["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller", "KRaft, one node"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]


def test_prometheus_scrapes_imgsweep_with_the_repository_rules(services: dict[str, dict[str, Any]]) -> None:
    mounts = bind_mounts(services["prometheus"])
    config_path = mounts["/etc/prometheus/prometheus.yml"]
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    for rule_file in config["rule_files"]:
        target = str(Path("/etc/prometheus") / rule_file)
        assert mounts[target] == (DEPLOY / "prometheus" / "imgsweep-rules.yaml").resolve()
        assert (config_path.parent / rule_file).resolve() == mounts[target], "promtool check config works locally"
    # The chart renders the same rules with its defaults (tests/integration/test_helm_chart.py checks it).

    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "imgsweep"]
    (static,) = job["static_configs"]
    port = environment(services["imgsweep"])["IMGSWEEP_HTTP__PORT"]
    assert static["targets"] == [f"imgsweep:{port}"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert "namespace" in static["labels"], "rules and dashboard aggregate by (namespace, job)"


def test_grafana_provisions_the_repository_dashboard(services: dict[str, dict[str, Any]]) -> None:
    mounts = bind_mounts(services["grafana"])
    dashboards = yaml.safe_load(
        (mounts["/etc/grafana/provisioning/dashboards"] / "imgsweep.yaml").read_text(encoding="utf-8")
    )
    (provider,) = dashboards["providers"]
    folder = provider["options"]["path"]
    (dashboard_target,) = [t for t in mounts if t.startswith(folder + "/")]
    assert mounts[dashboard_target] == (DEPLOY / "grafana" / "imgsweep-dashboard.json").resolve()
    assert mounts[dashboard_target] == (CHART / "files" / "imgsweep-dashboard.json").resolve(), "the chart's file"
    assert environment(services["grafana"])["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == dashboard_target

    datasources = yaml.safe_load(
        (mounts["/etc/grafana/provisioning/datasources"] / "prometheus.yaml").read_text(encoding="utf-8")
    )
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus"
    assert source["isDefault"] is True
    assert source["url"] == "http://prometheus:9090"
    dashboard = json.loads(mounts[dashboard_target].read_text(encoding="utf-8"))
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == source["type"], "the dashboard's data source variable finds it"


def test_healthchecks_use_the_health_endpoints(services: dict[str, dict[str, Any]]) -> None:
    port = environment(services["imgsweep"])["IMGSWEEP_HTTP__PORT"]
    assert f"127.0.0.1:{port}/readyz" in " ".join(services["imgsweep"]["healthcheck"]["test"])
    assert "/healthz" in " ".join(services["sandbox"]["healthcheck"]["test"])
    assert shlex.split(services["kafka"]["healthcheck"]["test"][1])[0].endswith("kafka-broker-api-versions.sh")
