"""The sandbox over real loopback HTTP: every code, every fault mode and the admin endpoints, seen by httpx."""

from __future__ import annotations

import http.client
import json
import random
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from service.api.signing import Credentials, sign_request
from service.sandbox import DELETE_PATH, Faults, SandboxServer, SandboxState

pytestmark = pytest.mark.integration

CREDENTIALS = Credentials("AK-sandbox-test", "SK-sandbox-test")


@pytest.fixture
def state() -> SandboxState:
    return SandboxState(faults=Faults(qps=0), quota_limit=-1, rng=random.Random(11))


@pytest.fixture
def server(state: SandboxState) -> Iterator[SandboxServer]:
    with SandboxServer(state, credentials=CREDENTIALS) as running:
        yield running


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10.0) as http:
        yield http


def items(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"product_id": p, "image_id": i} for p, i in pairs]


def encode(document: object) -> bytes:
    return json.dumps(document).encode()


def call(
    client: httpx.Client,
    server: SandboxServer,
    body: bytes,
    *,
    credentials: Credentials = CREDENTIALS,
    signed_at: datetime | None = None,
    headers: dict[str, str] | None = None,
    timeout: float | None = None,
) -> httpx.Response:
    signed = sign_request(
        method="POST",
        url=server.endpoint,
        headers={"Content-Type": "application/json"},
        body=body,
        credentials=credentials,
        region="cn-north-1",
        service="aiapi",
        now=signed_at or datetime.now(UTC),
        nonce=str(uuid.uuid4()),
    )
    return client.post(
        server.endpoint, content=body, headers={**signed, **(headers or {})}, timeout=timeout or client.timeout
    )


def delete(client: httpx.Client, server: SandboxServer, collection: str, *pairs: tuple[str, str]) -> dict[str, Any]:
    response = call(client, server, encode({"collection_name": collection, "image_id_list": items(*pairs)}))
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def admin(client: httpx.Client, server: SandboxServer, path: str, document: object | None = None) -> Any:
    url = server.url + path
    response = client.get(url) if document is None else client.post(url, json=document)
    assert response.status_code == 200, response.text
    return response.json()


def seed(client: httpx.Client, server: SandboxServer, collection: str, *pairs: tuple[str, str]) -> None:
    admin(client, server, "/admin/images", {"collection_name": collection, "items": items(*pairs)})


# --- the happy path ----------------------------------------------------------------------------------------------


def test_deletes_present_images_and_reports_absent_ones(client: httpx.Client, server: SandboxServer) -> None:
    seed(client, server, "shoes", ("p1", "a.jpg"), ("p1", "b.jpg"))
    reply = delete(client, server, "shoes", ("p1", "a.jpg"), ("p2", "z.jpg"))
    assert reply == {
        "code": "10000",
        "charge": True,
        "remainTimes": -1,
        "remainSeconds": -1,
        "msg": "查询成功",
        "result": {
            "code": 0,
            "message": "SUCCESS",
            "successful_list": [{"product_id": "p1", "image_id": "a.jpg"}],
            "failed_list": [{"product_id": "p2", "image_id": "z.jpg", "message": "NO_AVAILABLE_FEATURE"}],
        },
    }
    listed = admin(client, server, "/admin/images?collection_name=shoes")
    assert listed == {
        "collection_name": "shoes",
        "exists": True,
        "count": 1,
        "items": [{"product_id": "p1", "image_id": "b.jpg"}],
    }
    stats = admin(client, server, "/admin/stats")
    assert (stats["items_deleted"], stats["items_absent"], stats["calls_by_code"]) == (1, 1, {"10000": 1})


def test_connections_are_kept_alive(server: SandboxServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        for _ in range(3):
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            assert (response.status, json.loads(response.read())) == (200, {"status": "ok"})
            assert response.getheader("Connection") is None
        assert connection.sock is not None  # never closed by the server in between
    finally:
        connection.close()


def test_deleted_more_than_once_is_counted(client: httpx.Client, server: SandboxServer) -> None:
    for _ in range(2):
        seed(client, server, "c", ("p", "i"))
        delete(client, server, "c", ("p", "i"))
    assert admin(client, server, "/admin/stats")["items_deleted_more_than_once"] == 1


# --- authentication ----------------------------------------------------------------------------------------------


def test_bad_signature_is_10047_and_counted(client: httpx.Client, server: SandboxServer) -> None:
    seed(client, server, "c", ("p", "i"))
    body = encode({"collection_name": "c", "image_id_list": items(("p", "i"))})
    response = call(client, server, body, credentials=Credentials(CREDENTIALS.access_key, "not-the-secret"))
    assert response.status_code == 200
    reply = response.json()
    assert (reply["code"], reply["charge"], reply["result"]) == ("10047", False, {})
    stats = admin(client, server, "/admin/stats")
    assert (stats["signature_failures"], stats["calls_by_code"]) == (1, {"10047": 1})
    assert admin(client, server, "/admin/images?collection_name=c")["count"] == 1


def test_stale_date_is_10045(client: httpx.Client, server: SandboxServer) -> None:
    response = call(client, server, b"{}", signed_at=datetime.now(UTC) - timedelta(minutes=6))
    assert response.json()["code"] == "10045"


def test_unknown_access_key_is_10001(client: httpx.Client, server: SandboxServer) -> None:
    response = call(client, server, b"{}", credentials=Credentials("AK-stranger", CREDENTIALS.secret_key))
    assert (response.json()["code"], response.json()["remainTimes"]) == ("10001", -1)


def test_malformed_authorization_is_10046(client: httpx.Client, server: SandboxServer) -> None:
    response = call(client, server, b"{}", headers={"Authorization": "JDCLOUD2-HMAC-SHA256 nonsense"})
    assert response.json()["code"] == "10046"
    assert admin(client, server, "/admin/stats")["signature_failures"] == 1


def test_a_body_changed_after_signing_is_10047(client: httpx.Client, server: SandboxServer) -> None:
    body = encode({"collection_name": "c", "image_id_list": items(("p", "i"))})
    signed = sign_request(
        method="POST",
        url=server.endpoint,
        headers={"Content-Type": "application/json"},
        body=body,
        credentials=CREDENTIALS,
        region="cn-north-1",
        service="aiapi",
        now=datetime.now(UTC),
        nonce=str(uuid.uuid4()),
    )
    response = client.post(server.endpoint, content=body.replace(b'"i"', b'"j"'), headers=signed)
    assert response.json()["code"] == "10047"


# --- business codes ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (b"{oops", 5001, "INVALID_PARAMETER_JSON"),
        (encode({"collection_name": "c", "image_id_list": {"p": "i"}}), 3050, "INVALID_IMAGE_ID_LIST"),
        (encode({"collection_name": "c", "image_id_list": []}), 3051, "EMPTY_IMAGE_ID_LIST"),
        (encode({"collection_name": "c", "image_id_list": items(("p", "i"), ("p", "i"))}), 3052, "DUPLICATE_IMAGE_ID"),
        (
            encode({"collection_name": "c", "image_id_list": items(*[("p", str(n)) for n in range(201)])}),
            3016,
            "IMAGE_NUM_EXCEED_TOTAL_LIMIT",
        ),
    ],
)
def test_business_rejections(client: httpx.Client, server: SandboxServer, body: bytes, code: int, message: str) -> None:
    server.state.configure_quota(limit=10)
    reply = call(client, server, body).json()
    assert reply == {
        "code": "10000",
        "charge": True,
        "remainTimes": 9,
        "remainSeconds": -1,
        "msg": "查询成功",
        "result": {"code": code, "message": message},
    }


def test_unknown_collection_1030_when_enabled(client: httpx.Client, server: SandboxServer) -> None:
    admin(client, server, "/admin/faults", {"unknown_collection_1030": True})
    assert delete(client, server, "ghost", ("p", "i"))["result"] == {"code": 1030, "message": "NO_RELATIVE_COLLECTION"}


def test_body_over_5_mb_is_413_and_uncharged(client: httpx.Client, server: SandboxServer) -> None:
    response = call(client, server, b" " * (5 * 1024 * 1024 + 1))
    assert response.status_code == 413
    assert response.headers["connection"] == "close"
    stats = admin(client, server, "/admin/stats")
    assert stats["calls_by_code"] == {"http_413": 1}
    exactly_5_mb = b"{}" + b" " * (5 * 1024 * 1024 - 2)
    assert call(client, server, exactly_5_mb).json()["result"]["code"] == 5001


# --- QPS and quota -----------------------------------------------------------------------------------------------


def test_qps_limit_10043(client: httpx.Client, server: SandboxServer) -> None:
    admin(client, server, "/admin/faults", {"qps": 1})
    codes = [delete(client, server, "c", ("p", "i"))["code"] for _ in range(2)]
    assert codes == ["10000", "10043"]
    stats = admin(client, server, "/admin/stats")
    assert stats["max_observed_qps"] >= 2
    time.sleep(1.05)
    assert delete(client, server, "c", ("p", "i"))["code"] == "10000"


def test_quota_counts_down_to_10040_and_admin_resets_it(client: httpx.Client, server: SandboxServer) -> None:
    assert admin(client, server, "/admin/quota", {"limit": 2})["remaining"] == 2
    replies = [delete(client, server, "c", ("p", "i")) for _ in range(3)]
    assert [(r["code"], r["charge"], r["remainTimes"]) for r in replies] == [
        ("10000", True, 1),
        ("10000", True, 0),
        ("10040", False, 0),
    ]
    quota = admin(client, server, "/admin/quota", {"reset": True})
    assert (quota["limit"], quota["remaining"]) == (2, 2)
    assert quota["resets_at"].endswith("T00:00:00+08:00")
    assert admin(client, server, "/admin/quota", {"remaining": 0})["remaining"] == 0
    assert delete(client, server, "c", ("p", "i"))["code"] == "10040"
    assert admin(client, server, "/admin/stats")["quota_remaining"] == 0


# --- faults ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("knob", "status"), [("http_503_rate", 503), ("http_500_rate", 500)])
def test_http_errors_have_non_json_bodies(client: httpx.Client, server: SandboxServer, knob: str, status: int) -> None:
    seed(client, server, "c", ("p", "i"))
    admin(client, server, "/admin/faults", {knob: 1.0})
    response = call(client, server, encode({"collection_name": "c", "image_id_list": items(("p", "i"))}))
    assert response.status_code == status
    assert response.headers["content-type"] == "text/html"
    with pytest.raises(json.JSONDecodeError):
        response.json()
    admin(client, server, "/admin/faults", {knob: 0.0})
    assert delete(client, server, "c", ("p", "i"))["result"]["successful_list"] == items(("p", "i"))
    stats = admin(client, server, "/admin/stats")
    assert stats["calls_by_code"] == {f"http_{status}": 1, "10000": 1}


@pytest.mark.parametrize(("knob", "code"), [("busy_rate", "10020"), ("publisher_error_rate", "11010")])
def test_gateway_faults(client: httpx.Client, server: SandboxServer, knob: str, code: str) -> None:
    admin(client, server, "/admin/faults", {knob: 1.0})
    reply = delete(client, server, "c", ("p", "i"))
    assert (reply["code"], reply["charge"]) == (code, False)


def test_hang_then_drop_closes_unanswered(client: httpx.Client, server: SandboxServer) -> None:
    seed(client, server, "c", ("p", "i"))
    admin(client, server, "/admin/faults", {"hang_rate": 1.0, "hang_seconds": 0.2})
    with pytest.raises(httpx.RemoteProtocolError):
        call(client, server, encode({"collection_name": "c", "image_id_list": items(("p", "i"))}))
    assert admin(client, server, "/admin/images?collection_name=c")["count"] == 1
    assert admin(client, server, "/admin/stats")["calls_by_code"] == {"hang": 1}


def test_hang_outlasts_a_client_timeout_and_stop_ends_it(state: SandboxState, client: httpx.Client) -> None:
    server = SandboxServer(state, credentials=CREDENTIALS).start()
    try:
        admin(client, server, "/admin/faults", {"hang_rate": 1.0, "hang_seconds": 60})
        with pytest.raises(httpx.ReadTimeout):
            call(client, server, b"{}", timeout=0.3)
    finally:
        started = time.monotonic()
        server.stop()
    assert time.monotonic() - started < 5


def test_hang_then_answer_processes_late(client: httpx.Client, server: SandboxServer) -> None:
    seed(client, server, "c", ("p", "i"))
    admin(client, server, "/admin/faults", {"hang_rate": 1.0, "hang_seconds": 0.2, "hang_then": "answer"})
    started = time.monotonic()
    reply = delete(client, server, "c", ("p", "i"))
    assert time.monotonic() - started >= 0.2
    assert reply["result"]["successful_list"] == items(("p", "i"))
    assert admin(client, server, "/admin/stats")["faults_injected"] == {"hang": 1}


def test_truncated_body_breaks_the_response_but_the_delete_happened(
    client: httpx.Client, server: SandboxServer
) -> None:
    seed(client, server, "c", ("p", "i"))
    admin(client, server, "/admin/faults", {"truncate_rate": 1.0})
    with pytest.raises(httpx.RemoteProtocolError):
        call(client, server, encode({"collection_name": "c", "image_id_list": items(("p", "i"))}))
    admin(client, server, "/admin/faults", {"truncate_rate": 0.0})
    assert admin(client, server, "/admin/images?collection_name=c")["count"] == 0
    assert delete(client, server, "c", ("p", "i"))["result"]["failed_list"][0]["message"] == "NO_AVAILABLE_FEATURE"
    assert admin(client, server, "/admin/stats")["calls_by_code"] == {"truncated": 1, "10000": 1}


def test_item_errors_keep_the_image(client: httpx.Client, server: SandboxServer) -> None:
    seed(client, server, "c", ("p", "i"))
    admin(client, server, "/admin/faults", {"item_error_rate": 1.0})
    failed = delete(client, server, "c", ("p", "i"))["result"]["failed_list"]
    assert failed == [{"product_id": "p", "image_id": "i", "message": "DELETE_IMAGE_ERROR"}]
    admin(client, server, "/admin/faults", {"item_error_rate": 0.0})
    assert delete(client, server, "c", ("p", "i"))["result"]["successful_list"] == items(("p", "i"))


def test_latency_is_added(client: httpx.Client, server: SandboxServer) -> None:
    admin(client, server, "/admin/faults", {"latency_ms": 150})
    started = time.monotonic()
    delete(client, server, "c", ("p", "i"))
    assert time.monotonic() - started >= 0.15


# --- admin -------------------------------------------------------------------------------------------------------


def test_admin_faults_read_update_and_refuse(client: httpx.Client, server: SandboxServer) -> None:
    assert admin(client, server, "/admin/faults")["qps"] == 0
    updated = admin(client, server, "/admin/faults", {"busy_rate": 0.1, "latency_jitter_ms": 5})
    assert (updated["busy_rate"], updated["latency_jitter_ms"], updated["qps"]) == (0.1, 5, 0)
    refused = client.post(server.url + "/admin/faults", json={"busy_rate": 3})
    assert refused.status_code == 400
    assert "busy_rate" in refused.json()["error"]
    assert client.post(server.url + "/admin/faults", json={"bogus": 1}).status_code == 400
    assert client.post(server.url + "/admin/quota", json={"limit": "ten"}).status_code == 400
    assert client.post(server.url + "/admin/images", content=b"{").status_code == 400
    assert client.post(server.url + "/admin/images", json={"collection_name": "c"}).status_code == 400


def test_admin_images_lists_collections(client: httpx.Client, server: SandboxServer) -> None:
    seed(client, server, "a", ("p", "1"), ("p", "2"))
    seed(client, server, "b")
    assert admin(client, server, "/admin/images") == {"collections": {"a": 2, "b": 0}}
    first = admin(client, server, "/admin/images?collection_name=a&limit=1")
    assert (first["count"], first["items"]) == (2, [{"product_id": "p", "image_id": "1"}])
    assert client.get(server.url + "/admin/images?collection_name=a&limit=x").status_code == 400
    missing = admin(client, server, "/admin/images?collection_name=zzz")
    assert (missing["exists"], missing["count"]) == (False, 0)
    added = client.post(server.url + "/admin/images", json={"collection_name": "a", "product_id": "p", "image_id": "3"})
    assert added.json() == {"collection_name": "a", "added": 1, "count": 3}


def test_admin_reset_stats_and_unknown_paths(client: httpx.Client, server: SandboxServer) -> None:
    delete(client, server, "c", ("p", "i"))
    assert admin(client, server, "/admin/reset-stats", {}) == {"status": "ok"}
    stats = admin(client, server, "/admin/stats")
    assert (stats["calls_total"], stats["max_observed_qps"]) == (0, 0)
    assert client.get(server.url + "/nope").status_code == 404
    assert client.post(server.url + "/nope", json={}).status_code == 404
    assert client.get(server.endpoint).status_code == 405
    assert server.endpoint.endswith(DELETE_PATH)


def test_retry_with_the_same_nonce_is_counted(client: httpx.Client, server: SandboxServer) -> None:
    body = encode({"collection_name": "c", "image_id_list": items(("p", "i"))})
    signed = sign_request(
        method="POST",
        url=server.endpoint,
        headers={"Content-Type": "application/json"},
        body=body,
        credentials=CREDENTIALS,
        region="cn-north-1",
        service="aiapi",
        now=datetime.now(UTC),
        nonce="fixed-nonce",
    )
    for _ in range(2):
        assert client.post(server.endpoint, content=body, headers=signed).json()["code"] == "10000"
    assert admin(client, server, "/admin/stats")["nonces_reused"] == 1
