"""The Grafana dashboard and the Prometheus rules, checked as files: no Prometheus, no Grafana, no promtool.

The dashboard is held to grafana/dashboard-linter's rules, written here in Python over a small PromQL lexer:
a ``datasource`` variable exists and every panel and target uses it; every panel has a unit; every
``rate``/``irate``/``increase`` uses ``$__rate_interval``; a counter (``_total``, and a histogram's
``_bucket``/``_count``/``_sum``) appears only as the range argument of one of those; every selector is
narrowed by the ``namespace`` and ``job`` variables. Each rule is shown to catch a deliberately broken copy.

The rules file: every alert has a severity, a summary, a description and a runbook link whose anchor is a
heading of docs/runbooks.md; counters appear only inside ``rate``/``increase``; and the promtool test file
has, for every alert, a case where it fires and one where it stays quiet. (promtool itself runs in
tests/integration/test_observability.py.)
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "imgsweep-dashboard.json"
RULES = ROOT / "deploy" / "prometheus" / "imgsweep-rules.yaml"
RULES_TESTS = ROOT / "deploy" / "prometheus" / "imgsweep-rules.test.yaml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
METRICS_PACKAGE = ROOT / "service" / "metrics"
# The chart's default runbookBaseUrl: the file's path in the source tree, no host (helm/imgsweep/values.yaml).
RUNBOOK_URL = "docs/runbooks.md#"

DATASOURCE_REFS = frozenset({"$datasource", "${datasource}"})
RATE_FUNCTIONS = frozenset({"rate", "irate", "increase"})
RATE_INTERVAL = "[$__rate_interval]"
COUNTER_SUFFIXES = ("_total", "_bucket", "_count", "_sum")
SEVERITIES = frozenset({"critical", "warning", "info"})
# Grafana unit ids (packages/grafana-data/src/valueFormats/categories.ts) that suit this service.
GRAFANA_UNITS = frozenset(
    {
        "none", "short", "percent", "percentunit", "s", "ms", "µs", "ns", "m", "h", "d", "dtdurations",
        "ops", "reqps", "rps", "wps", "cps", "iops", "opm", "rpm", "cpm", "bytes", "decbytes",
        "bool", "bool_yes_no", "bool_on_off", "dateTimeAsIso", "dateTimeFromNow",
    }
)  # fmt: skip


# ---------------------------------------------------------------- a PromQL lexer, enough for the rules


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # string, matchers, range, number, ident, op
    text: str
    start: int
    end: int


_TOKENS = re.compile(
    r"""
    (?P<space>\s+|\#[^\n]*)
    |(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    |(?P<matchers>\{(?:[^{}"']|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')*\})
    |(?P<range>\[[^\]]*\])
    |(?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?:(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*)?)
    |(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    |(?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>=,()@])
    """,
    re.VERBOSE,
)
_MATCHER = re.compile(r"""\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')\s*,?""")
SET_OPERATORS = frozenset({"and", "or", "unless"})
COMPARISONS = frozenset({"==", "!=", ">", "<", ">=", "<="})
GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
AGGREGATIONS = frozenset(
    {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile"}
)
KEYWORDS = SET_OPERATORS | GROUPING | {"bool", "offset", "atan2", "inf", "nan", "Inf", "NaN"}


def tokenize(expr: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(expr):
        match = _TOKENS.match(expr, position)
        if match is None:
            raise ValueError(f"cannot lex PromQL at {position}: {expr[position : position + 30]!r} in {expr!r}")
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            tokens.append(Token(kind, match.group(), match.start(), match.end()))
        position = match.end()
    return tokens


@dataclass(frozen=True, slots=True)
class Selector:
    metric: str
    matchers: dict[str, tuple[str, str]]  # label -> (operator, value without quotes)
    range: str | None
    enclosing_call: str | None  # the function whose parentheses hold the selector ("" for plain parentheses)


@dataclass(frozen=True, slots=True)
class RangeUse:
    range: str
    enclosing_call: str | None


def _matchers(text: str) -> dict[str, tuple[str, str]]:
    found: dict[str, tuple[str, str]] = {}
    for label, operator, quoted in _MATCHER.findall(text[1:-1]):
        found[label] = (operator, quoted[1:-1])
    return found


def walk(expr: str) -> tuple[list[Selector], list[RangeUse]]:
    """The metric selectors of an expression and every range, each with the call it sits in."""
    tokens = tokenize(expr)
    stack: list[str] = []  # one entry per open parenthesis: the call's name, "" for grouping, "<labels>"
    selectors: list[Selector] = []
    ranges: list[RangeUse] = []
    pending_call: str | None = None
    labels_next = False
    for index, token in enumerate(tokens):
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        in_labels = bool(stack) and stack[-1] == "<labels>"
        if token.text == "(":
            if labels_next:
                stack.append("<labels>")
                labels_next = False
            else:
                stack.append(pending_call or "")
                pending_call = None
        elif token.text == ")":
            stack.pop()
        elif in_labels:
            continue
        elif token.kind == "range":
            ranges.append(RangeUse(token.text, stack[-1] if stack else None))
        elif token.kind == "ident" and token.text in GROUPING:
            labels_next = following is not None and following.text == "("
        elif token.kind == "ident" and following is not None and following.text == "(":
            pending_call = token.text
        elif token.kind == "ident" and token.text in AGGREGATIONS:
            pending_call = token.text  # `sum by (x) (...)`: the call's parenthesis comes after the labels
        elif token.kind == "ident" and token.text not in KEYWORDS:
            after = index + 1
            matchers: dict[str, tuple[str, str]] = {}
            if after < len(tokens) and tokens[after].kind == "matchers":
                matchers = _matchers(tokens[after].text)
                after += 1
            selector_range = tokens[after].text if after < len(tokens) and tokens[after].kind == "range" else None
            selectors.append(Selector(token.text, matchers, selector_range, stack[-1] if stack else None))
    return selectors, ranges


def _matching_close(tokens: list[Token], open_index: int) -> int:
    depth = 0
    for index in range(open_index, len(tokens)):
        if tokens[index].text == "(":
            depth += 1
        elif tokens[index].text == ")":
            depth -= 1
            if depth == 0:
                return index
    raise ValueError("unbalanced parentheses")


def _strip_modifiers(tokens: list[Token]) -> list[Token]:
    """Drops `bool`, `on (...)`, `ignoring (...)`, `group_left (...)` from the start of an operand."""
    while tokens and tokens[0].kind == "ident" and tokens[0].text in GROUPING | {"bool"}:
        if len(tokens) > 1 and tokens[1].text == "(" and tokens[0].text != "bool":
            tokens = tokens[_matching_close(tokens, 1) + 1 :]
        else:
            tokens = tokens[1:]
    return tokens


def operands(expr: str) -> list[str]:
    """The expressions a rule's condition is built from, split at comparisons and set operators.

    ``a > 0.05 and on (job) b == 0 unless (c == 1 or d == 1)`` gives ``a``, ``b``, ``c`` and ``d``:
    each should return data from a healthy service, although the whole condition (rightly) returns none.
    Number literals are dropped; arithmetic stays inside an operand.
    """
    tokens = tokenize(expr)
    found: list[str] = []

    def split(part: list[Token]) -> None:
        part = _strip_modifiers(part)
        if not part:
            return
        if part[0].text == "(" and _matching_close(part, 0) == len(part) - 1:
            inner = part[1:-1]
            if _top_level_splits(inner):
                for piece in _split_top_level(inner):
                    split(piece)
                return
        if _top_level_splits(part):
            for piece in _split_top_level(part):
                split(piece)
            return
        if len(part) == 1 and part[0].kind == "number":
            return
        found.append(expr[part[0].start : part[-1].end])

    split(tokens)
    return found


def _is_split(token: Token) -> bool:
    return (token.kind == "op" and token.text in COMPARISONS) or (token.kind == "ident" and token.text in SET_OPERATORS)


def _top_level_splits(tokens: list[Token]) -> bool:
    return any(True for _ in _split_points(tokens))


def _split_points(tokens: list[Token]) -> Iterator[int]:
    depth = 0
    for index, token in enumerate(tokens):
        if token.text == "(":
            depth += 1
        elif token.text == ")":
            depth -= 1
        elif depth == 0 and _is_split(token):
            yield index


def _split_top_level(tokens: list[Token]) -> list[list[Token]]:
    pieces: list[list[Token]] = []
    start = 0
    for point in _split_points(tokens):
        pieces.append(tokens[start:point])
        start = point + 1
    pieces.append(tokens[start:])
    return pieces


# ---------------------------------------------------------------- the dashboard linter


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def data_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    return (panel for panel in panels(dashboard) if panel.get("type") != "row")


def targets(dashboard: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in data_panels(dashboard):
        for target in panel.get("targets", []):
            yield panel, target


def dashboard_expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, expr) of every target and every query variable."""
    found = [
        (f"panel {panel['title']!r} target {target['refId']}", target["expr"]) for panel, target in targets(dashboard)
    ]
    for variable in dashboard["templating"]["list"]:
        if variable.get("type") == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            label_values = re.fullmatch(r"label_values\((.*),\s*\w+\)", text)
            found.append((f"variable {variable['name']}", label_values.group(1) if label_values else text))
    return found


def _ds_uid(holder: dict[str, Any]) -> str | None:
    datasource = holder.get("datasource")
    if isinstance(datasource, dict):
        uid = datasource.get("uid")
        return uid if isinstance(uid, str) else None
    return datasource if isinstance(datasource, str) else None


def lint_datasource(dashboard: dict[str, Any]) -> list[str]:
    problems = []
    variables = [v for v in dashboard.get("templating", {}).get("list", []) if v.get("type") == "datasource"]
    if not any(v.get("name") == "datasource" and v.get("query") == "prometheus" for v in variables):
        problems.append("template-datasource: no prometheus variable named 'datasource'")
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query" and _ds_uid(variable) not in DATASOURCE_REFS:
            problems.append(f"template-datasource: variable {variable.get('name')!r} does not use ${{datasource}}")
    for panel in data_panels(dashboard):
        if _ds_uid(panel) not in DATASOURCE_REFS:
            problems.append(f"panel-datasource: panel {panel.get('title')!r} uses {_ds_uid(panel)!r}")
    for panel, target in targets(dashboard):
        if _ds_uid(target) not in DATASOURCE_REFS:
            problems.append(
                f"panel-datasource: panel {panel.get('title')!r} target {target.get('refId')} uses {_ds_uid(target)!r}"
            )
    return problems


def lint_units(dashboard: dict[str, Any]) -> list[str]:
    problems = []
    for panel in data_panels(dashboard):
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        if unit not in GRAFANA_UNITS:
            problems.append(f"panel-units: panel {panel.get('title')!r} has unit {unit!r}")
    return problems


def lint_expression(expr: str) -> list[str]:
    """The expression-level rules, shared by dashboard targets (with their variables) and alert rules."""
    problems = []
    selectors, ranges = walk(expr)
    for use in ranges:
        if use.enclosing_call in RATE_FUNCTIONS and use.range != RATE_INTERVAL:
            problems.append(f"target-rate-interval: {use.enclosing_call}(...{use.range}) in {expr!r}")
    for selector in selectors:
        if selector.metric.endswith(COUNTER_SUFFIXES) and (
            selector.range is None or selector.enclosing_call not in RATE_FUNCTIONS
        ):
            problems.append(f"target-counter-agg: counter {selector.metric} outside rate/irate/increase in {expr!r}")
    return problems


def lint_rule_expression(expr: str) -> list[str]:
    """Rules have no $__rate_interval; they only need counters inside rate/irate/increase."""
    return [problem for problem in lint_expression(expr) if problem.startswith("target-counter-agg")]


def lint_matchers(expr: str) -> list[str]:
    problems = []
    for selector in walk(expr)[0]:
        for label in ("namespace", "job"):
            operator, value = selector.matchers.get(label, ("", ""))
            if operator not in {"=", "=~"} or value not in {f"${label}", f"${{{label}}}"}:
                problems.append(f'target-job: {selector.metric} lacks {label}=~"${label}" in {expr!r}')
    return problems


def lint(dashboard: dict[str, Any]) -> list[str]:
    problems = lint_datasource(dashboard) + lint_units(dashboard)
    for panel, target in targets(dashboard):
        expr = target.get("expr", "")
        if not expr:
            problems.append(f"panel-no-targets: panel {panel.get('title')!r} target {target.get('refId')} is empty")
            continue
        problems += lint_expression(expr) + lint_matchers(expr)
    for panel in data_panels(dashboard):
        if not panel.get("title") or not panel.get("description"):
            problems.append(f"panel-title-description: panel {panel.get('title')!r}")
        if not panel.get("targets"):
            problems.append(f"panel-no-targets: panel {panel.get('title')!r}")
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query" and variable.get("refresh") != 2:
            problems.append(f"template-on-time-change-reload: variable {variable.get('name')!r}")
    return problems


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return document


def test_the_dashboard_passes_the_linter(dashboard: dict[str, Any]) -> None:
    assert lint(dashboard) == []


def test_the_dashboard_has_the_variables_and_rows_the_issue_asks_for(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert "label_values(" in variables["namespace"]["query"]["query"]
    assert "label_values(" in variables["job"]["query"]["query"]
    rows = [panel["title"] for panel in dashboard["panels"] if panel["type"] == "row"]
    assert rows == [
        "Throughput and outcomes",
        "Failures",
        "Quota",
        "Call budget",
        "Brake and pauses",
        "API latency and batches",
        "Lag and in-flight",
        "Dead letters",
        "Pods and readiness",
    ]
    exprs = " ".join(target["expr"] for _, target in targets(dashboard))
    assert "histogram_quantile(" in exprs
    assert "/ 200" in exprs  # batch fill
    assert "imgsweep_quota_reset_seconds" in exprs  # projected exhaustion against the reset
    for budget in (  # issue 13, point 6: budget left, planned calls, reserve, exhaustion, waits, decisions
        "imgsweep_budget_calls_left",
        "imgsweep_budget_spendable_calls",
        "imgsweep_budget_reserve_calls",
        "imgsweep_budget_needed_calls",
        "imgsweep_budget_partial_calls_per_hour",
        "imgsweep_budget_projected_wait_seconds",
        "imgsweep_budget_limited",
        "imgsweep_budget_decisions_total",
        "imgsweep_budget_waiting_for_reset",
        "namespace_job:imgsweep_budget_spendable_calls:seconds_to_exhaustion1h",
    ):
        assert budget in exprs, budget
    for control in ("imgsweep_brake_tripped", "imgsweep_brake_busiest_collection_images", "imgsweep_paused"):
        assert control in exprs, control  # issue 21, point 3: the brake and the pauses


def row_panels(dashboard: dict[str, Any], title: str) -> list[dict[str, Any]]:
    """The panels under a row (an expanded row is followed by its panels until the next row)."""
    found: list[dict[str, Any]] = []
    inside = False
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            inside = panel["title"] == title
            found += panel.get("panels", []) if inside else []
        elif inside:
            found.append(panel)
    return found


def exposed_series() -> set[str]:
    """What service/metrics/ makes /metrics expose: the names it declares (imgsweep_*, as written there) and
    the series of the process collector it registers (asked of prometheus_client itself)."""
    from prometheus_client import ProcessCollector  # noqa: PLC0415 - only this test needs it

    source = "\n".join(path.read_text(encoding="utf-8") for path in sorted(METRICS_PACKAGE.glob("*.py")))
    declared = set(re.findall(r'"(imgsweep_[a-z_]+)"', source))
    assert "ProcessCollector(registry=r)" in source, "service/metrics/ no longer registers the process collector"
    process = {sample.name for family in ProcessCollector(registry=None).collect() for sample in family.samples}
    return declared | process


def test_the_pods_row_charts_cpu_memory_restarts_readiness_and_brokers_from_exposed_series(
    dashboard: dict[str, Any],
) -> None:
    pods = row_panels(dashboard, "Pods and readiness")
    by_title = {panel["title"]: panel for panel in pods}
    assert set(by_title) == {"Pod CPU", "Pod memory", "Restarts", "Readiness", "Brokers reachable"}
    expected = {
        "Pod CPU": {"process_cpu_seconds_total"},
        "Pod memory": {"process_resident_memory_bytes"},
        "Restarts": {"process_start_time_seconds"},
        "Readiness": {"imgsweep_ready"},
        "Brokers reachable": {"imgsweep_brokers_up"},
    }
    exposed = exposed_series()
    for title, panel in by_title.items():
        metrics = {selector.metric for target in panel["targets"] for selector in walk(target["expr"])[0]}
        assert metrics == expected[title], title
        assert metrics <= exposed, f"{title}: {metrics - exposed} is not exposed by service/metrics/"
    assert by_title["Pod memory"]["fieldConfig"]["defaults"]["unit"] == "bytes"
    # The row sits below every other panel, none overlapping it.
    row_y = next(p["gridPos"]["y"] for p in dashboard["panels"] if p.get("title") == "Pods and readiness")
    others = [p for p in dashboard["panels"] if p not in pods and p.get("title") != "Pods and readiness"]
    assert all(p["gridPos"]["y"] + p["gridPos"]["h"] <= row_y for p in others)


def test_the_exposed_series_check_can_fail() -> None:
    exposed = exposed_series()
    assert {"imgsweep_ready", "imgsweep_brokers_up", "process_resident_memory_bytes"} <= exposed
    assert "imgsweep_pod_restarts" not in exposed
    assert "kube_pod_container_status_restarts_total" not in exposed


def _first_target(dashboard: dict[str, Any]) -> dict[str, Any]:
    return next(targets(dashboard))[1]


def _break_datasource_variable(d: dict[str, Any]) -> None:
    d["templating"]["list"] = [v for v in d["templating"]["list"] if v["type"] != "datasource"]


def _break_panel_datasource(d: dict[str, Any]) -> None:
    next(data_panels(d))["datasource"] = {"type": "prometheus", "uid": "prometheus-prod"}


def _break_target_datasource(d: dict[str, Any]) -> None:
    _first_target(d)["datasource"] = {"type": "prometheus", "uid": "prometheus-prod"}


def _break_unit(d: dict[str, Any]) -> None:
    del next(data_panels(d))["fieldConfig"]["defaults"]["unit"]


def _break_rate_interval(d: dict[str, Any]) -> None:
    target = _first_target(d)
    target["expr"] = target["expr"].replace("[$__rate_interval]", "[5m]")


def _break_counter(d: dict[str, Any]) -> None:
    _first_target(d)["expr"] = 'sum(imgsweep_events_consumed_total{namespace=~"$namespace", job=~"$job"})'


def _break_job_matcher(d: dict[str, Any]) -> None:
    target = _first_target(d)
    target["expr"] = target["expr"].replace(', job=~"$job"', "")


@pytest.mark.parametrize(
    ("rule", "breaks"),
    [
        ("template-datasource", _break_datasource_variable),
        ("panel-datasource", _break_panel_datasource),
        ("panel-datasource", _break_target_datasource),
        ("panel-units", _break_unit),
        ("target-rate-interval", _break_rate_interval),
        ("target-counter-agg", _break_counter),
        ("target-job", _break_job_matcher),
    ],
)
def test_the_linter_catches_a_broken_copy(
    dashboard: dict[str, Any], rule: str, breaks: Callable[[dict[str, Any]], None]
) -> None:
    broken = copy.deepcopy(dashboard)
    breaks(broken)
    problems = lint(broken)
    assert problems, f"{rule} was not caught"
    assert {problem.split(":", 1)[0] for problem in problems} == {rule}, problems


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("rate(x_total[$__rate_interval])", set()),
        ("sum by (le) (rate(x_bucket[$__rate_interval]))", set()),
        ("max_over_time(gauge[1h]) / on (job) group_left (version) info", set()),
        ('sum by (code) (increase(x_total{code!="10000"}[$__rate_interval])) > bool 0', set()),
        ("increase(x_total[5m])", {"target-rate-interval"}),
        ("irate(x_total[1m])", {"target-rate-interval"}),
        ("x_total", {"target-counter-agg"}),
        ("sum without (instance) (x_total)", {"target-counter-agg"}),
        ("delta(x_total[$__rate_interval])", {"target-counter-agg"}),
        ("max_over_time(x_sum[1h])", {"target-counter-agg"}),
        ("x_count / on (job) group_left (version) info", {"target-counter-agg"}),
        ("rate(sum(x_total)[5m:])", {"target-counter-agg", "target-rate-interval"}),
    ],
)
def test_expression_rules(expr: str, expected: set[str]) -> None:
    assert {problem.split(":", 1)[0] for problem in lint_expression(expr)} == expected


def test_operands_split_a_condition_into_what_it_compares() -> None:
    expr = (
        '(a - b{x="y"} > 0 or delta(c[30m]) > 0) and on (namespace, job) sum by (job) (increase(d_total[5m])) == 0 '
        "unless on (job) (max by (job) (e) == 1 or max(f) == bool 1)"
    )
    assert operands(expr) == [
        'a - b{x="y"}',
        "delta(c[30m])",
        "sum by (job) (increase(d_total[5m]))",
        "max by (job) (e)",
        "max(f)",
    ]
    assert operands("x / y < on (job) (max by (job) (z) - 3600)") == ["x / y", "(max by (job) (z) - 3600)"]
    assert operands("sum(rate(x_total[5m]))") == ["sum(rate(x_total[5m]))"]


# ---------------------------------------------------------------- the rules and their tests


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def github_anchor(heading: str) -> str:
    """GitHub's heading slug: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_alert_is_labelled_annotated_and_linked_to_its_runbook() -> None:
    anchors = {github_anchor(line.lstrip("#")) for line in RUNBOOKS.read_text().splitlines() if line.startswith("## ")}
    assert alerts()
    for alert in alerts():
        name = alert["alert"]
        assert alert["labels"]["severity"] in SEVERITIES, name
        annotations = alert["annotations"]
        assert annotations["summary"], name
        assert annotations["description"], name
        assert annotations["runbook_url"].startswith(RUNBOOK_URL), name
        anchor = annotations["runbook_url"].removeprefix(RUNBOOK_URL)
        assert anchor in anchors, f"{name}: docs/runbooks.md has no heading for #{anchor}"
        assert name in RUNBOOKS.read_text(), f"{name} is not named in docs/runbooks.md"


def test_rules_use_counters_only_inside_rate_or_increase() -> None:
    for rule in rules():
        assert lint_rule_expression(rule["expr"]) == [], rule.get("alert") or rule.get("record")


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    document = yaml.safe_load(RULES_TESTS.read_text())
    firing: set[str] = set()
    quiet: set[str] = set()
    for test in document["tests"]:
        for case in test.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {alert["alert"] for alert in alerts()}
    assert names - firing == set(), "alerts never shown firing"
    assert names - quiet == set(), "alerts never shown quiet"
    assert (firing | quiet) - names == set(), "tests of alerts that do not exist"
