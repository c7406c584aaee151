"""The Helm chart (helm/imgsweep): lint, render, validate, and the promises its objects make.

Rendering uses the pinned helm (deploy/tools/install-helm.sh). Core objects are validated with
kubernetes-validate --strict for the oldest Kubernetes the chart supports and the newest; the custom resources
(ServiceMonitor, PodMonitor, PrometheusRule, ScaledObject) against the openAPIV3Schema of their CRDs at pinned
prometheus-operator and KEDA versions (deploy/tools/fetch-schemas.sh), made strict so that a misspelt field,
which the API server would silently prune, fails here. A missing tool fails the tests with an install hint.

Five sets of values are rendered: the defaults, ci/all-on-values.yaml (every option that can coexist),
ci/alternatives-values.yaml (the other side of each mutually exclusive pair), ci/accounts-values.yaml (several JD
accounts instead of the one default account) and the documented Kafka mTLS example,
examples/strimzi-mtls-values.yaml, which is also started as a pod would be (its mounted certificates, made with
openssl, loaded by librdkafka).
"""

from __future__ import annotations

import base64
import copy
import json
import os
import shutil
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from service.internal_topics import CONTROL_TOPIC_CONFIG, DEMAND_TOPIC_CONFIG
from service.kafka_preflight import check_librdkafka_config
from service.settings import DRY_RUN_SUFFIX, ApiSettings, BatchSettings, ConfigError, Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "imgsweep"
RULES = REPO / "deploy" / "prometheus" / "imgsweep-rules.yaml"
DASHBOARD = REPO / "deploy" / "grafana" / "imgsweep-dashboard.json"
TOOLS_DIR = Path(os.environ.get("IMGSWEEP_TOOLS_DIR") or Path.home() / ".cache" / "imgsweep" / "tools")
SCHEMAS_DIR = TOOLS_DIR / "schemas"
RELEASE = "imgsweep"
NAMESPACE = "catalog"
# The oldest Kubernetes Chart.yaml's kubeVersion admits, and the one helm v3.22 is built against.
K8S_VERSIONS = ("1.25.0", "1.37.0")
CORE_KINDS = {
    "ConfigMap",
    "Deployment",
    "HorizontalPodAutoscaler",
    "NetworkPolicy",
    "PodDisruptionBudget",
    "Secret",
    "Service",
    "ServiceAccount",
}
CRD_FILES = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitors.yaml",
    ("monitoring.coreos.com/v1", "PodMonitor"): "monitoring.coreos.com_podmonitors.yaml",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_prometheusrules.yaml",
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobjects.yaml",
}
VALUE_SETS = {
    "defaults": (),
    "all-on": ("-f", str(CHART / "ci" / "all-on-values.yaml")),
    "alternatives": ("-f", str(CHART / "ci" / "alternatives-values.yaml")),
    "accounts": ("-f", str(CHART / "ci" / "accounts-values.yaml")),
    "strimzi-mtls": ("-f", str(CHART / "examples" / "strimzi-mtls-values.yaml")),
}
SCHEMA_ERROR = "values don't meet the specifications of the schema"
COMMAND_TIMEOUT_S = 60.0

Object = dict[str, Any]


# ---- tools -------------------------------------------------------------------------------------------------------


def find_tool(name: str, hint: str) -> str:
    """A tool from the project's tools directory, the virtual environment running the tests, or PATH."""
    for directory in (TOOLS_DIR / "bin", Path(sys.executable).parent):
        candidate = directory / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found in {TOOLS_DIR / 'bin'}, {Path(sys.executable).parent} or PATH: {hint}")
    return found


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    binary = find_tool("helm", "run deploy/tools/install-helm.sh (make does)")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False)


@cache
def render(*args: str, chart: Path = CHART) -> tuple[Object, ...]:
    result = helm("template", RELEASE, str(chart), "--namespace", NAMESPACE, *args)
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render_failure(*args: str) -> str:
    result = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args)
    assert result.returncode != 0, "rendering should have failed"
    return result.stderr


def one(objects: tuple[Object, ...], kind: str) -> Object:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def kinds(objects: tuple[Object, ...]) -> set[str]:
    return {o["kind"] for o in objects}


def container(objects: tuple[Object, ...]) -> Object:
    (main,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(main)


def settings_configmap(objects: tuple[Object, ...]) -> Object:
    (configmap,) = [
        o for o in objects if o["kind"] == "ConfigMap" and "grafana_dashboard" not in o["metadata"]["labels"]
    ]
    return dict(configmap)


@pytest.fixture(params=sorted(VALUE_SETS))
def objects(request: pytest.FixtureRequest) -> tuple[Object, ...]:
    return render(*VALUE_SETS[request.param])


# ---- lint and schema validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_helm_lint_strict(value_set: str) -> None:
    result = helm("lint", "--strict", str(CHART), *VALUE_SETS[value_set])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout, result.stdout
    assert "[ERROR]" not in result.stdout, result.stdout


@pytest.mark.parametrize("k8s_version", K8S_VERSIONS)
def test_core_objects_pass_kubernetes_validate_strict(
    objects: tuple[Object, ...], k8s_version: str, tmp_path: Path
) -> None:
    unvalidated = kinds(objects) - CORE_KINDS - {kind for _, kind in CRD_FILES}
    assert not unvalidated, f"no schema checks {unvalidated}: add them to CORE_KINDS or CRD_FILES"
    core = [o for o in objects if o["kind"] in CORE_KINDS]
    manifest = tmp_path / "core.yaml"
    manifest.write_text(yaml.safe_dump_all(core), encoding="utf-8")
    validator = find_tool("kubernetes-validate", "pip install kubernetes-validate (the project's dev dependencies)")
    result = subprocess.run(
        [validator, "--strict", "--kubernetes-version", k8s_version, str(manifest)],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert output.count(" passed ") == len(core), output
    assert "WARN" not in output, output
    assert "ERROR" not in output, output


def _strict(schema: Any) -> Any:
    """An openAPIV3Schema that also rejects fields it does not declare (the API server would prune them)."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: _strict(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        strict["additionalProperties"] = False
    if "properties" in schema:  # property names are data here, not schema keywords
        strict["properties"] = {name: _strict(value) for name, value in schema["properties"].items()}
    return strict


@cache
def crd_validator(api_version: str, kind: str) -> jsonschema.Draft4Validator:
    path = SCHEMAS_DIR / CRD_FILES[(api_version, kind)]
    if not path.is_file():
        pytest.fail(f"{path} is missing: run deploy/tools/fetch-schemas.sh (make does)")
    crd = yaml.safe_load(path.read_text(encoding="utf-8"))
    group, _, version = api_version.partition("/")
    assert crd["spec"]["group"] == group
    assert crd["spec"]["names"]["kind"] == kind
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version and v["served"]]
    # OpenAPI v3.0 schemas are draft-4 JSON Schema plus vendor extensions, which validators ignore.
    return jsonschema.Draft4Validator(_strict(served["schema"]["openAPIV3Schema"]))


def crd_errors(obj: Object) -> list[str]:
    validator = crd_validator(obj["apiVersion"], obj["kind"])
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]


def test_custom_resources_match_their_crds(objects: tuple[Object, ...]) -> None:
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) in CRD_FILES:
            assert crd_errors(obj) == [], f"{obj['kind']} {obj['metadata']['name']}"


def test_every_custom_resource_is_rendered_by_some_value_set() -> None:
    rendered = set().union(*(kinds(render(*args)) for args in VALUE_SETS.values()))
    assert {kind for _, kind in CRD_FILES} <= rendered
    assert {"HorizontalPodAutoscaler", "Secret", "PodDisruptionBudget"} <= rendered


def test_crd_validation_rejects_a_misspelt_field() -> None:
    monitor = copy.deepcopy(one(render(*VALUE_SETS["all-on"]), "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["scrapeInterval"] = "30s"  # the field is `interval`
    assert any("scrapeInterval" in error for error in crd_errors(monitor))


def _values_validator() -> jsonschema.Draft7Validator:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_values_files_satisfy_the_values_schema() -> None:
    validator = _values_validator()
    defaults = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    validator.validate(defaults)
    for args in VALUE_SETS.values():
        if args:
            merged = copy.deepcopy(defaults)
            _merge(merged, yaml.safe_load(Path(args[1]).read_text(encoding="utf-8")))
            validator.validate(merged)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> None:
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


@pytest.mark.parametrize(
    ("args", "where"),
    [
        (("--set", "api.qps=fast"), "/api/qps"),
        (("--set", "batch.maxItems=500"), "/batch/maxItems"),
        (("--set", "replicas=-1"), "/replicas"),
        (("--set", "http.port=80"), "/http/port"),
        (("--set", "kafka.inputTopic=no spaces allowed"), "/kafka/inputTopic"),
        (("--set", "kafka.bootstrapServers=kafka"), "/kafka/bootstrapServers"),
        (("--set", "log.format=xml"), "/log/format"),
        (("--set", "shutdownGraceSeconds=0"), "/shutdownGraceSeconds"),
        (("--set-json", 'kafka.properties={"enable.auto.commit":"true"}'), "/kafka/properties/enable.auto.commit"),
        (("--set-json", 'kafka.properties={"sasl.password":"hunter2"}'), "/kafka/properties/sasl.password"),
        (("--set-json", 'extraConfig={"IMGSWEEP_API__SECRET_KEY":"x"}'), "/extraConfig/IMGSWEEP_API__SECRET_KEY"),
        (("--set-json", 'kafka.properties={"linger.ms":5}'), "/kafka/properties/linger.ms"),
        (("--set", "replica=3"), "'replica' not allowed"),
        (("--set", "api.dailyCalls=0"), "0 calls a day would never delete anything"),
        (("--set", "api.dailyCalls=-2"), "/api/dailyCalls"),
        (("--set", "api.allowance=monthly"), "/api/allowance"),
        (("--set", "api.reserveCalls=-1"), "/api/reserveCalls"),
        (("--set-json", "api.reserveFraction=1"), "/api/reserveFraction"),
        (("--set-json", "api.reserveFraction=-0.1"), "/api/reserveFraction"),
        (("--set-json", "api.pricePerCall=0"), "/api/pricePerCall"),
        (("--set-json", "api.pricePerCall=0.002"), "'dailySpendLimit' required"),
        (("--set-json", "api.dailySpendLimit=5"), "'pricePerCall' required"),
        (("--set-json", "api.pricePerCall=0.002", "--set-json", "api.dailySpendLimit=5"), "/api/allowance"),
        (("--set", "api.quotaResetZone=China Standard Time"), "/api/quotaResetZone"),
        (("--set", "batch.maxWaitSeconds=90000"), "/batch/maxWaitSeconds"),
        (("--set-json", 'accounts=[{"name": "Shoes", "collections": ["shoes"]}]'), "/accounts/0/name"),
        (("--set-json", f'accounts=[{{"name": "{"a" * 33}", "collections": ["shoes"]}}]'), "/accounts/0/name"),
        (("--set-json", 'accounts=[{"name": "shoes.eu", "collections": ["shoes"]}]'), "/accounts/0/name"),
        (("--set-json", 'accounts=[{"name": "shoes_", "collections": ["shoes"]}]'), "/accounts/0/name"),
        (("--set-json", 'accounts=[{"name": "a__b", "collections": ["shoes"]}]'), "/accounts/0/name"),
        (("--set-json", 'accounts=[{"name": "shoes"}]'), "/accounts/0"),
        (("--set-json", 'accounts=[{"name": "shoes", "collections": []}]'), "/accounts/0/collections"),
        (("--set-json", 'accounts=[{"name": "shoes", "collections": ["*", "bags"]}]'), "/accounts/0/collections"),
        (("--set-json", 'accounts=[{"name": "shoes", "collections": ["a", "a"]}]'), "/accounts/0/collections"),
        (
            ("--set-json", 'accounts=[{"name": "shoes", "collections": ["a"], "dailyCalls": 0}]'),
            "/accounts/0/dailyCalls",
        ),
        (("--set-json", 'accounts=[{"name": "s", "collections": ["a"], "qps": 2000}]'), "/accounts/0/qps"),
        (("--set-json", 'accounts=[{"name": "s", "collections": ["a"], "accessKey": "k"}]'), "'accessKey' not allowed"),
        (("--set-json", 'secrets.accounts={"Shoes": {"accessKey": "k"}}'), "/secrets/accounts"),
        (("--set-json", 'extraConfig={"IMGSWEEP_ACCOUNTS__SHOES__QPS": "3"}'), "set by the accounts value"),
        (("--set", "minReadySeconds=-1"), "/minReadySeconds"),
        (("--set", "nodeSpread.whenUnsatisfiable=Maybe"), "/nodeSpread/whenUnsatisfiable"),
        (("--set-json", "networkPolicy.kafka.ports=[0]"), "/networkPolicy/kafka/ports/0"),
        (("--set-json", "networkPolicy.dns.to=[]"), "/networkPolicy/dns/to"),
        (("--set", "runbookBaseUrl=docs/runbooks.md#fatal"), "/runbookBaseUrl"),
        (("--set", "runbookBaseUrl=ftp://docs.example.com/runbooks.md"), "/runbookBaseUrl"),
        (("--set", "prometheusRule.alerts.ImgsweepNope.enabled=false"), "'ImgsweepNope' not allowed"),
        (("--set", "prometheusRule.alerts.ImgsweepDown.for=5 minutes"), "/prometheusRule/alerts/ImgsweepDown/for"),
        (("--set", "prometheusRule.alerts.ImgsweepDown.severity=page"), "/prometheusRule/alerts/ImgsweepDown/severity"),
        (("--set", "prometheusRule.alerts.ImgsweepDown.ratio=0.1"), "'ratio' not allowed"),
        (
            ("--set-json", "prometheusRule.alerts.ImgsweepQuotaLow.remainingFraction=1.5"),
            "/prometheusRule/alerts/ImgsweepQuotaLow/remainingFraction",
        ),
        (
            ("--set", "prometheusRule.alerts.ImgsweepImageFailureRatioHigh.minImages=0"),
            "/prometheusRule/alerts/ImgsweepImageFailureRatioHigh/minImages",
        ),
    ],
)
def test_values_schema_rejects_bad_values(args: tuple[str, ...], where: str) -> None:
    error = render_failure(*args)
    assert SCHEMA_ERROR in error
    assert where in error, error


# ---- what the objects promise ---------------------------------------------------------------------------------------


def test_probes_service_monitors_and_setting_use_one_port(objects: tuple[Object, ...]) -> None:
    main = container(objects)
    (port,) = main["ports"]
    assert port["name"] == "http"
    assert port["containerPort"] == int(settings_configmap(objects)["data"]["IMGSWEEP_HTTP__PORT"])
    assert main["startupProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert main["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}

    (service_port,) = one(objects, "Service")["spec"]["ports"]
    assert service_port["targetPort"] == port["name"]
    for monitor in (o for o in objects if o["kind"] == "ServiceMonitor"):
        assert [e["port"] for e in monitor["spec"]["endpoints"]] == [service_port["name"]]
        assert [e["path"] for e in monitor["spec"]["endpoints"]] == ["/metrics"]
    for monitor in (o for o in objects if o["kind"] == "PodMonitor"):
        assert [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]] == [port["name"]]
        assert [e["path"] for e in monitor["spec"]["podMetricsEndpoints"]] == ["/metrics"]


def test_monitors_select_this_release_and_carry_extra_labels() -> None:
    for value_set, kind in (("all-on", "ServiceMonitor"), ("alternatives", "PodMonitor")):
        objects = render(*VALUE_SETS[value_set])
        monitor = one(objects, kind)
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        selector = monitor["spec"]["selector"]["matchLabels"]
        target = one(objects, "Service") if kind == "ServiceMonitor" else one(objects, "Deployment")["spec"]["template"]
        assert selector.items() <= target["metadata"]["labels"].items()
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}


def test_termination_grace_exceeds_the_shutdown_grace(objects: tuple[Object, ...]) -> None:
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    grace = float(settings_configmap(objects)["data"]["IMGSWEEP_SHUTDOWN_GRACE_SECONDS"])
    assert pod["terminationGracePeriodSeconds"] > grace + 5


def test_shutdown_grace_value_sets_both_the_setting_and_the_pod_grace() -> None:
    objects = render("--set", "shutdownGraceSeconds=300")
    assert settings_configmap(objects)["data"]["IMGSWEEP_SHUTDOWN_GRACE_SECONDS"] == "300"
    assert one(objects, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 315


def test_security_context_is_restricted(objects: tuple[Object, ...]) -> None:
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not {"hostNetwork", "hostPID", "hostIPC"} & pod.keys()
    main = container(objects)
    context = main["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["runAsNonRoot"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context.get("privileged", False) is False
    volumes = {v["name"]: v for v in pod["volumes"]}
    # The volume types the Restricted Pod Security Standard allows (extraVolumes may add any of them): no hostPath.
    restricted = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected"}
    assert all(set(v) <= {"name", "secret", *restricted} for v in volumes.values()), "no hostPath or other volumes"
    mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]  # noqa: S108 - the pod's /tmp, not this machine's
    for account in (o for o in objects if o["kind"] == "ServiceAccount"):
        assert account["automountServiceAccountToken"] is False


def test_every_object_carries_the_standard_labels(objects: tuple[Object, ...]) -> None:
    expected = {
        "app.kubernetes.io/name": "imgsweep",
        "app.kubernetes.io/instance": RELEASE,
        "app.kubernetes.io/managed-by": "Helm",
        "app.kubernetes.io/part-of": "imgsweep",
    }
    for obj in objects:
        labels = obj["metadata"]["labels"]
        assert expected.items() <= labels.items(), f"{obj['kind']} {obj['metadata']['name']}"
        assert labels["app.kubernetes.io/version"]
    template_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert expected.items() <= template_labels.items()


def test_chart_app_version_is_the_project_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == project["version"]


# ---- configuration and secrets ----------------------------------------------------------------------------------


def secret_files(objects: tuple[Object, ...]) -> dict[str, str]:
    secrets = [o for o in objects if o["kind"] == "Secret"]
    return {k: base64.b64decode(v).decode() for s in secrets for k, v in s.get("data", {}).items()}


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.upper().startswith("IMGSWEEP_"):
            monkeypatch.delenv(name)
    return monkeypatch


def load_as_pod(objects: tuple[Object, ...], monkeypatch: pytest.MonkeyPatch, secrets_dir: Path) -> Settings:
    """service.settings.load_settings with the ConfigMap as the environment and the Secret as files."""
    secrets_dir.mkdir()
    for name, value in secret_files(objects).items():
        (secrets_dir / name).write_text(value, encoding="utf-8")
    for name, value in settings_configmap(objects)["data"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("IMGSWEEP_SECRETS_DIR", str(secrets_dir))
    return load_settings()


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_configmap_is_configuration_imgsweep_accepts(
    value_set: str, clean_environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    objects = render(*VALUE_SETS[value_set])
    data = settings_configmap(objects)["data"]
    assert all(name.startswith("IMGSWEEP_") for name in data)
    assert "IMGSWEEP_SECRETS_DIR" not in data, "set by the Deployment where the Secret is mounted"
    settings = load_as_pod(objects, clean_environment, tmp_path / "secrets")  # raises ConfigError if not

    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    if len(VALUE_SETS[value_set]) == 2:
        _merge(values, yaml.safe_load(Path(VALUE_SETS[value_set][1]).read_text(encoding="utf-8")))
    assert settings.kafka.bootstrap_servers == values["kafka"]["bootstrapServers"]
    dry_run_form = DRY_RUN_SUFFIX if values["dryRun"] else ""  # a dry run uses its own group, never the live one
    assert settings.kafka.group_id == values["kafka"]["groupId"] + dry_run_form
    assert settings.kafka.outcome_topic == values["kafka"]["outcomeTopic"] + dry_run_form
    assert settings.kafka.input_topic == values["kafka"]["inputTopic"]
    assert settings.kafka.properties == {k: str(v) for k, v in values["kafka"]["properties"].items()}
    assert settings.api.qps == values["api"]["qps"]
    assert settings.batch.max_items == values["batch"]["maxItems"]
    assert settings.batch.max_bytes == values["batch"]["maxBytes"]
    assert settings.http.port == values["http"]["port"]
    assert settings.dry_run is values["dryRun"]
    assert settings.shutdown_grace_seconds == values["shutdownGraceSeconds"]
    if secret_files(objects):
        settings.require_credentials()
        assert settings.kafka.sasl_password is not None


def test_chart_secret_keys_are_the_variable_names_and_are_mounted() -> None:
    objects = render(*VALUE_SETS["all-on"])
    assert secret_files(objects) == {
        "IMGSWEEP_API__ACCESS_KEY": "test-access-key-not-real",
        "IMGSWEEP_API__SECRET_KEY": "test-secret-key-not-real",
        "IMGSWEEP_KAFKA__SASL_PASSWORD": "test-sasl-password-not-real",
    }
    _assert_mounts_secret(objects, "imgsweep")  # the release is called imgsweep, so is the chart's Secret


def _assert_mounts_secret(objects: tuple[Object, ...], secret_name: str) -> None:
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == secret_name
    main = container(objects)
    (mount,) = [m for m in main["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["mountPath"] == "/var/run/secrets/imgsweep"
    assert mount["readOnly"] is True
    assert {"name": "IMGSWEEP_SECRETS_DIR", "value": mount["mountPath"]} in main["env"]


def test_existing_secret_suppresses_the_chart_secret_and_is_mounted() -> None:
    objects = render("--set", "dryRun=false", "--set", "existingSecret=imgsweep-keys")
    assert "Secret" not in kinds(objects)
    _assert_mounts_secret(objects, "imgsweep-keys")
    annotations = one(objects, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/secret" not in annotations


def test_dry_run_defaults_need_no_secret() -> None:
    objects = render()
    assert settings_configmap(objects)["data"]["IMGSWEEP_DRY_RUN"] == "true"
    assert "Secret" not in kinds(objects)
    assert all("secret" not in v for v in one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"])


def test_turning_dry_run_off_without_keys_fails_with_what_to_set() -> None:
    error = render_failure("--set", "dryRun=false")
    assert "secrets.apiAccessKey and secrets.apiSecretKey, or existingSecret" in error


def test_existing_secret_and_chart_secrets_together_fail() -> None:
    error = render_failure("--set", "existingSecret=keys", "--set", "secrets.apiAccessKey=a")
    assert "existingSecret (keys) and secrets.* are both set" in error


def _checksum(*args: str) -> str:
    annotations = one(render(*args), "Deployment")["spec"]["template"]["metadata"]["annotations"]
    checksum: str = annotations["checksum/config"]
    return checksum


def test_configmap_change_changes_the_checksum_that_rolls_pods() -> None:
    default = _checksum()
    assert _checksum("--set", "api.qps=3") != default
    assert _checksum("--set-json", 'extraConfig={"IMGSWEEP_API__MAX_ATTEMPTS":"3"}') != default
    assert _checksum("--set", "replicas=5") == default, "only configuration changes roll pods"


def test_secret_change_changes_its_checksum() -> None:
    keys = ("--set", "dryRun=false", "--set", "secrets.apiAccessKey=a")

    def secret_checksum(secret_key: str) -> str:
        objects = render(*keys, "--set", f"secrets.apiSecretKey={secret_key}")
        annotation: str = one(objects, "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/secret"]
        return annotation

    assert secret_checksum("one") != secret_checksum("two")


# ---- the call budget and several accounts ---------------------------------------------------------------------------

ACCOUNTS = VALUE_SETS["accounts"]
ACCOUNT_KEYS = {
    "IMGSWEEP_ACCOUNTS__SHOES__ACCESS_KEY": "test-shoes-access-key-not-real",
    "IMGSWEEP_ACCOUNTS__SHOES__SECRET_KEY": "test-shoes-secret-key-not-real",
    "IMGSWEEP_ACCOUNTS__BAGS-2__ACCESS_KEY": "test-bags-access-key-not-real",
    "IMGSWEEP_ACCOUNTS__BAGS-2__SECRET_KEY": "test-bags-secret-key-not-real",
    "IMGSWEEP_ACCOUNTS__REST__ACCESS_KEY": "test-rest-access-key-not-real",
    "IMGSWEEP_ACCOUNTS__REST__SECRET_KEY": "test-rest-secret-key-not-real",
}
BUDGET_FIELDS = ("allowance", "daily_calls", "reserve_calls", "reserve_fraction", "price_per_call", "daily_spend_limit")


def test_budget_values_reach_the_configmap_and_imgsweep(clean_environment: pytest.MonkeyPatch, tmp_path: Path) -> None:
    objects = render(*VALUE_SETS["all-on"])
    data = settings_configmap(objects)["data"]
    assert {name: value for name, value in data.items() if name in BUDGET_VARIABLES} == {
        "IMGSWEEP_API__ALLOWANCE": "pack",
        "IMGSWEEP_API__DAILY_CALLS": "2000",
        "IMGSWEEP_API__RESERVE_CALLS": "50",
        "IMGSWEEP_API__RESERVE_FRACTION": "0.05",
        "IMGSWEEP_API__PRICE_PER_CALL": "0.002",
        "IMGSWEEP_API__DAILY_SPEND_LIMIT": "3.5",
        "IMGSWEEP_API__QUOTA_RESET_ZONE": "Asia/Shanghai",
        "IMGSWEEP_BATCH__MAX_WAIT_SECONDS": "1800",
    }
    settings = load_as_pod(objects, clean_environment, tmp_path / "secrets")
    api = settings.api
    assert (api.allowance, api.daily_calls, api.reserve_calls) == ("pack", 2000, 50)
    assert (api.reserve_fraction, api.price_per_call, api.daily_spend_limit) == (0.05, 0.002, 3.5)
    assert str(api.quota_reset_zone) == "Asia/Shanghai"
    assert settings.batch.max_wait_seconds == 1800


BUDGET_VARIABLES = {
    "IMGSWEEP_API__ALLOWANCE",
    "IMGSWEEP_API__DAILY_CALLS",
    "IMGSWEEP_API__RESERVE_CALLS",
    "IMGSWEEP_API__RESERVE_FRACTION",
    "IMGSWEEP_API__PRICE_PER_CALL",
    "IMGSWEEP_API__DAILY_SPEND_LIMIT",
    "IMGSWEEP_API__QUOTA_RESET_ZONE",
    "IMGSWEEP_BATCH__MAX_WAIT_SECONDS",
}


def test_the_chart_s_budget_defaults_are_imgsweep_s(clean_environment: pytest.MonkeyPatch, tmp_path: Path) -> None:
    objects = render()
    data = settings_configmap(objects)["data"]
    assert data["IMGSWEEP_API__DAILY_CALLS"] == "500"
    assert data["IMGSWEEP_API__RESERVE_FRACTION"] == "0.1"
    assert "IMGSWEEP_API__PRICE_PER_CALL" not in data, "no spending limit unless set"
    assert not any(name.startswith("IMGSWEEP_ACCOUNTS__") for name in data), "one default account by default"
    settings = load_as_pod(objects, clean_environment, tmp_path / "secrets")
    for field in BUDGET_FIELDS:
        assert getattr(settings.api, field) == getattr(ApiSettings(), field), field
    assert settings.api.quota_reset_zone.utcoffset(None) == ApiSettings().quota_reset_zone.utcoffset(None)
    assert settings.batch.max_wait_seconds == BatchSettings().max_wait_seconds
    (account,) = settings.api_accounts()
    assert (account.name, account.collections) == ("default", ("*",))


def test_budget_values_an_older_release_lacks_leave_imgsweep_s_defaults() -> None:
    """helm upgrade --reuse-values keeps the old release's values, without the new chart's defaults."""
    missing = [f"api.{name}=null" for name in ("allowance", "dailyCalls", "reserveCalls", "reserveFraction")]
    objects = render(*(arg for value in [*missing, "api.quotaResetZone=null", "batch.maxWaitSeconds=null"]
                       for arg in ("--set", value)))  # fmt: skip
    assert not BUDGET_VARIABLES & settings_configmap(objects)["data"].keys()


def test_accounts_render_into_the_configmap_and_their_keys_only_into_the_secret(
    clean_environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    objects = render(*ACCOUNTS)
    data = settings_configmap(objects)["data"]
    assert {name: value for name, value in data.items() if name.startswith("IMGSWEEP_ACCOUNTS__")} == {
        "IMGSWEEP_ACCOUNTS__SHOES__COLLECTIONS": '["shoes","sneakers"]',
        "IMGSWEEP_ACCOUNTS__SHOES__ENDPOINT": "https://aiapi.jdcloud.com/jdai/product_image_del_image",
        "IMGSWEEP_ACCOUNTS__SHOES__REGION": "cn-north-1",
        "IMGSWEEP_ACCOUNTS__SHOES__QPS": "5",
        "IMGSWEEP_ACCOUNTS__SHOES__WORKERS": "8",
        "IMGSWEEP_ACCOUNTS__SHOES__DAILY_CALLS": "1000",
        "IMGSWEEP_ACCOUNTS__SHOES__RESERVE_CALLS": "100",
        "IMGSWEEP_ACCOUNTS__SHOES__RESERVE_FRACTION": "0.05",
        "IMGSWEEP_ACCOUNTS__BAGS-2__COLLECTIONS": '["bags"]',
        "IMGSWEEP_ACCOUNTS__BAGS-2__ALLOWANCE": "pack",
        "IMGSWEEP_ACCOUNTS__BAGS-2__DAILY_CALLS": "-1",
        "IMGSWEEP_ACCOUNTS__BAGS-2__PRICE_PER_CALL": "0.002",
        "IMGSWEEP_ACCOUNTS__BAGS-2__DAILY_SPEND_LIMIT": "10",
        "IMGSWEEP_ACCOUNTS__REST__COLLECTIONS": '["*"]',
    }
    assert secret_files(objects) == {**ACCOUNT_KEYS, "IMGSWEEP_KAFKA__SASL_PASSWORD": "test-sasl-password-not-real"}
    _assert_mounts_secret(objects, "imgsweep")
    # The keys are nowhere but in the Secret: not in the ConfigMap, the pod's env or any other object.
    elsewhere = json.dumps([o for o in objects if o["kind"] != "Secret"])
    for name, key in ACCOUNT_KEYS.items():
        assert key not in elsewhere
        assert name not in elsewhere
    assert "IMGSWEEP_API__ACCESS_KEY" not in secret_files(objects)

    settings = load_as_pod(objects, clean_environment, tmp_path / "secrets")
    settings.require_credentials()
    accounts = {account.name: account for account in settings.api_accounts()}
    assert sorted(accounts) == ["bags-2", "rest", "shoes"]
    shoes, bags, rest = accounts["shoes"].api, accounts["bags-2"].api, accounts["rest"].api
    assert accounts["shoes"].collections == ("shoes", "sneakers")
    assert (shoes.qps, shoes.workers, shoes.daily_calls, shoes.reserve_calls, shoes.reserve_fraction) == (
        5,
        8,
        1000,
        100,
        0.05,
    )
    assert (bags.allowance, bags.daily_calls, bags.price_per_call, bags.daily_spend_limit) == ("pack", -1, 0.002, 10)
    assert accounts["rest"].collections == ("*",)
    assert (rest.qps, rest.allowance, rest.daily_calls, rest.reserve_fraction) == (2, "daily", 500, 0.1), "api.*'s"
    for name, account in accounts.items():
        assert account.api.access_key is not None
        assert account.api.secret_key is not None
        key = account.api.access_key.get_secret_value()
        assert key == ACCOUNT_KEYS[f"IMGSWEEP_ACCOUNTS__{name.upper()}__ACCESS_KEY"]


def test_accounts_keys_from_an_existing_secret_reach_imgsweep(
    clean_environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With existingSecret the user's Secret carries IMGSWEEP_ACCOUNTS__<NAME>__ACCESS_KEY / __SECRET_KEY."""
    accounts = 'accounts=[{"name": "shoes", "collections": ["shoes"]}, {"name": "rest", "collections": ["*"]}]'
    objects = render("--set", "dryRun=false", "--set", "existingSecret=imgsweep-keys", "--set-json", accounts)
    assert "Secret" not in kinds(objects)
    _assert_mounts_secret(objects, "imgsweep-keys")
    keys = {name: key for name, key in ACCOUNT_KEYS.items() if "BAGS" not in name}
    settings = start_as_pod(objects, clean_environment, tmp_path, {"imgsweep-keys": keys})
    settings.require_credentials()
    assert {a.name: a.api.secret_key.get_secret_value() for a in settings.api_accounts() if a.api.secret_key} == {
        "shoes": "test-shoes-secret-key-not-real",
        "rest": "test-rest-secret-key-not-real",
    }


ONE_ACCOUNT = ("--set-json", 'accounts=[{"name": "shoes", "collections": ["shoes"]}]')


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            (*ONE_ACCOUNT, "--set", "dryRun=false"),
            "dryRun is false, so imgsweep calls the delete API with account shoes's keys: set "
            "secrets.accounts.shoes.accessKey and secrets.accounts.shoes.secretKey, or existingSecret (a Secret with "
            "keys IMGSWEEP_ACCOUNTS__SHOES__ACCESS_KEY and IMGSWEEP_ACCOUNTS__SHOES__SECRET_KEY",
        ),
        (
            (*ONE_ACCOUNT, "--set", "dryRun=false", "--set", "secrets.accounts.shoes.accessKey=a"),
            "account shoes's keys: set secrets.accounts.shoes.accessKey and secrets.accounts.shoes.secretKey",
        ),
        (
            ("--set-json", 'accounts=[{"name": "a", "collections": ["x"]}, {"name": "a", "collections": ["y"]}]'),
            "accounts: two accounts are named a",
        ),
        (
            ("--set-json", 'accounts=[{"name": "a", "collections": ["x"]}, {"name": "b", "collections": ["y", "x"]}]'),
            "accounts: collection x is in the collections of both account a and account b",
        ),
        (
            ("--set-json", 'accounts=[{"name": "a", "collections": ["*"]}, {"name": "b", "collections": ["*"]}]'),
            'accounts a and b both have collections ["*"] (every collection no other account names): at most one',
        ),
        (
            (*ONE_ACCOUNT, "--set", "secrets.accounts.bags.accessKey=k"),
            "secrets.accounts.bags: no account of that name in accounts (shoes)",
        ),
        (
            (*ONE_ACCOUNT, "--set", "secrets.apiAccessKey=k", "--set", "secrets.apiSecretKey=s"),
            "secrets.apiAccessKey and secrets.apiSecretKey are the keys of the one default account, which accounts "
            "replaces",
        ),
        (
            (*ONE_ACCOUNT, "--set", "existingSecret=keys", "--set", "secrets.accounts.shoes.accessKey=k"),
            "existingSecret (keys) and secrets.* are both set",
        ),
        (
            (
                "--set-json",
                'accounts=[{"name": "shoes", "collections": ["x"], "allowance": "daily"}]',
                "--set",
                "api.allowance=pack",
                "--set-json",
                "api.pricePerCall=0.1",
                "--set-json",
                "api.dailySpendLimit=3",
            ),
            "account shoes (a value it leaves out is api.*'s): a daily spending limit (dailySpendLimit) needs "
            "allowance: pack, not daily",
        ),
        (
            ("--set-json", 'accounts=[{"name": "shoes", "collections": ["x"], "pricePerCall": 0.1}]'),
            "account shoes (a value it leaves out is api.*'s): set pricePerCall and dailySpendLimit together",
        ),
        (
            ("--set", "batch.lingerSeconds=5", "--set", "batch.maxWaitSeconds=1"),
            "batch.maxWaitSeconds (1) must be at least batch.lingerSeconds (5)",
        ),
        (
            ("--set-json", 'extraConfig={"IMGSWEEP_API__DAILY_CALLS": "800"}'),
            "extraConfig.IMGSWEEP_API__DAILY_CALLS: the chart already sets IMGSWEEP_API__DAILY_CALLS",
        ),
        (
            ("--set-json", 'extraConfig={"IMGSWEEP_API__QUOTA_RESET_UTC_OFFSET": "+09:00"}'),
            "is the old name of IMGSWEEP_API__QUOTA_RESET_ZONE, which the chart sets from api.quotaResetZone",
        ),
    ],
)
def test_budget_and_account_combinations_that_cannot_work_fail_with_what_to_change(
    args: tuple[str, ...], message: str
) -> None:
    error = render_failure(*args)
    assert message in error, error
    assert "-not-real" not in error


def test_the_pack_pairing_holds_without_the_schema_too() -> None:
    pack = ("--set-json", "api.pricePerCall=0.1", "--set-json", "api.dailySpendLimit=3")
    assert "/api/allowance" in render_failure(*pack)
    error = render_failure(*pack, "--skip-schema-validation")
    assert "api: a daily spending limit (dailySpendLimit) needs allowance: pack, not daily" in error
    error = render_failure("--set-json", "api.pricePerCall=0.1", "--skip-schema-validation")
    assert "api: set pricePerCall and dailySpendLimit together, or neither" in error
    assert "IMGSWEEP_API__PRICE_PER_CALL" in settings_configmap(render(*pack, "--set", "api.allowance=pack"))["data"]


# ---- escape hatches: extra env, volumes, Secret-backed librdkafka properties ----------------------------------------

SECRET_LOOKING_PROPERTIES = (
    "sasl.password",
    "ssl.key.password",
    "ssl.key.pem",
    "ssl.keystore.password",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.config",
    "sasl.oauthbearer.assertion.private.key.passphrase",
)
SECRET_CHANNEL = "move it to kafka.secretProperties (the chart Secret) or to kafka.existingSecretProperties"
MTLS_EXAMPLE = VALUE_SETS["strimzi-mtls"]
KEY_PASSWORD = "key-password-not-real"


@pytest.mark.parametrize("name", SECRET_LOOKING_PROPERTIES)
def test_secret_looking_properties_are_refused_in_the_configmap_pointing_at_the_secret_channel(name: str) -> None:
    values = ("--set-json", f'kafka.properties={{"{name}": "hunter2"}}')
    error = render_failure(*values)
    assert SCHEMA_ERROR in error
    assert f"/kafka/properties/{name}" in error
    assert SECRET_CHANNEL in error, error
    error = render_failure(*values, "--skip-schema-validation")  # the template refuses it too
    assert f"kafka.properties.{name} looks like a secret" in error
    assert SECRET_CHANNEL in error, error
    assert "hunter2" not in error


@pytest.mark.parametrize(
    "name", ["ssl.key.location", "ssl.certificate.location", "ssl.ca.pem", "ssl.certificate.pem", "sasl.mechanism"]
)
def test_paths_and_public_material_are_accepted_in_the_configmap(name: str) -> None:
    objects = render("--set-json", f'kafka.properties={{"{name}": "x"}}')
    assert json.loads(settings_configmap(objects)["data"]["IMGSWEEP_KAFKA__PROPERTIES"]) == {name: "x"}


def test_secret_properties_go_into_the_chart_secret_never_the_configmap() -> None:
    objects = render("--set-json", f'kafka.secretProperties={{"ssl.key.password": "{KEY_PASSWORD}"}}')
    assert secret_files(objects) == {"IMGSWEEP_KAFKA__SECRET_PROPERTIES__ssl.key.password": KEY_PASSWORD}
    assert KEY_PASSWORD not in json.dumps(settings_configmap(objects))
    _assert_mounts_secret(objects, "imgsweep")
    assert "checksum/secret" in one(objects, "Deployment")["spec"]["template"]["metadata"]["annotations"]


def test_existing_secret_properties_are_secret_key_refs() -> None:
    objects = render(*VALUE_SETS["alternatives"])
    env = container(objects)["env"]
    assert {
        "name": "IMGSWEEP_KAFKA__SECRET_PROPERTIES__ssl.keystore.password",
        "valueFrom": {"secretKeyRef": {"name": "imgsweep-kafka-user", "key": "user.password"}},
    } in env
    assert "user.password" not in json.dumps(settings_configmap(objects))


def test_extra_env_env_from_volumes_and_mounts_reach_the_pod() -> None:
    objects = render(*VALUE_SETS["all-on"])
    main = container(objects)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert {"name": "TZ", "value": "UTC"} in main["env"]
    assert main["envFrom"][0] == {"configMapRef": {"name": "imgsweep"}}, "the chart's settings come first"
    assert {"secretRef": {"name": "imgsweep-extra", "optional": True}} in main["envFrom"]
    assert {"name": "kafka-ca", "configMap": {"name": "kafka-ca-bundle"}} in pod["volumes"]
    assert {"name": "kafka-ca", "mountPath": "/etc/imgsweep/kafka-ca", "readOnly": True} in main["volumeMounts"]
    assert "tmp" in {m["name"] for m in main["volumeMounts"]}, "the chart's own mounts stay"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--set-json", 'extraEnv=[{"name": "IMGSWEEP_KAFKA__GROUP_ID", "value": "other"}]'),
            "extraEnv IMGSWEEP_KAFKA__GROUP_ID: the chart's ConfigMap already sets it",
        ),
        (
            ("--set-json", 'podLabels={"app.kubernetes.io/name": "other"}'),
            "podLabels.app.kubernetes.io/name: the chart sets this label to select its pods",
        ),
        (
            ("--set-json", 'kafka.existingSecretProperties={"sasl.password": "password"}'),
            "kafka.existingSecretProperties names keys of kafka.existingSecret, which is not set",
        ),
        (("--set", "kafka.existingSecret=user"), "kafka.existingSecret (user) is set but no property reads from it"),
        (
            ("--set", "existingSecret=keys", "--set-json", 'kafka.secretProperties={"sasl.password": "x"}'),
            "kafka.secretProperties needs the chart's Secret, but existingSecret (keys) replaces it",
        ),
        (
            (
                "--set-json",
                'kafka.properties={"ssl.key.location": "/k"}',
                "--set-json",
                'kafka.secretProperties={"ssl.key.location": "/k"}',
            ),
            "kafka.properties.ssl.key.location is also set as a secret property",
        ),
    ],
)
def test_escape_hatch_combinations_that_cannot_work_fail_with_what_to_change(
    args: tuple[str, ...], message: str
) -> None:
    assert message in render_failure(*args)


@pytest.mark.parametrize(
    ("args", "where", "says"),
    [
        (("--set-json", 'kafka.secretProperties={"acks": "0"}'), "/kafka/secretProperties/acks", "remove it"),
        (("--set-json", 'kafka.properties={"group.id": "x"}'), "/kafka/properties/group.id", "set kafka.groupId"),
        (("--set-json", 'extraVolumeMounts=[{"name": "a"}]'), "/extraVolumeMounts/0", "mountPath"),
        (("--set-json", 'extraEnv=[{"value": "x"}]'), "/extraEnv/0", "name"),
        (
            ("--set-json", 'extraConfig={"IMGSWEEP_KAFKA__SECRET_PROPERTIES": "{}"}'),
            "/extraConfig/IMGSWEEP_KAFKA__SECRET_PROPERTIES",
            "kafka.secretProperties",
        ),
    ],
)
def test_schema_errors_say_what_to_set(args: tuple[str, ...], where: str, says: str) -> None:
    error = render_failure(*args)
    assert SCHEMA_ERROR in error
    assert where in error, error
    assert says in error, error


# A pod as the kubelet would start it from the rendered objects: the ConfigMap and env as the environment,
# the chart's Secret as files in the secrets directory, each mounted volume's files under a directory that
# stands in for its mountPath (paths in the settings are rewritten to match), secretKeyRefs resolved from
# the given Secrets. Then the service's own checks: load_settings, and librdkafka building its clients.


def start_as_pod(
    objects: tuple[Object, ...], monkeypatch: pytest.MonkeyPatch, root: Path, cluster_secrets: dict[str, dict[str, str]]
) -> Settings:
    main = container(objects)
    volumes = {v["name"]: v for v in one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    chart_secrets = secret_files(objects)
    mount_roots: dict[str, str] = {}
    for mount in main["volumeMounts"]:
        volume, where = volumes[mount["name"]], root / mount["name"]
        where.mkdir(parents=True)
        if "secret" in volume:
            name = volume["secret"]["secretName"]
            data = cluster_secrets.get(name, chart_secrets)
            items = volume["secret"].get("items") or [{"key": key, "path": key} for key in data]
            for item in items:
                (where / item["path"]).write_text(data[item["key"]], encoding="utf-8")
        mount_roots[mount["mountPath"]] = str(where)

    def on_this_machine(value: str) -> str:
        for mount_path, directory in mount_roots.items():
            value = value.replace(mount_path + "/", directory + "/").replace(mount_path, directory)
        return value

    for name, value in settings_configmap(objects)["data"].items():
        monkeypatch.setenv(name, on_this_machine(value))
    for entry in main.get("env", []):
        if "value" in entry:
            value = entry["value"]
        elif "fieldRef" in entry["valueFrom"]:  # the downward API: the pod's name is all the chart asks for
            assert entry["valueFrom"]["fieldRef"] == {"fieldPath": "metadata.name"}
            value = "imgsweep-7d9f8b6c4-x2x7q"
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            value = cluster_secrets[ref["name"]][ref["key"]]
        monkeypatch.setenv(entry["name"], on_this_machine(value))
    settings = load_settings()
    check_librdkafka_config(settings)  # raises ConfigError if librdkafka refuses the certificates or the key
    return settings


def openssl(*args: str, cwd: Path) -> None:
    binary = find_tool("openssl", "apt-get install openssl")
    result = subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def strimzi_secrets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    """What a Strimzi cluster and a TLS KafkaUser hold: the cluster CA, a client certificate signed by the clients
    CA with its key in clear (user.key) and, for the Secret-channel tests, the same key encrypted."""
    work = tmp_path_factory.mktemp("strimzi")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1")
    openssl(
        "req", "-x509", *ec, "-keyout", "cluster-ca.key", "-out", "cluster-ca.crt", "-subj", "/CN=cluster-ca", cwd=work
    )
    openssl(
        "req", "-x509", *ec, "-keyout", "clients-ca.key", "-out", "clients-ca.crt", "-subj", "/CN=clients-ca", cwd=work
    )
    openssl("req", *ec, "-keyout", "user.key", "-out", "user.csr", "-subj", "/CN=imgsweep", cwd=work)
    openssl(
        "x509", "-req", "-in", "user.csr", "-CA", "clients-ca.crt", "-CAkey", "clients-ca.key", "-CAcreateserial",
        "-out", "user.crt", "-days", "1", cwd=work,
    )  # fmt: skip
    openssl("pkey", "-in", "user.key", "-out", "user.key.enc", "-aes256", "-passout", f"pass:{KEY_PASSWORD}", cwd=work)
    openssl("req", *ec, "-keyout", "other.key", "-out", "other.csr", "-subj", "/CN=someone-else", cwd=work)

    def read(name: str) -> str:
        return (work / name).read_text(encoding="utf-8")

    return {
        "imgsweep-kafka": {
            "user.crt": read("user.crt"),
            "user.key": read("user.key"),
            "ca.crt": read("clients-ca.crt"),
            "user.password": KEY_PASSWORD,
        },
        "imgsweep-encrypted-key": {"user.crt": read("user.crt"), "user.key": read("user.key.enc")},
        "imgsweep-wrong-key": {"user.crt": read("user.crt"), "user.key": read("other.key")},
        "my-cluster-cluster-ca-cert": {"ca.crt": read("cluster-ca.crt")},
    }


def test_the_strimzi_mtls_example_gives_librdkafka_the_mounted_certificates(
    strimzi_secrets: dict[str, dict[str, str]], clean_environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    objects = render(*MTLS_EXAMPLE)
    assert "Secret" not in kinds(objects), "the key stays in the KafkaUser's Secret"
    settings = start_as_pod(objects, clean_environment, tmp_path, strimzi_secrets)
    config = settings.kafka.librdkafka_common()
    assert config["security.protocol"] == "SSL"
    assert config["bootstrap.servers"] == "my-cluster-kafka-bootstrap:9093"
    for name, file in [
        ("ssl.certificate.location", "kafka-user/user.crt"),
        ("ssl.key.location", "kafka-user/user.key"),
        ("ssl.ca.location", "kafka-cluster-ca/ca.crt"),
    ]:
        assert config[name] == str(tmp_path / file)
    for mount in container(objects)["volumeMounts"]:
        assert mount.get("readOnly") or mount["name"] == "tmp"


def test_librdkafka_refuses_the_example_with_a_key_that_is_not_the_certificate_s(
    strimzi_secrets: dict[str, dict[str, str]], clean_environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    wrong = {**strimzi_secrets, "imgsweep-kafka": strimzi_secrets["imgsweep-wrong-key"]}
    with pytest.raises(ConfigError, match=r"IMGSWEEP_KAFKA__PROPERTIES: librdkafka refuses the configuration"):
        start_as_pod(render(*MTLS_EXAMPLE), clean_environment, tmp_path, wrong)


@pytest.mark.parametrize("channel", ["secretProperties", "existingSecretProperties"])
@pytest.mark.parametrize("password", [KEY_PASSWORD, "wrong-password"])
def test_a_key_password_from_a_secret_reaches_librdkafka(
    strimzi_secrets: dict[str, dict[str, str]],
    clean_environment: pytest.MonkeyPatch,
    tmp_path: Path,
    channel: str,
    password: str,
) -> None:
    """An encrypted client key: librdkafka can only load it with the password, which comes through a Secret."""
    encrypted = {**strimzi_secrets["imgsweep-encrypted-key"], "user.password": password}
    secrets = {**strimzi_secrets, "imgsweep-kafka": encrypted}
    values: tuple[str, ...]
    if channel == "secretProperties":
        values = ("--set-json", f"kafka.secretProperties={json.dumps({'ssl.key.password': password})}")
    else:
        values = (
            "--set", "kafka.existingSecret=imgsweep-kafka",
            "--set-json", 'kafka.existingSecretProperties={"ssl.key.password": "user.password"}',
        )  # fmt: skip
    objects = render(*MTLS_EXAMPLE, *values)
    assert password not in json.dumps(settings_configmap(objects))
    if password == KEY_PASSWORD:
        settings = start_as_pod(objects, clean_environment, tmp_path, secrets)
        assert settings.kafka.librdkafka_common()["ssl.key.password"] == KEY_PASSWORD
    else:
        with pytest.raises(ConfigError, match=r"librdkafka refuses the configuration: .*ssl\.key\.location") as refused:
            start_as_pod(objects, clean_environment, tmp_path, secrets)
        assert password not in str(refused.value)


# ---- scaling ------------------------------------------------------------------------------------------------------


def test_keda_and_hpa_are_mutually_exclusive() -> None:
    both = ("--set", "keda.enabled=true", "--set", "autoscaling.enabled=true")
    error = render_failure(*both)
    assert SCHEMA_ERROR in error
    assert "/autoscaling/enabled" in error, error
    error = render_failure(*both, "--skip-schema-validation")
    assert "keda.enabled and autoscaling.enabled are mutually exclusive" in error, error


def test_service_monitor_and_pod_monitor_are_mutually_exclusive() -> None:
    both = ("--set", "serviceMonitor.enabled=true", "--set", "podMonitor.enabled=true")
    assert "/podMonitor/enabled" in render_failure(*both)
    error = render_failure(*both, "--skip-schema-validation")
    assert "serviceMonitor.enabled and podMonitor.enabled are mutually exclusive" in error, error


def test_keda_scales_on_what_replicas_can_help_with_never_on_lag_and_owns_replicas() -> None:
    objects = render(*VALUE_SETS["all-on"])
    assert "HorizontalPodAutoscaler" not in kinds(objects)
    deployment = one(objects, "Deployment")
    assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"
    scaled = one(objects, "ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert scaled["spec"]["minReplicaCount"] >= 1
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus", "consumer lag grows in every quota wait and adds no API capacity"
    metadata = trigger["metadata"]
    assert metadata["serverAddress"] == "http://prometheus-operated.monitoring:9090"
    assert metadata["threshold"] == "1"
    query = metadata["query"]
    qps = float(settings_configmap(objects)["data"]["IMGSWEEP_API__QPS"])
    assert "sum(rate(process_cpu_seconds_total{" in query
    assert "/ 0.5)" in query  # the cores busy over cpuPerReplica
    assert f'code="10000"}}[2m])) < {0.8 * qps:g})' in query  # only while the account's QPS is unused
    assert "max(imgsweep_quota_exhausted" in query
    assert "sum(imgsweep_qps_demand_calls" in query
    assert f'pod=~"{deployment["metadata"]["name"]}-.*"' in query
    assert "consumer_lag" not in query
    assert metadata["unsafeSsl"] == "false"
    assert trigger["authenticationRef"] == {"name": "imgsweep-prometheus"}


def test_keda_with_accounts_asks_each_account_s_qps_by_its_label() -> None:
    keda = ("--set", "keda.enabled=true", "--set", "keda.prometheusServerAddress=http://prometheus:9090")
    (trigger,) = one(render(*ACCOUNTS, *keda), "ScaledObject")["spec"]["triggers"]
    query = trigger["metadata"]["query"]
    for account, qps in (("shoes", 5), ("bags-2", 2), ("rest", 2)):  # rest and bags-2 take api.qps
        selector = f'account="{account}"'
        assert f'{selector},code="10000"}}[2m])) < {0.9 * qps:g})' in query
        assert f'{selector},code="10000"}}[2m])) >= {0.9 * qps:g})' in query
        labels = f'{{namespace="{NAMESPACE}",pod=~"imgsweep-.*",{selector}}}'
        assert f"sum(imgsweep_qps_demand_calls{labels}) > 0" in query
        assert f"max(imgsweep_quota_exhausted{labels}) == 0" in query
    assert "consumer_lag" not in query
    default = one(render(*keda), "ScaledObject")["spec"]["triggers"][0]["metadata"]["query"]
    assert "account=" not in default, "the one default account: every series is its"


def test_keda_without_a_prometheus_fails_with_what_to_set() -> None:
    error = render_failure("--set", "keda.enabled=true")
    assert "/keda/prometheusServerAddress" in error, error


def test_the_delivery_and_the_state_topics_reach_the_settings() -> None:
    data = settings_configmap(render())["data"]
    assert data["IMGSWEEP_KAFKA__DELIVERY"] == "exactly_once"
    assert data["IMGSWEEP_KAFKA__DELETIONS_TOPIC"] == "catalog.imgsweep.deletions"
    assert data["IMGSWEEP_KAFKA__CREATE_TOPICS"] == "true"
    assert "IMGSWEEP_KAFKA__BUDGET_TOPIC" not in data, "unset: the service names it after the group"
    data = settings_configmap(render("--set", "kafka.budgetTopic=shop.imgsweep.budget"))["data"]
    assert data["IMGSWEEP_KAFKA__BUDGET_TOPIC"] == "shop.imgsweep.budget"
    data = settings_configmap(render("--set", "kafka.delivery=at_least_once", "--set", "kafka.createTopics=false"))[
        "data"
    ]
    assert (data["IMGSWEEP_KAFKA__DELIVERY"], data["IMGSWEEP_KAFKA__CREATE_TOPICS"]) == ("at_least_once", "false")
    assert "kafka/delivery" in render_failure("--set", "kafka.delivery=twice")


def test_the_demand_topic_and_the_qps_share_reach_the_settings() -> None:
    data = settings_configmap(render())["data"]
    assert data["IMGSWEEP_KAFKA__DEMAND_TOPIC"] == "catalog.imgsweep.demand"
    assert data["IMGSWEEP_API__QPS_SHARE"] == "demand"
    data = settings_configmap(render("--set", "api.qpsShare=partitions"))["data"]
    assert data["IMGSWEEP_API__QPS_SHARE"] == "partitions"


def test_hpa_targets_the_deployment_and_owns_replicas() -> None:
    objects = render(*VALUE_SETS["alternatives"])
    assert "ScaledObject" not in kinds(objects)
    deployment = one(objects, "Deployment")
    assert "replicas" not in deployment["spec"]
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "imgsweep"}


def test_hpa_without_a_cpu_request_fails_with_what_to_set() -> None:
    error = render_failure("--set", "autoscaling.enabled=true", "--set", "resources.requests=null")
    assert "set resources.requests.cpu" in error


def test_fixed_replicas_and_disruption_budget_by_default() -> None:
    objects = render()
    assert one(objects, "Deployment")["spec"]["replicas"] == 2
    budget = one(objects, "PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1
    assert (
        budget["spec"]["selector"]["matchLabels"].items()
        <= one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"].items()
    )
    assert not {"ServiceMonitor", "PodMonitor", "PrometheusRule", "ScaledObject", "HorizontalPodAutoscaler"} & kinds(
        objects
    ), "monitoring and autoscaling are opt-in"


# ---- rules and dashboard from the repository's files -------------------------------------------------------------


RULES_ON = ("--set", "prometheusRule.enabled=true")
RUNBOOK_BASE = "https://git.example.com/platform/imgsweep/-/blob/main/docs/runbooks.md"


def rendered_rules(*args: str) -> dict[str, Any]:
    spec: dict[str, Any] = one(render(*RULES_ON, *args), "PrometheusRule")["spec"]
    return spec


def rendered_alerts(*args: str) -> dict[str, Object]:
    return {r["alert"]: r for group in rendered_rules(*args)["groups"] for r in group["rules"] if "alert" in r}


def test_the_rules_file_is_the_chart_s_rules_with_its_defaults() -> None:
    assert rendered_rules() == yaml.safe_load(RULES.read_text(encoding="utf-8"))
    # Byte for byte, comments included: the file is what render-rules.sh writes from the chart.
    result = subprocess.run(
        [str(REPO / "deploy" / "prometheus" / "render-rules.sh"), "--stdout"],
        capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False,
        env={**os.environ, "HELM": find_tool("helm", "run deploy/tools/install-helm.sh (make does)")},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == RULES.read_text(encoding="utf-8"), "run deploy/prometheus/render-rules.sh"
    rule = one(render(*VALUE_SETS["all-on"]), "PrometheusRule")
    assert rule["spec"]["groups"], "the rules have groups"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_an_older_release_s_values_without_the_day_two_values_still_render() -> None:
    """helm upgrade --reuse-values keeps a release's old values, without the keys this chart added."""
    older = ("minReadySeconds", "nodeSpread", "networkPolicy", "runbookBaseUrl", "prometheusRule.alerts")
    objects = render(*RULES_ON, *(arg for key in older for arg in ("--set", f"{key}=null")))
    pod = one(objects, "Deployment")["spec"]
    assert "minReadySeconds" not in pod
    assert "topologySpreadConstraints" not in pod["template"]["spec"]
    assert "NetworkPolicy" not in kinds(objects)
    assert one(objects, "PrometheusRule")["spec"] == rendered_rules()


def test_a_release_without_the_alert_values_renders_the_default_rules() -> None:
    """helm upgrade --reuse-values from a chart without prometheusRule.alerts and runbookBaseUrl."""
    assert rendered_rules("--set", "prometheusRule.alerts=null", "--set", "runbookBaseUrl=null") == rendered_rules()


def test_every_alert_of_the_rules_has_values_and_the_values_name_no_other() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))["prometheusRule"]["alerts"]
    assert set(values) == set(rendered_alerts())
    for name, alert in rendered_alerts().items():
        assert alert["for"] == values[name]["for"], name
        assert alert["labels"]["severity"] == values[name]["severity"], name


def test_a_disabled_alert_disappears_from_the_rendered_rules() -> None:
    assert "ImgsweepQuotaLow" in rendered_alerts()
    alerts = rendered_alerts("--set", "prometheusRule.alerts.ImgsweepQuotaLow.enabled=false")
    assert "ImgsweepQuotaLow" not in alerts
    assert len(alerts) == len(rendered_alerts()) - 1
    assert "ImgsweepReplicaDown" not in rendered_alerts(*VALUE_SETS["all-on"])


def test_with_every_alert_disabled_only_the_recording_rules_remain() -> None:
    off = [arg for name in rendered_alerts() for arg in ("--set", f"prometheusRule.alerts.{name}.enabled=false")]
    objects = render(*RULES_ON, *off)
    rule = one(objects, "PrometheusRule")
    assert [group["name"] for group in rule["spec"]["groups"]] == ["imgsweep.recording"]
    assert crd_errors(rule) == []


@pytest.mark.parametrize(
    ("args", "alert", "expected", "default"),
    [
        (
            ("--set-json", "prometheusRule.alerts.ImgsweepImageFailureRatioHigh.ratio=0.2"),
            "ImgsweepImageFailureRatioHigh",
            "namespace_job:imgsweep_images_failed:ratio_rate15m > 0.2\n",
            "namespace_job:imgsweep_images_failed:ratio_rate15m > 0.05\n",
        ),
        (
            ("--set", "prometheusRule.alerts.ImgsweepImageFailureRatioHigh.minImages=500"),
            "ImgsweepImageFailureRatioHigh",
            "(increase(imgsweep_images_total[15m])) >= 500\n",
            "(increase(imgsweep_images_total[15m])) >= 20\n",
        ),
        (
            ("--set-json", "prometheusRule.alerts.ImgsweepQuotaLow.remainingFraction=0.25"),
            "ImgsweepQuotaLow",
            "< 0.25 * namespace_job:imgsweep_quota_remaining_calls:max_over_time1d",
            "< 0.1 * namespace_job:imgsweep_quota_remaining_calls:max_over_time1d",
        ),
        (
            ("--set", "prometheusRule.alerts.ImgsweepQuotaProjectedExhaustion.marginSeconds=7200"),
            "ImgsweepQuotaProjectedExhaustion",
            "(imgsweep_quota_reset_seconds) - 7200)",
            "(imgsweep_quota_reset_seconds) - 3600)",
        ),
        (
            ("--set", "prometheusRule.alerts.ImgsweepConsumerLagGrowing.minLagMessages=0"),
            "ImgsweepConsumerLagGrowing",
            "(namespace_job:imgsweep_consumer_lag_messages:sum) > 0\n",
            "(namespace_job:imgsweep_consumer_lag_messages:sum) > 100\n",
        ),
    ],
)
def test_a_threshold_value_changes_the_alert_s_expression(
    args: tuple[str, ...], alert: str, expected: str, default: str
) -> None:
    assert default in rendered_alerts()[alert]["expr"]
    changed = rendered_alerts(*args)[alert]["expr"]
    assert expected in changed
    assert default not in changed


def test_threshold_and_duration_values_reach_the_annotations_people_read() -> None:
    alerts = rendered_alerts(
        "--set-json", "prometheusRule.alerts.ImgsweepQuotaLow.remainingFraction=0.25",
        "--set-json", "prometheusRule.alerts.ImgsweepImageFailureRatioHigh.ratio=0.125",
        "--set", "prometheusRule.alerts.ImgsweepQuotaProjectedExhaustion.marginSeconds=7200",
        "--set", "prometheusRule.alerts.ImgsweepDown.for=15m",
        "--set", "prometheusRule.alerts.ImgsweepFatal.severity=warning",
    )  # fmt: skip
    assert "is below 25% in" in alerts["ImgsweepQuotaLow"]["annotations"]["summary"]
    assert "(threshold 12.5%)" in alerts["ImgsweepImageFailureRatioHigh"]["annotations"]["description"]
    assert "more than 2 hours before" in alerts["ImgsweepQuotaProjectedExhaustion"]["annotations"]["description"]
    assert alerts["ImgsweepDown"]["for"] == "15m"
    assert "for 15 minutes:" in alerts["ImgsweepDown"]["annotations"]["description"]
    assert alerts["ImgsweepFatal"]["labels"]["severity"] == "warning"
    # Prometheus's own templates pass through helm untouched.
    assert "{{ $labels.namespace }}" in alerts["ImgsweepDown"]["annotations"]["summary"]


def test_runbook_urls_use_the_runbook_base_url() -> None:
    default = rendered_alerts()
    assert {a["annotations"]["runbook_url"].split("#")[0] for a in default.values()} == {"docs/runbooks.md"}
    alerts = rendered_alerts("--set", f"runbookBaseUrl={RUNBOOK_BASE}")
    assert alerts.keys() == default.keys()
    for name, alert in alerts.items():
        section = default[name]["annotations"]["runbook_url"].removeprefix("docs/runbooks.md#")
        assert alert["annotations"]["runbook_url"] == f"{RUNBOOK_BASE}#{section}", name
    assert "imgsweep/imgsweep" not in json.dumps(alerts), "no placeholder organisation"


def test_grafana_dashboard_configmap_is_the_repository_dashboard_with_the_runbook_link() -> None:
    shipped = CHART / "files" / "imgsweep-dashboard.json"
    assert shipped.read_bytes() == DASHBOARD.read_bytes(), "the chart must ship deploy/grafana/imgsweep-dashboard.json"
    repository = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    for args, link in (((), "docs/runbooks.md"), (VALUE_SETS["all-on"], RUNBOOK_BASE)):
        objects = render("--set", "grafanaDashboard.enabled=true", *args)
        (configmap,) = [
            o for o in objects if o["kind"] == "ConfigMap" and "grafana_dashboard" in o["metadata"]["labels"]
        ]
        (content,) = configmap["data"].values()
        dashboard = json.loads(content)
        (runbooks,) = [entry for entry in dashboard["links"] if entry["title"] == "Runbooks"]
        assert runbooks["url"] == link
        assert dashboard == {**repository, "links": [{**entry, "url": link} for entry in repository["links"]]}
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["namespace"] == "monitoring"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "imgsweep"}


# ---- NetworkPolicy, spread, rollout, image -----------------------------------------------------------------------


NETWORK_POLICY_ON = (
    "--set", "networkPolicy.enabled=true",
    "--set-json", 'networkPolicy.kafka.to=[{"ipBlock": {"cidr": "10.20.0.0/16"}}]',
)  # fmt: skip


def _egress_ports(policy: Object) -> list[list[tuple[Any, str]]]:
    return [[(p["port"], p["protocol"]) for p in rule["ports"]] for rule in policy["spec"]["egress"]]


def test_network_policy_is_off_by_default() -> None:
    assert "NetworkPolicy" not in kinds(render())


def test_network_policy_allows_kafka_the_api_and_dns_out_and_the_http_port_in() -> None:
    objects = render(*NETWORK_POLICY_ON)
    policy = one(objects, "NetworkPolicy")
    spec = policy["spec"]
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert spec["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = spec["ingress"]
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert "from" not in ingress, "the probes and any scraper may reach the http port, and nothing else"
    assert [p["name"] for p in container(objects)["ports"]] == ["http"]
    kafka, api, dns = spec["egress"]
    assert kafka["to"] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]
    assert _egress_ports(policy) == [[(9092, "TCP")], [(443, "TCP")], [(53, "UDP"), (53, "TCP")]]
    assert api["to"][0]["ipBlock"]["cidr"] == "0.0.0.0/0"
    assert "10.0.0.0/8" in api["to"][0]["ipBlock"]["except"]
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}


def test_network_policy_ports_follow_the_brokers_and_the_endpoints() -> None:
    policy = one(
        render(
            *NETWORK_POLICY_ON,
            "--set", "kafka.bootstrapServers=kafka-0.kafka:9093\\,kafka-1.kafka:9094\\,kafka-2.kafka:9093",
            "--set", "api.endpoint=http://jd-proxy.internal:8080/jdai/product_image_del_image",
            "--set-json", 'accounts=[{"name": "shoes", "collections": ["shoes"], "endpoint": "https://aiapi.jdcloud.com/x"}]',
        ),
        "NetworkPolicy",
    )  # fmt: skip
    kafka, api, _ = _egress_ports(policy)
    assert kafka == [(9093, "TCP"), (9094, "TCP")]
    assert api == [(8080, "TCP"), (443, "TCP")]
    stated = one(render(*NETWORK_POLICY_ON, "--set-json", "networkPolicy.kafka.ports=[9095]"), "NetworkPolicy")
    assert _egress_ports(stated)[0] == [(9095, "TCP")]


def test_network_policy_extra_rules_and_metrics_sources_reach_the_policy() -> None:
    policy = one(render(*VALUE_SETS["all-on"]), "NetworkPolicy")
    assert policy["spec"]["ingress"][0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    assert _egress_ports(policy)[0] == [(9093, "TCP")]
    assert _egress_ports(policy)[1] == [(443, "TCP"), (8443, "TCP")]
    assert _egress_ports(policy)[3] == [(4318, "TCP")]


def test_network_policy_without_the_brokers_fails_with_what_to_set() -> None:
    assert "set networkPolicy.kafka.to" in render_failure("--set", "networkPolicy.enabled=true")


def test_replicas_spread_softly_over_nodes_by_default() -> None:
    objects = render()
    pod = one(objects, "Deployment")["spec"]["template"]
    (constraint,) = pod["spec"]["topologySpreadConstraints"]
    assert constraint["topologyKey"] == "kubernetes.io/hostname"
    assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"
    assert constraint["maxSkew"] == 1
    assert constraint["labelSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    off = one(render("--set", "nodeSpread.enabled=false"), "Deployment")["spec"]["template"]["spec"]
    assert "topologySpreadConstraints" not in off
    (own,) = one(render(*VALUE_SETS["all-on"]), "Deployment")["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert own["topologyKey"] == "topology.kubernetes.io/zone", "the operator's own constraints replace it"


def test_min_ready_seconds_holds_a_rollout_on_a_pod_that_fails_early() -> None:
    assert one(render(), "Deployment")["spec"]["minReadySeconds"] == 10
    assert one(render(*VALUE_SETS["all-on"]), "Deployment")["spec"]["minReadySeconds"] == 30


def test_the_default_image_is_the_one_make_image_builds() -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    assert container(render())["image"] == f"localhost/imgsweep:{version}"
    assert 'image="${IMAGE:-localhost/imgsweep:${version}' in (REPO / "deploy" / "image" / "build.sh").read_text()
    assert container(render(*VALUE_SETS["all-on"]))["image"].startswith("registry.example.com/imgsweep@sha256:")


def test_notes_say_when_the_image_is_the_local_one(tmp_path: Path) -> None:
    assert "the local name `make image` gives" in render_notes(tmp_path)
    pushed = render_notes(tmp_path / "pushed", "--set", "image.repository=registry.example.com/imgsweep")
    assert "the local name" not in pushed


def test_packaged_chart_contains_the_shared_files(tmp_path: Path) -> None:
    result = helm("package", str(CHART), "--destination", str(tmp_path))
    assert result.returncode == 0, result.stderr
    (package,) = tmp_path.glob("imgsweep-*.tgz")
    # The package is a chart of its own: rendering it proves the links were followed, not kept.
    objects = render(*RULES_ON, "--set", "grafanaDashboard.enabled=true", chart=package)
    assert one(objects, "PrometheusRule")["spec"] == yaml.safe_load(RULES.read_text(encoding="utf-8"))
    assert any(o["kind"] == "ConfigMap" and "grafana_dashboard" in o["metadata"]["labels"] for o in objects)


# ---- NOTES.txt ------------------------------------------------------------------------------------------------------


def render_notes(tmp_path: Path, *args: str) -> str:
    """helm renders NOTES.txt only when installing into a cluster, so a copy of the chart renders it as a
    manifest of comments instead."""
    copy_dir = tmp_path / "chart"
    shutil.copytree(CHART, copy_dir, symlinks=False)
    (copy_dir / "templates" / "NOTES.txt").rename(copy_dir / "notes.txt")
    (copy_dir / "templates" / "zz-notes.yaml").write_text(
        '{{- range (tpl (.Files.Get "notes.txt") .) | splitList "\\n" }}\n# {{ . }}\n{{- end }}\nkind: Notes\n',
        encoding="utf-8",
    )
    result = helm(
        "template", RELEASE, str(copy_dir), "--namespace", NAMESPACE, "--show-only", "templates/zz-notes.yaml", *args
    )
    assert result.returncode == 0, result.stderr
    return "\n".join(line.removeprefix("# ") for line in result.stdout.splitlines())


def test_notes_say_dry_run_first_and_how_to_check_readiness_and_metrics(tmp_path: Path) -> None:
    notes = render_notes(tmp_path)
    assert "DRY RUN" in notes
    assert "--set dryRun=false" in notes
    assert "rollout status deployment/imgsweep" in notes
    assert "/readyz" in notes
    assert "/metrics" in notes
    assert "imgsweep check-config" in notes
    live = render_notes(tmp_path / "live", "--set", "dryRun=false", "--set", "existingSecret=keys")
    assert "DRY RUN" not in live
    assert "DELETES" in live


def _env(objects: tuple[Object, ...]) -> dict[str, Object]:
    return {entry["name"]: entry for entry in container(objects).get("env", [])}


def test_static_membership_takes_the_instance_id_from_the_pods_name(
    clean_environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert "IMGSWEEP_KAFKA__GROUP_INSTANCE_ID" not in _env(render("--set", "kafka.staticMembership=false"))
    objects = render()  # on by default (docs/decisions/0005)
    entry = _env(objects)["IMGSWEEP_KAFKA__GROUP_INSTANCE_ID"]
    assert entry["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert "IMGSWEEP_KAFKA__GROUP_INSTANCE_ID" not in settings_configmap(objects)["data"], "one value per pod"
    # What the downward API gives a Deployment's pod passes imgsweep's validation, with the ConfigMap beside it.
    clean_environment.setenv("IMGSWEEP_KAFKA__GROUP_INSTANCE_ID", "imgsweep-7d9f8b6c4-x2x7q")
    settings = load_as_pod(objects, clean_environment, tmp_path / "secrets")
    assert settings.kafka.group_instance_id == "imgsweep-7d9f8b6c4-x2x7q"


def test_static_membership_refuses_a_second_instance_id_in_extra_env() -> None:
    error = render_failure(
        "--set", "kafka.staticMembership=true",
        "--set", "extraEnv[0].name=IMGSWEEP_KAFKA__GROUP_INSTANCE_ID", "--set", "extraEnv[0].value=x",
    )  # fmt: skip
    assert "kafka.staticMembership already sets it to the pod's name" in error


def test_the_consumer_protocol_leaves_the_session_timeout_to_the_broker(
    clean_environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    classic = settings_configmap(render())["data"]
    assert classic["IMGSWEEP_KAFKA__GROUP_PROTOCOL"] == "classic"
    assert classic["IMGSWEEP_KAFKA__SESSION_TIMEOUT_MS"] == "45000"
    objects = render("--set", "kafka.groupProtocol=consumer")
    data = settings_configmap(objects)["data"]
    assert data["IMGSWEEP_KAFKA__GROUP_PROTOCOL"] == "consumer"
    assert "IMGSWEEP_KAFKA__SESSION_TIMEOUT_MS" not in data, "imgsweep refuses it with the consumer protocol"
    assert load_as_pod(objects, clean_environment, tmp_path / "secrets").kafka.group_protocol == "consumer"
    assert SCHEMA_ERROR in render_failure("--set", "kafka.groupProtocol=eager")


def test_notes_say_what_static_membership_costs(tmp_path: Path) -> None:
    assert "Static group membership" not in render_notes(tmp_path, "--set", "kafka.staticMembership=false")
    notes = render_notes(tmp_path / "static")
    assert "each pod's name is its group.instance.id" in notes
    assert "leaves the group on SIGTERM" in notes
    assert "holds its partitions for the session timeout (45000 ms)" in notes


def test_notes_say_how_to_create_the_demand_topic_and_what_autoscaling_follows(tmp_path: Path) -> None:
    """imgsweep makes its internal topics by default: the notes give no command. Where it may not, they give the
    control and demand topics' commands with the configs imgsweep itself would give them."""
    notes = render_notes(tmp_path)
    assert "catalog.imgsweep.demand.dry-run, which imgsweep makes when it is missing" in notes  # a dry run's own
    assert "kafka-topics.sh" not in notes
    locked = ("--set", "kafka.createTopics=false")
    notes = render_notes(tmp_path / "locked", *locked)
    control, demand = (
        f"--partitions 1 --config {' --config '.join(f'{name}={value}' for name, value in config.items())}"
        for config in (CONTROL_TOPIC_CONFIG, DEMAND_TOPIC_CONFIG)
    )
    assert f"--topic catalog.imgsweep.control.dry-run \\\n    {control}" in notes
    assert f"--topic catalog.imgsweep.demand.dry-run \\\n    {demand}" in notes
    live = render_notes(tmp_path / "live", "--set", "dryRun=false", "--set", "existingSecret=keys", *locked)
    assert "--topic catalog.imgsweep.demand \\" in live
    assert "demand" not in render_notes(tmp_path / "partitions", "--set", "api.qpsShare=partitions")
    scaled = render_notes(tmp_path / "keda", *VALUE_SETS["all-on"])
    assert "never on lag" in scaled


def test_notes_say_each_account_s_qps_is_shared_by_the_replicas(tmp_path: Path) -> None:
    notes = render_notes(tmp_path, *ACCOUNTS)
    assert (
        "Accounts (each one's QPS is shared by all replicas, not multiplied by them): shoes 5 QPS, bags-2 2 QPS"
        in notes
    )
    assert "Replicas share each account's QPS" in notes
    assert "Accounts (" not in render_notes(tmp_path / "default")


def test_the_brake_and_the_control_topic_reach_imgsweep(clean_environment: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The chart's defaults are imgsweep's (20,000 images an hour, catalog.imgsweep.control); set ones arrive as set;
    a negative limit is refused by the schema."""
    settings = load_as_pod(render(), clean_environment, tmp_path / "defaults")
    assert settings.dry_run, "the chart installs in dry-run first"
    control_topic = settings.kafka.control_topic
    assert (settings.brake.max_images_per_hour, control_topic) == (20_000, "catalog.imgsweep.control.dry-run")
    objects = render("--set", "brake.maxImagesPerHour=0", "--set", "kafka.controlTopic=shop.imgsweep.control")
    data = settings_configmap(objects)["data"]
    assert (data["IMGSWEEP_BRAKE__MAX_IMAGES_PER_HOUR"], data["IMGSWEEP_KAFKA__CONTROL_TOPIC"]) == (
        "0",
        "shop.imgsweep.control",
    )
    assert "maxImagesPerHour" in render_failure("--set", "brake.maxImagesPerHour=-1")
