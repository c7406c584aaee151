"""The secret key never appears in logs (at DEBUG), metrics, outcome or dead-letter records."""

from __future__ import annotations

import json

import pytest

from devkit.fixtures import SandboxFactory, ServiceFactory, TopicsFactory
from devkit.processes import SECRET_KEY, consume_all, event, produce

pytestmark = pytest.mark.e2e


def test_the_secret_key_appears_nowhere(
    kafka_bootstrap: str, topics: TopicsFactory, sandbox_process: SandboxFactory, service_process: ServiceFactory
) -> None:
    names = topics(partitions=1)
    sandbox = sandbox_process("--qps", "0", "--http-503-rate", "0.3", "--item-error-rate", "0.2", "--seed", "3")
    sandbox.seed({"shop": [(f"p{n}", f"{n}.jpg") for n in range(20)]})
    records = [event(f"e{n}", "shop", f"p{n}", [f"{n}.jpg"]) for n in range(20)]
    records.append((b"bad", b"{broken", [("authorization", b"none")]))
    produce(kafka_bootstrap, names.input, records)
    service = service_process(
        names, sandbox, LOG__LEVEL="DEBUG", API__MAX_ATTEMPTS="3", BATCH__MAX_ITEMS="4", API__QPS="50"
    )
    outcomes = consume_all(kafka_bootstrap, names.outcome, expect=20, timeout=60)
    dead = consume_all(kafka_bootstrap, names.dlq, expect=1, timeout=30, settle=1)
    assert len(outcomes) == 20
    assert dead
    metrics = service.exposition()
    logs = service.logs()
    assert '"batch_id": "shop#' in logs  # retries are logged with the batch they belong to
    for line in logs.splitlines():
        if line.startswith("{"):
            json.loads(line)  # every log line is one JSON object
    everything = [logs, metrics] + [r.value or b"" for r in outcomes + dead]
    everything += [value for r in outcomes + dead for value in r.headers.values()]
    for blob in everything:
        data = blob.encode() if isinstance(blob, str) else blob
        assert SECRET_KEY.encode() not in data
    assert "e2e-access-key" not in metrics
