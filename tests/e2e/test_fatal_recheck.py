"""A fatal API answer halts only its account, and a probe resumes it once fixed (issue 21, point 4).

Two accounts. The shoes account's sandbox holds another key pair than the service was given, so every call on
it is answered 10001 (unknown access key): fatal. The rest account keeps deleting meanwhile. The fix is made as
it is in life, outside the service: the shoes account's sandbox is replaced, on the same port, by one that
accepts the service's keys (JD's side now knows the key); the service is not restarted and resumes the account
by itself at its next probe.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from devkit.fixtures import SandboxFactory, TopicsFactory
from devkit.processes import consume_all, produce, wait_for
from tests.e2e.test_accounts import REST_KEYS, SHOES_KEYS, _records, _start_with_accounts

pytestmark = pytest.mark.e2e

OLD_SHOES_KEYS = ("e2e-shoes-old-access-key", "e2e-shoes-old-secret-key-never-shown")


def test_a_fatal_answer_halts_only_its_account_and_a_probe_resumes_it_once_the_key_is_fixed(
    kafka_bootstrap: str, topics: TopicsFactory, sandbox_process: SandboxFactory, tmp_path: Path
) -> None:
    broken = sandbox_process("--qps", "0", keys=OLD_SHOES_KEYS)  # JD does not know the service's shoes key yet
    rest = sandbox_process("--qps", "0", keys=REST_KEYS)
    per_collection = 20
    rest.seed({"bags": [(f"bags-p{n}", f"bags-{n}.jpg") for n in range(per_collection)]})
    names = topics(partitions=2)
    service = _start_with_accounts(
        kafka_bootstrap,
        names,
        tmp_path,
        {"SHOES": SHOES_KEYS, "REST": REST_KEYS},
        ACCOUNTS__SHOES__COLLECTIONS='["shoes"]',
        ACCOUNTS__SHOES__ENDPOINT=broken.endpoint,
        ACCOUNTS__REST__COLLECTIONS='["bags"]',
        ACCOUNTS__REST__ENDPOINT=rest.endpoint,
        BATCH__MAX_ITEMS="5",
        API__QPS="20",
        API__FATAL_PROBE_SECONDS="1",
        API__FATAL_PROBE_MAX_SECONDS="4",
    )
    records = _records(("shoes", "bags"), per_collection)
    try:
        produce(kafka_bootstrap, names.input, records)
        bags = consume_all(kafka_bootstrap, names.outcome, expect=per_collection, timeout=60, settle=3)
        assert {outcome.json()["collection_name"] for outcome in bags} == {"bags"}, "the halted account's wait"
        ready = service.get("/readyz")
        assert ready.status_code == 503
        halted = ready.json()["halted_accounts"]
        assert list(halted) == ["shoes"]
        assert halted["shoes"].startswith("API error 10001")
        assert ready.json()["fatal"] is None, "not the replica's halt"
        assert service.metric("imgsweep_account_halted", 'account="shoes"') == 1
        assert service.metric("imgsweep_account_halted", 'account="rest"') == 0
        wait_for(lambda: broken.stats()["calls_by_code"].get("10001", 0) >= 3, 30, "probes with a backoff")
        refused = broken.stats()["calls_by_code"]["10001"]

        # The fix: JD's side now accepts the service's shoes key (a sandbox with it, on the same address).
        port = urlsplit(broken.url).port
        assert port is not None
        broken.stop()
        # its images loaded before it listens: a probe retried on the refused connection comes at once
        images = [{"product_id": f"shoes-p{n}", "image_id": f"shoes-{n}.jpg"} for n in range(per_collection)]
        seed = tmp_path / "shoes.json"
        seed.write_text(json.dumps({"collection_name": "shoes", "items": images}))
        fixed = sandbox_process("--qps", "0", "--port", str(port), "--seed-file", str(seed), keys=SHOES_KEYS)

        outcomes = consume_all(kafka_bootstrap, names.outcome, expect=len(records), timeout=60, settle=3)
        wait_for(lambda: service.get("/readyz").status_code == 200, 30, "ready again after the probe")
        assert service.metric("imgsweep_account_halted", 'account="shoes"') == 0
        logs = service.logs()
    finally:
        service.stop()
    assert len(outcomes) == len(records)
    assert len({outcome.json()["event_id"] for outcome in outcomes}) == len(records), "each outcome once"
    assert {outcome.json()["status"] for outcome in outcomes} == {"deleted"}, "nothing failed for the halt"
    assert fixed.admin("/admin/images")["collections"] == {"shoes": 0}
    assert set(fixed.stats()["calls_by_code"]) == {"10000"}
    assert 3 <= refused <= 10, f"{refused} refused calls: the first, then about one probe per backoff"
    assert "FATAL for this account: API error 10001" in logs
    assert "the account's probe was answered, not fatal" in logs
    assert SHOES_KEYS[1] not in logs
