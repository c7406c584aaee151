"""The sandbox's request parsing, reply shape, seed records and authentication order (pure, no I/O)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.api.signing import Credentials, sign_request
from service.sandbox.auth import AuthRefused, authenticate
from service.sandbox.protocol import BusinessResult, GatewayReply, parse_delete_body
from service.sandbox.seed import InvalidSeed, load_seed_file, parse_seed_record

CREDENTIALS = Credentials("AK-sandbox", "SK-sandbox")
URL = "http://127.0.0.1:8900/jdai/product_image_del_image"
NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)

ids = st.text(st.characters(codec="utf-8"), min_size=1, max_size=20)


@given(st.text(min_size=1, max_size=30), st.lists(st.tuples(ids, ids), min_size=1, max_size=200, unique=True))
def test_any_valid_body_parses_back_to_its_items(collection: str, items: list[tuple[str, str]]) -> None:
    raw = json.dumps(
        {"collection_name": collection, "image_id_list": [{"product_id": p, "image_id": i} for p, i in items]}
    ).encode()
    request = parse_delete_body(raw)
    assert (request.collection, list(request.items)) == (collection, items)


def test_reply_renders_the_contract_shape() -> None:
    result = BusinessResult(0, [("p1", "a.jpg")], [(("p2", "b.jpg"), "NO_AVAILABLE_FEATURE")])
    reply = GatewayReply("10000", charge=True, remain_times=4998, result=result)
    assert json.loads(reply.render()) == {
        "code": "10000",
        "charge": True,
        "remainTimes": 4998,
        "remainSeconds": -1,
        "msg": "查询成功",
        "result": {
            "code": 0,
            "message": "SUCCESS",
            "successful_list": [{"product_id": "p1", "image_id": "a.jpg"}],
            "failed_list": [{"product_id": "p2", "image_id": "b.jpg", "message": "NO_AVAILABLE_FEATURE"}],
        },
    }
    rejected = json.loads(GatewayReply("10000", charge=True, remain_times=1, result=BusinessResult(3052)).render())
    assert rejected["result"] == {"code": 3052, "message": "DUPLICATE_IMAGE_ID"}


any_string = st.text(max_size=12)  # surrogates, quotes, backslashes and control characters included


@given(st.lists(st.tuples(any_string, any_string)), st.lists(st.tuples(st.tuples(any_string, any_string), any_string)))
def test_hand_rendered_result_is_the_json_of_its_dict(
    successful: list[tuple[str, str]], failed: list[tuple[tuple[str, str], str]]
) -> None:
    result = BusinessResult(0, successful, failed)
    assert json.loads(result.render_json()) == result.as_dict()
    reply = GatewayReply("10000", charge=True, remain_times=-1, result=result).render()
    assert json.loads(reply.decode("utf-8"))["result"] == result.as_dict()
    refused = json.loads(GatewayReply("10047", charge=False, remain_times=-1, detail="why").render())
    assert (refused["msg"].endswith(": why"), refused["result"]) == (True, {})


# --- seed records ------------------------------------------------------------------------------------------------


def test_seed_records_take_a_list_or_one_image() -> None:
    batch = parse_seed_record({"collection_name": "c", "items": [{"product_id": "p", "image_id": "i"}]})
    assert (batch.collection, batch.items) == ("c", (("p", "i"),))
    assert parse_seed_record({"collection_name": "c", "product_id": "p", "image_id": "j"}).items == (("p", "j"),)
    api_body = {"collection_name": "c", "image_id_list": [{"product_id": "p", "image_id": "k"}]}
    assert parse_seed_record(api_body).items == (("p", "k"),)


@pytest.mark.parametrize(
    "record",
    [[], {"items": []}, {"collection_name": ""}, {"collection_name": "c"}, {"collection_name": "c", "items": [1]}],
)
def test_bad_seed_records_are_refused(record: object) -> None:
    with pytest.raises(InvalidSeed):
        parse_seed_record(record)


def test_seed_files_json_and_jsonl(tmp_path: Path) -> None:
    whole = tmp_path / "seed.json"
    whole.write_text(json.dumps([{"collection_name": "a", "items": [{"product_id": "p", "image_id": "1"}]}]))
    assert [b.collection for b in load_seed_file(whole)] == ["a"]
    lines = tmp_path / "seed.jsonl"
    lines.write_text(
        '{"collection_name": "a", "product_id": "p", "image_id": "1"}\n\n'
        '{"collection_name": "b", "product_id": "p", "image_id": "2"}\n'
    )
    assert [(b.collection, b.items) for b in load_seed_file(lines)] == [("a", (("p", "1"),)), ("b", (("p", "2"),))]
    lines.write_text('{"collection_name": "a", "product_id": "p", "image_id": "1"}\n{"collection_name": 3}\n')
    with pytest.raises(InvalidSeed, match=r"seed.jsonl:2: collection_name"):
        load_seed_file(lines)
    with pytest.raises(InvalidSeed, match="cannot read"):
        load_seed_file(tmp_path / "missing.json")


# --- authentication ----------------------------------------------------------------------------------------------


def signed(body: bytes = b"{}", *, credentials: Credentials = CREDENTIALS, at: datetime = NOW) -> dict[str, str]:
    return sign_request(
        method="POST",
        url=URL,
        headers={"Content-Type": "application/json"},
        body=body,
        credentials=credentials,
        region="cn-east-2",
        service="aiapi",
        now=at,
        nonce=str(uuid.uuid4()),
    )


def check(headers: dict[str, str], body: bytes = b"{}", *, now: datetime = NOW) -> None:
    authenticate(
        method="POST",
        target="/jdai/product_image_del_image",
        headers=[("Host", "127.0.0.1:8900"), *headers.items()],
        body=body,
        credentials=CREDENTIALS,
        now=now.timestamp(),
    )


def refusal(headers: dict[str, str], body: bytes = b"{}", *, now: datetime = NOW) -> str:
    with pytest.raises(AuthRefused) as refused:
        check(headers, body, now=now)
    return refused.value.code


def test_a_correctly_signed_request_passes_in_any_declared_region() -> None:
    check(signed())
    check(signed(), now=NOW + timedelta(minutes=5))


def test_each_failure_gets_its_gateway_code() -> None:
    assert refusal(signed(credentials=Credentials("AK-other", "SK-sandbox"))) == "10001"
    assert refusal(signed(), now=NOW + timedelta(minutes=5, seconds=1)) == "10045"
    assert refusal(signed(), now=NOW - timedelta(minutes=6)) == "10045"
    assert refusal({**signed(), "x-jdcloud-date": "2024-03-01 12:00"}) == "10046"
    assert refusal({**signed(), "Authorization": "Bearer abc"}) == "10046"
    assert refusal({k: v for k, v in signed().items() if k != "Authorization"}) == "10046"
    assert refusal(signed(credentials=Credentials("AK-sandbox", "wrong"))) == "10047"
    assert refusal(signed(b'{"a": 1}'), b'{"a": 2}') == "10047"


def test_a_repeated_header_is_refused_not_collapsed() -> None:
    headers = signed()
    with pytest.raises(AuthRefused) as refused:
        authenticate(
            method="POST",
            target="/jdai/product_image_del_image",
            headers=[("Host", "127.0.0.1:8900"), *headers.items(), ("Content-Type", "text/plain")],
            body=b"{}",
            credentials=CREDENTIALS,
            now=NOW.timestamp(),
        )
    assert refused.value.code == "10047"
