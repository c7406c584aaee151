"""Several accounts end to end (issue 13, point 1): each account's collections go to it, signed with its own keys.

Each sandbox stands for one JD account: it accepts only its own key pair (a call signed with another account's
keys is refused with 10001, which would stop the service) and counts its calls by collection. The service reads
both accounts' keys from files in its secrets directory, as the chart mounts them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devkit.fixtures import TEST_SETTINGS, SandboxFactory, TopicsFactory
from devkit.processes import Record, ServiceProcess, Topics, consume_all, event, produce

pytestmark = pytest.mark.e2e

SHOES_KEYS = ("e2e-shoes-access-key", "e2e-shoes-secret-key-never-shown")
REST_KEYS = ("e2e-rest-access-key", "e2e-rest-secret-key-never-shown")


def _records(collections: tuple[str, ...], per_collection: int) -> list[Record]:
    """One single-image delist per product, round the collections."""
    return [
        event(f"{name}-e{n}", name, f"{name}-p{n}", [f"{name}-{n}.jpg"])
        for n in range(per_collection)
        for name in collections
    ]


def _start_with_accounts(
    kafka_bootstrap: str, names: Topics, tmp_path: Path, keys: dict[str, tuple[str, str]], **settings: str
) -> ServiceProcess:
    """imgsweep with named accounts: each account's keys as files in its secrets directory (as the chart mounts
    them), every other setting (``ACCOUNTS__<NAME>__COLLECTIONS``, ``__ENDPOINT``...) from ``settings``."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for account, (access_key, secret_key) in keys.items():
        (secrets / f"IMGSWEEP_ACCOUNTS__{account}__ACCESS_KEY").write_text(access_key)
        (secrets / f"IMGSWEEP_ACCOUNTS__{account}__SECRET_KEY").write_text(secret_key)
    return ServiceProcess.start(
        bootstrap=kafka_bootstrap,
        topics=names,
        endpoint=None,
        log_path=tmp_path / "service.log",
        secrets_dir=secrets,
        settings={**TEST_SETTINGS, **settings},
    )


def test_two_accounts_each_get_only_their_collections_signed_with_their_own_keys(
    kafka_bootstrap: str, topics: TopicsFactory, sandbox_process: SandboxFactory, tmp_path: Path
) -> None:
    shoes_account = sandbox_process("--qps", "0", keys=SHOES_KEYS)
    rest_account = sandbox_process("--qps", "0", keys=REST_KEYS)
    per_collection = 30
    images = {name: [(f"{name}-p{n}", f"{name}-{n}.jpg") for n in range(per_collection)] for name in ("shoes", "boots")}
    shoes_account.seed(images)
    rest_account.seed({"bags": [(f"bags-p{n}", f"bags-{n}.jpg") for n in range(per_collection)]})
    names = topics(partitions=2)
    records = _records(("shoes", "boots", "bags", "hats"), per_collection)  # hats: a collection of no account
    produce(kafka_bootstrap, names.input, records)
    service = _start_with_accounts(
        kafka_bootstrap,
        names,
        tmp_path,
        {"SHOES": SHOES_KEYS, "REST": REST_KEYS},
        ACCOUNTS__SHOES__COLLECTIONS='["shoes", "boots"]',
        ACCOUNTS__SHOES__ENDPOINT=shoes_account.endpoint,
        ACCOUNTS__REST__COLLECTIONS='["bags"]',
        ACCOUNTS__REST__ENDPOINT=rest_account.endpoint,
        ACCOUNTS__REST__QPS="50",
        BATCH__MAX_ITEMS="7",
        API__QPS="20",
        LOG__LEVEL="DEBUG",
    )
    try:
        outcomes = consume_all(kafka_bootstrap, names.outcome, expect=len(records), timeout=90)
        dead = consume_all(kafka_bootstrap, names.dlq, expect=per_collection, timeout=30, settle=1)
        metrics, logs = service.exposition(), service.logs()
        shoes_calls = service.metric("imgsweep_api_calls_total", 'account="shoes",code="10000"')
        rest_calls = service.metric("imgsweep_api_calls_total", 'account="rest",code="10000"')
    finally:
        service.stop()

    by_status: dict[str, set[str]] = {}
    for outcome in outcomes:
        document = outcome.json()
        by_status.setdefault(document["status"], set()).add(document["collection_name"])
        if document["collection_name"] == "hats":
            assert {image["reason"] for image in document["images"]} == {"no_account"}
    assert by_status == {"deleted": {"shoes", "boots", "bags"}, "failed": {"hats"}}
    assert len(outcomes) == len(records)
    assert len(dead) == per_collection
    assert {record.header("imgsweep_error_class") for record in dead} == {b"no_account"}

    shoes_stats, rest_stats = shoes_account.stats(), rest_account.stats()
    assert set(shoes_stats["calls_by_code"]) == {"10000"}, "every call to the shoes account was signed by its keys"
    assert set(rest_stats["calls_by_code"]) == {"10000"}, "every call to the rest account was signed by its keys"
    assert set(shoes_stats["calls_by_collection"]) == {"shoes", "boots"}
    assert set(rest_stats["calls_by_collection"]) == {"bags"}
    assert shoes_account.admin("/admin/images")["collections"] == {"shoes": 0, "boots": 0}
    assert rest_account.admin("/admin/images")["collections"] == {"bags": 0}
    assert shoes_calls == sum(shoes_stats["calls_by_collection"].values()) >= 2 * per_collection / 7
    assert rest_calls == sum(rest_stats["calls_by_collection"].values()) >= per_collection / 7
    for line in logs.splitlines():
        if line.startswith("{"):
            json.loads(line)
    for secret in (SHOES_KEYS[1], REST_KEYS[1]):
        assert secret not in logs
        assert secret not in metrics
        assert all(secret.encode() not in (record.value or b"") for record in outcomes + dead)


@pytest.mark.parametrize("routed", [True, False], ids=["router", "input"])
def test_a_spent_pack_10010_holds_only_its_account_and_raises_its_alerts_metric(
    routed: bool, kafka_bootstrap: str, topics: TopicsFactory, sandbox_process: SandboxFactory, tmp_path: Path
) -> None:
    """One account's paid pack is spent (every call answered 10010): its events wait, probed rarely, and
    ``imgsweep_quota_payment_required{account}`` (what ``ImgsweepQuotaPaymentRequired`` fires on) is 1 for it
    alone, while the other account's events are deleted as usual. Behind the router each account has partitions
    of its own: the spent pack's (and only those) are paused; the router off, the accounts share the input's
    partitions and none is paused."""
    spent = sandbox_process("--qps", "0", "--payment-required", keys=SHOES_KEYS)
    free = sandbox_process("--qps", "0", keys=REST_KEYS)
    free.seed({"bags": [(f"bags-p{n}", f"bags-{n}.jpg") for n in range(20)]})
    names = topics(partitions=2)
    records = _records(("shoes", "bags"), 20)
    produce(kafka_bootstrap, names.input, records)
    service = _start_with_accounts(
        kafka_bootstrap,
        names,
        tmp_path,
        {"PACK": SHOES_KEYS, "FREE": REST_KEYS},
        ACCOUNTS__PACK__COLLECTIONS='["shoes"]',
        ACCOUNTS__PACK__ENDPOINT=spent.endpoint,
        ACCOUNTS__PACK__ALLOWANCE="pack",
        ACCOUNTS__FREE__COLLECTIONS='["bags"]',
        ACCOUNTS__FREE__ENDPOINT=free.endpoint,
        BATCH__MAX_ITEMS="5",
        API__QPS="20",
        KAFKA__REPARTITION=str(routed).lower(),
    )
    try:
        outcomes = consume_all(kafka_bootstrap, names.outcome, expect=20, timeout=60, settle=3)
        assert service.metric("imgsweep_quota_payment_required", 'account="pack"') == 1
        assert service.metric("imgsweep_quota_payment_required", 'account="free"') == 0
        assert service.metric("imgsweep_quota_exhausted", 'account="free"') == 0
        assert service.get("/readyz").status_code == 200, "a spent pack is not a fatal error"
        assigned = len(service.get("/readyz").json()["assigned_partitions"])
        paused = service.metric("imgsweep_paused_partitions")
    finally:
        service.stop()
    assert {outcome.json()["collection_name"] for outcome in outcomes} == {"bags"}
    assert {outcome.json()["status"] for outcome in outcomes} == {"deleted"}
    assert len(outcomes) == 20, "the spent pack's events wait: no outcome, no failure"
    if routed:  # 2 input partitions, 2 accounts: a collections topic of 2, one each
        assert (assigned, paused) == (2, 1), "only the spent pack's partition is paused"
    else:
        assert (assigned, paused) == (2, 0), "shared partitions: the free account still calls"
    assert spent.stats()["calls_by_code"] == {"10010": 1}, "one call learnt it; the next probe is an hour away"
    assert free.admin("/admin/images")["collections"] == {"bags": 0}
