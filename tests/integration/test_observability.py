"""The alert rules and the dashboard, checked by promtool and against metrics scraped from the real service.

promtool is found at ``${IMGSWEEP_TOOLS_DIR:-~/.cache/imgsweep/tools}/bin/promtool`` or on PATH;
``deploy/tools/install-promtool.sh`` puts it there. Without it these tests fail rather than skip: an
unchecked rules file must not pass as a checked one.

How every PromQL expression is run against real data, with promtool alone (no Prometheus server):

1. The real service runs, with its router (``IMGSWEEP_KAFKA__REPARTITION``), against the real broker and the
   sandbox API with faults injected (HTTP 503,
   system busy, per-image errors, an unknown collection, too few attempts, a low QPS) while waves of valid
   and invalid events arrive. ``/metrics`` is scraped after every wave.
2. Each scrape is parsed and labelled the way Prometheus labels a target's samples (``job``, ``instance``,
   and ``namespace`` as Kubernetes service discovery would add it; an ``up`` of 1 per scrape). The scrapes are
   laid out 15 s apart, like a scrape interval, as the ``input_series`` of a generated
   ``promtool test rules`` file that also loads ``deploy/prometheus/imgsweep-rules.yaml``, so the recording
   rules are evaluated over the same samples every 15 s.
3. Each expression gets a ``promql_expr_test`` at the last scrape: ``count((E) == (E)) > bool 0`` must be
   ``{} 1``, i.e. E returns at least one sample that is not NaN. Dashboard targets and query variables are
   taken with ``$namespace``/``$job`` set to the scraped labels and ``$__rate_interval`` to 1m (Grafana's
   4 times the 15 s scrape interval). An alert's condition rightly returns nothing on a healthy service, so it
   is split at its comparisons and set operators (``tests.unit.test_dashboard.operands``) and every
   operand must return data instead; recording rules are checked whole. Two canaries, a series nothing
   exposes and an expression that is only NaN, must be the only failures: that proves the check can fail.

Each expression is first parsed by ``promtool check rules`` (as a recording rule of a generated file), so a
syntax error names its panel rather than failing the whole run.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import time
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from devkit.fixtures import SandboxFactory, ServiceFactory, TopicsFactory
from devkit.processes import Record, SandboxProcess, ServiceProcess, Topics, event, produce
from tests.unit.test_dashboard import DASHBOARD, RULES, RULES_TESTS, dashboard_expressions, operands, rules

SCRAPE_INTERVAL_SECONDS = 15
RATE_INTERVAL = "1m"  # what Grafana's $__rate_interval is for a 15 s scrape interval
TARGET_LABELS = {"job": "imgsweep", "namespace": "imgsweep-it"}
WAVES = 8
WAVE_SECONDS = 2.5
CANARIES = [  # must be reported as returning no data, or the check itself is broken
    ("canary: a series nothing exposes", "imgsweep_no_such_series"),
    ("canary: NaN only", "imgsweep_assigned_partitions / 0 * 0"),
]
INSTALL_HINT = "promtool not found: run deploy/tools/install-promtool.sh (it installs promtool under {where})"


def promtool() -> str:
    tools = Path(os.environ.get("IMGSWEEP_TOOLS_DIR") or Path.home() / ".cache" / "imgsweep" / "tools")
    cached = tools / "bin" / "promtool"
    if cached.is_file() and os.access(cached, os.X_OK):
        return str(cached)
    on_path = shutil.which("promtool")
    if on_path is None:
        pytest.fail(INSTALL_HINT.format(where=cached))
    return on_path


def run_promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120, check=False, cwd=cwd)


# ---------------------------------------------------------------- promtool on the committed files


def test_promtool_checks_the_rules() -> None:
    result = run_promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    result = run_promtool("test", "rules", RULES_TESTS.name, cwd=RULES_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_dashboard_expression_parses(tmp_path: Path) -> None:
    expressions = substituted_dashboard_expressions(job="imgsweep", namespace="ns", instance="127.0.0.1:8080")
    rules_file = tmp_path / "dashboard-as-rules.yaml"
    rules_file.write_text(
        json.dumps(
            {
                "groups": [
                    {
                        "name": "dashboard",
                        "rules": [
                            {"record": f"dashboard:expr_{n}", "expr": expr} for n, (_, expr) in enumerate(expressions)
                        ],
                    }
                ]
            }
        )
    )
    result = run_promtool("check", "rules", str(rules_file))
    where = "\n".join(f"dashboard:expr_{n} = {origin}: {expr}" for n, (origin, expr) in enumerate(expressions))
    assert result.returncode == 0, f"{result.stdout}{result.stderr}\n{where}"


def substituted_dashboard_expressions(*, job: str, namespace: str, instance: str) -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    values = {
        "job": job,
        "namespace": namespace,
        "instance": instance,
        "account": ".*",
        "__rate_interval": RATE_INTERVAL,
    }
    found = []
    for origin, expr in dashboard_expressions(dashboard):
        substituted = re.sub(r"\$\{?(\w+)\}?", lambda m: values[m.group(1)], expr)
        found.append((origin, substituted))
    return found


# ---------------------------------------------------------------- the real scrape


def series_notation(name: str, labels: dict[str, str]) -> str:
    inner = ", ".join(f"{key}={json.dumps(value)}" for key, value in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def scraped_series(exposition: str, target: dict[str, str]) -> dict[str, float]:
    """One scrape's samples, labelled as Prometheus labels a target's (honor_labels: false), plus its `up`."""
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            labels = {(f"exported_{k}" if k in target else k): v for k, v in sample.labels.items()}
            samples[series_notation(sample.name, {**labels, **target})] = sample.value
    samples[series_notation("up", target)] = 1.0
    return samples


def value_notation(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Inf" if value > 0 else "-Inf"
    return format(Decimal(repr(value)).normalize(), "f")  # no exponent: "1e+09" would read as an expanding series


def input_series(scrapes: list[dict[str, float]]) -> list[dict[str, str]]:
    """promtool's input_series, one value per scrape: `_` before a series first appears, `stale` after it goes."""
    names = sorted({name for scrape in scrapes for name in scrape})
    series = []
    for name in names:
        values: list[str] = []
        seen = False
        for scrape in scrapes:
            if name in scrape:
                values.append(value_notation(scrape[name]))
                seen = True
            else:
                values.append("stale" if seen else "_")
        series.append({"series": name, "values": " ".join(values)})
    return series


def has_data(expr: str) -> str:
    return f"count(({expr}) == ({expr})) > bool 0"


def expressions_to_check(job: str, namespace: str, instance: str) -> list[tuple[str, str]]:
    checks = substituted_dashboard_expressions(job=job, namespace=namespace, instance=instance)
    for rule in rules():
        if "record" in rule:
            checks.append((f"recording rule {rule['record']}", rule["expr"]))
        else:
            checks += [(f"alert {rule['alert']} operand", operand) for operand in operands(rule["expr"])]
    return checks


def failed_expressions(output: str) -> list[str]:
    return [json.loads(quoted) for quoted in re.findall(r'expr: ("(?:[^"\\]|\\.)*"), time:', output)]


def mixed_wave(wave: int) -> list[Record]:
    """Seeded images (some fail on injected faults), an unknown collection, and records that cannot be read."""
    records = [
        event(f"w{wave}-e{n}", "shop", f"w{wave}-p{n}", [f"w{wave}-{n}-{i}.jpg" for i in range(3)]) for n in range(8)
    ]
    records += [event(f"w{wave}-x{n}", "nowhere", f"w{wave}-q{n}", [f"w{wave}-x{n}.jpg"]) for n in range(2)]
    records.append((None, b"this is not json", []))
    records.append((b"k", json.dumps({"event_id": f"w{wave}-bad", "collection_name": "shop"}).encode(), []))
    return records


@pytest.mark.integration
def test_a_real_scrape_is_clean_and_feeds_every_dashboard_and_rule_expression(
    tmp_path: Path,
    kafka_bootstrap: str,
    topics: TopicsFactory,
    sandbox_process: SandboxFactory,
    service_process: ServiceFactory,
) -> None:
    names: Topics = topics(partitions=2)
    sandbox: SandboxProcess = sandbox_process(
        "--qps", "0", "--seed", "5", "--quota", "100000", "--unknown-collection-1030", "--latency-ms", "5",
        "--http-503-rate", "0.15", "--busy-rate", "0.1", "--item-error-rate", "0.05",
    )  # fmt: skip
    sandbox.seed(
        {"shop": [(f"w{w}-p{n}", f"w{w}-{n}-{i}.jpg") for w in range(WAVES) for n in range(8) for i in range(3)]}
    )
    # With the router (decision 0022): its series (ImgsweepRouterStalled) exist only then, and the pipeline's
    # series carry the account whose collections-topic partition they are on.
    service: ServiceProcess = service_process(
        names, sandbox, API__QPS="8", BATCH__MAX_ITEMS="5", API__MAX_ATTEMPTS="2", API__BACKOFF_MAX_SECONDS="0.2",
        KAFKA__REPARTITION="true",
    )  # fmt: skip
    service.wait_assigned(2)
    instance = f"127.0.0.1:{service.port}"
    target = {**TARGET_LABELS, "instance": instance}
    expositions = [service.exposition()]
    for wave in range(WAVES):
        produce(kafka_bootstrap, names.input, mixed_wave(wave))
        time.sleep(WAVE_SECONDS)
        expositions.append(service.exposition())
    (tmp_path / "last-scrape.txt").write_text(expositions[-1])

    # promtool's metric linter on what the service really exposes.
    lint = subprocess.run(
        [promtool(), "check", "metrics"], input=expositions[-1], capture_output=True, text=True, timeout=60, check=False
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert (lint.stdout + lint.stderr).strip() == ""  # no naming problem reported

    # Every expression of the dashboard and the rules returns data from the scraped series.
    checks = expressions_to_check(TARGET_LABELS["job"], TARGET_LABELS["namespace"], instance)
    assert len(checks) >= 60  # every panel target, variable, recording rule and alert operand
    eval_time = f"{(len(expositions) - 1) * SCRAPE_INTERVAL_SECONDS}s"
    test_file = tmp_path / "real-scrape.test.yaml"
    test_file.write_text(
        json.dumps(
            {
                "rule_files": [str(RULES)],
                "evaluation_interval": f"{SCRAPE_INTERVAL_SECONDS}s",
                "tests": [
                    {
                        "name": "real scrape",
                        "interval": f"{SCRAPE_INTERVAL_SECONDS}s",
                        "input_series": input_series([scraped_series(text, target) for text in expositions]),
                        "promql_expr_test": [
                            {
                                "expr": has_data(expr),
                                "eval_time": eval_time,
                                "exp_samples": [{"labels": "{}", "value": 1}],
                            }
                            for _, expr in [*checks, *CANARIES]
                        ],
                    }
                ],
            },
            indent=1,
        )
    )
    result = run_promtool("test", "rules", str(test_file))
    output = result.stdout + result.stderr
    origins = {has_data(expr): f"{origin}: {expr}" for origin, expr in [*checks, *CANARIES]}
    empty = {origins.get(wrapped, wrapped) for wrapped in failed_expressions(output)}
    canaries = {f"{origin}: {expr}" for origin, expr in CANARIES}
    assert empty - canaries == set(), (
        f"expressions that return no data (or only NaN) from the real scrape ({test_file}):\n"
        + "\n".join(sorted(empty - canaries))
    )
    assert empty == canaries, f"the check did not catch its canaries, so it proves nothing:\n{output[-4000:]}"


def test_scraped_series_are_labelled_as_prometheus_labels_them() -> None:
    exposition = (
        "# HELP x_total Things.\n# TYPE x_total counter\n"
        'x_total{job="inner",code="10000"} 3.0\n'
        "# HELP g A gauge.\n# TYPE g gauge\ng 1.5e+09\n"
    )
    series = scraped_series(exposition, {"job": "imgsweep", "instance": "h:1"})
    assert series == {
        'x_total{code="10000", exported_job="inner", instance="h:1", job="imgsweep"}': 3.0,
        'g{instance="h:1", job="imgsweep"}': 1.5e9,
        'up{instance="h:1", job="imgsweep"}': 1.0,
    }
    assert value_notation(1.5e9) == "1500000000"
    assert value_notation(1.2e-5) == "0.000012"
    assert input_series([{"a": 1.0}, {"a": 2.0, "b": 1.0}, {"b": 2.0}]) == [
        {"series": "a", "values": "1 2 stale"},
        {"series": "b", "values": "_ 1 2"},
    ]
