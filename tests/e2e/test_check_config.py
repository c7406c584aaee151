"""Configuration errors as an operator meets them: the CLI as its own process, exit 2, one line naming the setting.

`check-config` and `run` read the same settings and run the same librdkafka validation; `run` must never
print a traceback for a bad configuration. `check-config --probe` asks the real broker for its topics.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

EXIT_CONFIG = 2
SECRET = "hunter2-do-not-print"


def imgsweep(secrets_dir: Path, *args: str, settings: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m service ARGS` with only the given IMGSWEEP_* settings (dry-run, no secrets files)."""
    env = {name: value for name, value in os.environ.items() if not name.upper().startswith("IMGSWEEP_")}
    env |= {"IMGSWEEP_SECRETS_DIR": str(secrets_dir), "IMGSWEEP_DRY_RUN": "true"}
    env |= {f"IMGSWEEP_{name}": value for name, value in (settings or {}).items()}
    return subprocess.run(
        [sys.executable, "-m", "service", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    empty = tmp_path / "secrets"
    empty.mkdir()
    return empty


LIVE = {"DRY_RUN": "false", "API__ACCESS_KEY": "ak-not-real", "API__SECRET_KEY": SECRET}
"""Settings of a live run (the probe then asks for the live topics); the keys are never used."""

BAD_SETTINGS = {
    "properties not JSON": (
        {"KAFKA__PROPERTIES": "{bad"},
        "IMGSWEEP_KAFKA__PROPERTIES: is not valid JSON",
        'expected a JSON object of strings, e.g. {"security.protocol": "SASL_SSL"}',
    ),
    "a list setting given as a bare word": (
        {"API__ABSENT_REASONS": "NO_RELATIVE_IMAGE"},
        "IMGSWEEP_API__ABSENT_REASONS: is not valid JSON",
        'expected a JSON array of strings, e.g. ["NO_AVAILABLE_FEATURE", "NO_RELATIVE_IMAGE"]',
    ),
    "JSON of the wrong shape": (
        {"API__RETRYABLE_ITEM_REASONS": '{"DELETE_IMAGE_ERROR": true}'},
        "IMGSWEEP_API__RETRYABLE_ITEM_REASONS: Input should be a valid frozenset",
        "expected a JSON array of strings",
    ),
    "a property value that is not a string": (
        {"KAFKA__PROPERTIES": '{"linger.ms": 5}'},
        "IMGSWEEP_KAFKA__PROPERTIES: key 'linger.ms': Input should be a valid string",
        "",
    ),
    "a section set as a whole": (
        {"KAFKA": '{"group_id": "x"}'},
        "IMGSWEEP_KAFKA: is a section, not a setting",
        "IMGSWEEP_KAFKA__<NAME>",
    ),
    "a misspelt librdkafka property": (
        {"KAFKA__PROPERTIES": '{"sesion.timeout.ms": "45000"}'},
        "IMGSWEEP_KAFKA__PROPERTIES: librdkafka refuses the configuration",
        'No such configuration property: "sesion.timeout.ms"',
    ),
    "an invalid librdkafka value": (
        {"KAFKA__PROPERTIES": '{"compression.type": "brotli"}'},
        "IMGSWEEP_KAFKA__PROPERTIES: librdkafka refuses the configuration",
        '"compression.codec"',  # librdkafka names the property behind the alias
    ),
    "a TLS file that is not there": (
        {"KAFKA__PROPERTIES": '{"security.protocol": "SSL", "ssl.ca.location": "/nonexistent/ca.crt"}'},
        "IMGSWEEP_KAFKA__PROPERTIES: librdkafka property 'ssl.ca.location': /nonexistent/ca.crt does not exist",
        "extraVolumes",
    ),
    "SASL without credentials": (
        {"KAFKA__PROPERTIES": '{"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512"}'},
        "IMGSWEEP_KAFKA__SASL_USERNAME: librdkafka refuses the configuration",
        "sasl.username and sasl.password must be set",
    ),
}


@pytest.mark.parametrize("command", ["check-config", "run"])
@pytest.mark.parametrize(("settings", "named", "expected"), BAD_SETTINGS.values(), ids=BAD_SETTINGS.keys())
def test_a_bad_setting_exits_2_with_a_line_naming_it(
    secrets_dir: Path, command: str, settings: dict[str, str], named: str, expected: str
) -> None:
    result = imgsweep(secrets_dir, command, settings=settings)
    assert result.returncode == EXIT_CONFIG, result.stderr
    assert named in result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert "IMGSWEEP_SECRETS_DIR" not in result.stderr  # the old message blamed the secrets directory
    problem_lines = [line for line in result.stderr.splitlines() if "IMGSWEEP_" in line]
    assert len(problem_lines) == 1, result.stderr
    assert result.stdout == ""  # nothing printed as if valid


def test_the_working_configuration_passes_both_checks(secrets_dir: Path) -> None:
    result = imgsweep(
        secrets_dir,
        "check-config",
        settings={
            "KAFKA__PROPERTIES": '{"linger.ms": "7", "compression.type": "zstd"}',
            "API__ABSENT_REASONS": '["NO_RELATIVE_IMAGE"]',
        },
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "configuration is valid"
    assert '"linger.ms": "7"' in result.stdout


def test_secret_values_never_appear_in_configuration_errors(secrets_dir: Path) -> None:
    broken_json = f'{{"sasl.password": "{SECRET}", "security.protocol": "SASL_SSL"'
    refused = f'{{"sasl.password": "{SECRET}", "ssl.key.pem": "{SECRET}", "security.protocol": "SSL"}}'
    for properties in (broken_json, refused):
        result = imgsweep(secrets_dir, "check-config", settings={"KAFKA__PROPERTIES": properties})
        assert result.returncode == EXIT_CONFIG, result.stderr
        assert "IMGSWEEP_KAFKA__PROPERTIES" in result.stderr
        assert SECRET not in result.stderr + result.stdout


def test_run_refuses_an_http_port_it_cannot_listen_on(secrets_dir: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = imgsweep(secrets_dir, "run", settings={"HTTP__HOST": "127.0.0.1", "HTTP__PORT": str(port)})
    assert result.returncode == EXIT_CONFIG, result.stderr
    assert f"IMGSWEEP_HTTP__HOST / IMGSWEEP_HTTP__PORT: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------- --probe against the real broker


@pytest.mark.integration
def test_probe_passes_when_the_brokers_answer_and_the_three_topics_exist(
    kafka_bootstrap: str, new_topic: Callable[..., str], secrets_dir: Path
) -> None:
    names = {"KAFKA__INPUT_TOPIC": new_topic(), "KAFKA__OUTCOME_TOPIC": new_topic(), "KAFKA__DLQ_TOPIC": new_topic()}
    result = imgsweep(
        secrets_dir, "check-config", "--probe", settings={**LIVE, "KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap, **names}
    )
    assert result.returncode == 0, result.stderr
    assert "broker(s) answered" in result.stderr
    assert all(topic in result.stderr for topic in names.values())


@pytest.mark.integration
@pytest.mark.parametrize("missing", ["KAFKA__INPUT_TOPIC", "KAFKA__OUTCOME_TOPIC", "KAFKA__DLQ_TOPIC"])
def test_probe_names_the_missing_topic(
    kafka_bootstrap: str, new_topic: Callable[..., str], secrets_dir: Path, missing: str
) -> None:
    names = {"KAFKA__INPUT_TOPIC": new_topic(), "KAFKA__OUTCOME_TOPIC": new_topic(), "KAFKA__DLQ_TOPIC": new_topic()}
    names[missing] = "it-never-created-" + missing.lower().replace("_", "-")
    result = imgsweep(
        secrets_dir, "check-config", "--probe", settings={**LIVE, "KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap, **names}
    )
    assert result.returncode == EXIT_CONFIG, result.stderr
    problems = [line for line in result.stderr.splitlines() if line.startswith("imgsweep: ") and "warning" not in line]
    assert problems == [
        f"imgsweep: IMGSWEEP_{missing}: topic {names[missing]!r} does not exist on the brokers at {kafka_bootstrap} "
        "(or this user may not describe it): create it, or set the right name"
    ]


@pytest.mark.integration
def test_a_dry_run_probe_asks_for_the_dry_run_forms_of_the_output_topics(
    kafka_bootstrap: str, new_topic: Callable[..., str], secrets_dir: Path
) -> None:
    names = {"KAFKA__INPUT_TOPIC": new_topic(), "KAFKA__OUTCOME_TOPIC": new_topic(), "KAFKA__DLQ_TOPIC": new_topic()}
    result = imgsweep(
        secrets_dir, "check-config", "--probe", settings={"KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap, **names}
    )
    assert result.returncode == EXIT_CONFIG, result.stderr
    problems = [line for line in result.stderr.splitlines() if line.startswith("imgsweep: ") and "warning" not in line]
    assert problems == [
        f"imgsweep: IMGSWEEP_KAFKA__{name}: topic {names['KAFKA__' + name] + '.dry-run'!r} (its dry-run form: "
        f"IMGSWEEP_DRY_RUN is true) does not exist on the brokers at {kafka_bootstrap} (or this user may not "
        "describe it): create it, or set the right name"
        for name in ("OUTCOME_TOPIC", "DLQ_TOPIC")
    ]


@pytest.mark.integration
def test_probe_warns_when_the_demand_topic_is_missing_and_still_passes(
    kafka_bootstrap: str, new_topic: Callable[..., str], secrets_dir: Path
) -> None:
    names = {"KAFKA__INPUT_TOPIC": new_topic(), "KAFKA__OUTCOME_TOPIC": new_topic(), "KAFKA__DLQ_TOPIC": new_topic()}
    # no call budget: no budget topic (this group's would be missing too, and warned about as made at start)
    settings = {**LIVE, "KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap, **names, "API__DAILY_CALLS": "-1"}

    def demand_warnings(stderr: str) -> list[str]:
        """The warnings about the demand topic (the default deletions changelog is missing too on a fresh broker,
        and warned about as made at start)."""
        return [line for line in stderr.splitlines() if line.startswith("imgsweep: warning: IMGSWEEP_KAFKA__DEMAND")]

    missing = imgsweep(
        secrets_dir, "check-config", "--probe", settings={**settings, "KAFKA__DEMAND_TOPIC": "it-never-created-demand"}
    )
    assert missing.returncode == 0, missing.stderr
    (warning,) = demand_warnings(missing.stderr)
    assert "IMGSWEEP_KAFKA__DEMAND_TOPIC: topic 'it-never-created-demand' does not exist" in warning
    assert "share the QPS by partitions" in warning
    present = imgsweep(
        secrets_dir, "check-config", "--probe", settings={**settings, "KAFKA__DEMAND_TOPIC": new_topic()}
    )
    assert present.returncode == 0, present.stderr
    assert demand_warnings(present.stderr) == []
    by_partitions = {**settings, "KAFKA__DEMAND_TOPIC": "it-never-created-demand", "API__QPS_SHARE": "partitions"}
    assert demand_warnings(imgsweep(secrets_dir, "check-config", "--probe", settings=by_partitions).stderr) == []


@pytest.mark.integration
def test_where_it_may_not_make_topics_the_probe_names_the_budget_topic_a_spending_limit_needs(
    kafka_bootstrap: str, new_topic: Callable[..., str], secrets_dir: Path
) -> None:
    names = {"KAFKA__INPUT_TOPIC": new_topic(), "KAFKA__OUTCOME_TOPIC": new_topic(), "KAFKA__DLQ_TOPIC": new_topic()}
    settings = {
        **LIVE, "KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap, **names, "KAFKA__CREATE_TOPICS": "false",
        "KAFKA__BUDGET_TOPIC": "it-never-created-budget", "KAFKA__CONTROL_TOPIC": new_topic(),
        "KAFKA__DELETIONS_TOPIC": new_topic(), "KAFKA__REPARTITION": "false",
    }  # fmt: skip
    command = (
        f"kafka-topics.sh --bootstrap-server {kafka_bootstrap} --create --topic it-never-created-budget "
        "--partitions 1 --config cleanup.policy=compact"
    )
    daily = imgsweep(secrets_dir, "check-config", "--probe", settings=settings)
    assert daily.returncode == 0, daily.stderr  # only warnings: the budget topic, the demand topic
    budget_lines = [line for line in daily.stderr.splitlines() if "IMGSWEEP_KAFKA__BUDGET_TOPIC" in line]
    assert [line.startswith("imgsweep: warning: ") for line in budget_lines] == [True], daily.stderr
    assert command in budget_lines[0]
    limited = {**settings, "API__ALLOWANCE": "pack", "API__PRICE_PER_CALL": "0.1", "API__DAILY_SPEND_LIMIT": "1"}
    pack = imgsweep(secrets_dir, "check-config", "--probe", settings=limited)
    assert pack.returncode == EXIT_CONFIG, pack.stderr
    (problem,) = [line for line in pack.stderr.splitlines() if "IMGSWEEP_KAFKA__BUDGET_TOPIC" in line]
    assert not problem.startswith("imgsweep: warning: ")
    assert command in problem


@pytest.mark.integration
def test_where_it_may_not_make_topics_the_probe_names_the_collections_topic_and_its_changelog(
    kafka_bootstrap: str, new_topic: Callable[..., str], secrets_dir: Path
) -> None:
    """Behind the router (the default, decision 0022) a start makes the collections topic and the deletions
    changelog ``<deletions topic>.by-collection`` with the collections topic's partitions: where imgsweep may not
    make topics, the probe names both, each with its command; the router off, neither (the changelog as it was)."""
    names = {
        "KAFKA__INPUT_TOPIC": new_topic(partitions=3), "KAFKA__OUTCOME_TOPIC": new_topic(),
        "KAFKA__DLQ_TOPIC": new_topic(), "KAFKA__COLLECTIONS_TOPIC": "it-never-created-collections",
        "KAFKA__DELETIONS_TOPIC": "it-never-created-deletions",
        "KAFKA__CONTROL_TOPIC": new_topic(),  # there (the test below names it when it is not)
    }  # fmt: skip
    settings = {
        **LIVE, "KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap, **names, "KAFKA__CREATE_TOPICS": "false",
        "API__DAILY_CALLS": "-1",
    }  # fmt: skip
    create = f"create it with kafka-topics.sh --bootstrap-server {kafka_bootstrap} --create --topic"
    week = "--config retention.ms=604800000"

    def problems(result: subprocess.CompletedProcess[str]) -> list[str]:
        assert result.returncode == EXIT_CONFIG, result.stderr
        return sorted(
            line for line in result.stderr.splitlines() if "does not exist and IMGSWEEP_KAFKA__CREATE" in line
        )

    assert problems(imgsweep(secrets_dir, "check-config", "--probe", settings=settings)) == [
        "imgsweep: IMGSWEEP_KAFKA__COLLECTIONS_TOPIC: topic 'it-never-created-collections' does not exist and "
        f"IMGSWEEP_KAFKA__CREATE_TOPICS is false: {create} it-never-created-collections --partitions 3 "
        f"--config cleanup.policy=delete {week}",
        "imgsweep: IMGSWEEP_KAFKA__DELETIONS_TOPIC: topic 'it-never-created-deletions.by-collection' does not exist "
        f"and IMGSWEEP_KAFKA__CREATE_TOPICS is false: {create} it-never-created-deletions.by-collection "
        f"--partitions 3 --config cleanup.policy=compact,delete {week}",
    ]
    made = new_topic(partitions=4)  # made by hand with more: the changelog follows it
    assert problems(
        imgsweep(secrets_dir, "check-config", "--probe", settings={**settings, "KAFKA__COLLECTIONS_TOPIC": made})
    ) == [
        "imgsweep: IMGSWEEP_KAFKA__DELETIONS_TOPIC: topic 'it-never-created-deletions.by-collection' does not exist "
        f"and IMGSWEEP_KAFKA__CREATE_TOPICS is false: {create} it-never-created-deletions.by-collection "
        f"--partitions 4 --config cleanup.policy=compact,delete {week}",
    ]
    assert problems(
        imgsweep(secrets_dir, "check-config", "--probe", settings={**settings, "KAFKA__REPARTITION": "false"})
    ) == [
        "imgsweep: IMGSWEEP_KAFKA__DELETIONS_TOPIC: topic 'it-never-created-deletions' does not exist and "
        f"IMGSWEEP_KAFKA__CREATE_TOPICS is false: {create} it-never-created-deletions --partitions 3 "
        f"--config cleanup.policy=compact,delete {week}",
    ]


@pytest.mark.integration
def test_where_it_may_not_make_topics_the_probe_and_run_name_the_control_and_demand_topics(
    kafka_bootstrap: str, new_topic: Callable[..., str], secrets_dir: Path
) -> None:
    """The control topic is an internal topic like the others: where imgsweep may not make topics, the probe names it
    as a problem (no replica starts without it) with its exact command, and `run` stops with the same command
    instead of making it; the missing demand topic is a warning with its command (the probe still fails, for the
    control topic). Made by hand with those commands' settings, both are quiet."""
    names = {
        "KAFKA__INPUT_TOPIC": new_topic(), "KAFKA__OUTCOME_TOPIC": new_topic(), "KAFKA__DLQ_TOPIC": new_topic(),
        "KAFKA__DELETIONS_TOPIC": new_topic(), "KAFKA__CONTROL_TOPIC": "it-never-created-control",
        "KAFKA__DEMAND_TOPIC": "it-never-created-demand",
    }  # fmt: skip
    settings = {
        **LIVE, "KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap, **names, "KAFKA__CREATE_TOPICS": "false",
        "KAFKA__REPARTITION": "false", "API__DAILY_CALLS": "-1",
    }  # fmt: skip
    create = f"kafka-topics.sh --bootstrap-server {kafka_bootstrap} --create --topic"
    control = (
        f"{create} it-never-created-control --partitions 1 --config cleanup.policy=compact --config segment.ms=3600000 "
        "--config min.cleanable.dirty.ratio=0.1"
    )
    demand = (
        f"{create} it-never-created-demand --partitions 1 --config cleanup.policy=compact --config segment.ms=600000 "
        "--config min.cleanable.dirty.ratio=0.1"
    )

    probe = imgsweep(secrets_dir, "check-config", "--probe", settings=settings)
    assert probe.returncode == EXIT_CONFIG, probe.stderr
    problems = [line for line in probe.stderr.splitlines() if line.startswith("imgsweep: ") and "warning" not in line]
    assert problems == [
        "imgsweep: IMGSWEEP_KAFKA__CONTROL_TOPIC: topic 'it-never-created-control' does not exist and "
        f"IMGSWEEP_KAFKA__CREATE_TOPICS is false: create it with {control}"
    ]
    (warning,) = [line for line in probe.stderr.splitlines() if "IMGSWEEP_KAFKA__DEMAND_TOPIC" in line]
    assert warning.startswith("imgsweep: warning: IMGSWEEP_KAFKA__DEMAND_TOPIC: topic 'it-never-created-demand'")
    assert "share the QPS by partitions" in warning
    assert warning.endswith(f"IMGSWEEP_KAFKA__CREATE_TOPICS is false: create it with {demand}")

    run = imgsweep(secrets_dir, "run", settings=settings)
    assert run.returncode == EXIT_CONFIG, run.stderr[-2000:]
    (line,) = [line for line in run.stderr.splitlines() if "IMGSWEEP_KAFKA__CONTROL_TOPIC" in line]
    assert f"IMGSWEEP_KAFKA__CREATE_TOPICS is false; create it: {control}" in line, line
    assert "Traceback" not in run.stderr

    made = {**settings, "KAFKA__CONTROL_TOPIC": new_topic(), "KAFKA__DEMAND_TOPIC": new_topic()}
    quiet = imgsweep(secrets_dir, "check-config", "--probe", settings=made)
    assert quiet.returncode == 0, quiet.stderr
    assert [line for line in quiet.stderr.splitlines() if line.startswith("imgsweep: ") and "_TOPIC: " in line] == []


def test_probe_names_the_bootstrap_servers_when_no_broker_answers(secrets_dir: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as bound:  # a port nothing accepts on
        port = bound.getsockname()[1]
    result = imgsweep(
        secrets_dir,
        "check-config",
        "--probe",
        "--probe-timeout",
        "2",
        settings={"KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"},
    )
    assert result.returncode == EXIT_CONFIG, result.stderr
    assert f"IMGSWEEP_KAFKA__BOOTSTRAP_SERVERS: no broker at 127.0.0.1:{port} answered within 2 s" in result.stderr
    assert "Connection refused" in result.stderr
    assert "%3|" not in result.stderr  # librdkafka's own log lines stay out of the output


# ---------------------------------------------------------------- --probe-timeout, and replay-dlq's errors


@pytest.mark.parametrize("timeout", ["-1", "0", "301", "1e9", "nan", "inf", "soon"])
def test_a_probe_timeout_out_of_bounds_is_refused_with_a_clear_line(secrets_dir: Path, timeout: str) -> None:
    done = imgsweep(secrets_dir, "check-config", "--probe", "--probe-timeout", timeout)
    assert done.returncode == EXIT_CONFIG
    assert "the probe's wait must be a number of seconds above 0 and at most 300" in done.stderr
    assert "Traceback" not in done.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_replay_dlq_names_a_misspelt_error_class_and_the_ones_there_are(secrets_dir: Path) -> None:
    done = imgsweep(secrets_dir, "replay-dlq", "--error-class", "item_faild", settings={"DRY_RUN": "false"})
    assert done.returncode == EXIT_CONFIG
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("imgsweep replay-dlq: --error-class item_faild: not an error class imgsweep writes")
    assert "invalid_json" in line
    assert "item_failed" in line


def test_replay_dlq_refuses_a_wrong_librdkafka_property_as_run_does(secrets_dir: Path) -> None:
    settings = {"DRY_RUN": "false", "KAFKA__PROPERTIES": '{"bogus.prop": "1"}'}
    done = imgsweep(secrets_dir, "replay-dlq", settings=settings)
    assert done.returncode == EXIT_CONFIG
    (line,) = done.stderr.strip().splitlines()
    assert "IMGSWEEP_KAFKA__PROPERTIES" in line
    assert "bogus.prop" in line


def test_replay_dlq_with_no_broker_is_one_line_and_exit_2(secrets_dir: Path) -> None:
    settings = {"DRY_RUN": "false", "KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{_free_port()}", "LOG__LEVEL": "ERROR"}
    done = imgsweep(secrets_dir, "replay-dlq", settings=settings)
    assert done.returncode == EXIT_CONFIG
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("imgsweep replay-dlq: IMGSWEEP_KAFKA__BOOTSTRAP_SERVERS: Kafka at 127.0.0.1:")
    for line in done.stderr.strip().splitlines()[:-1]:  # librdkafka's own lines, through the JSON logger
        assert line.startswith("{")
