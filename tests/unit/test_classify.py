"""Every code in the API contract maps to the class the contract gives it; nothing a server says crashes."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.api.classify import NOT_REPORTED, ResponsePolicy, classify_response, parse_retry_after
from service.api.errors import (
    ApiError,
    BatchRejected,
    FatalApiError,
    PaymentRequired,
    QuotaExhausted,
    RateLimited,
    TransientApiError,
)
from service.api.models import DeleteBatch, DeleteItem, ItemStatus

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
A, B, C = DeleteItem("p1", "a.jpg"), DeleteItem("p1", "b.jpg"), DeleteItem("p2", "c.jpg")
BATCH = DeleteBatch("shop", (A, B, C), "b1")
POLICY = ResponsePolicy()


def classify(document: object, status: int = 200, headers: dict[str, str] | None = None) -> object:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    return classify_response(status=status, headers=headers or {}, body=body, batch=BATCH, policy=POLICY, now=NOW)


def envelope(code: str, result: object = None, **extra: object) -> dict[str, object]:
    return {
        "code": code,
        "charge": False,
        "remainTimes": 10,
        "remainSeconds": -1,
        "msg": "m",
        "result": result,
        **extra,
    }


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("10020", TransientApiError),
        ("10030", TransientApiError),
        ("11010", TransientApiError),
        ("11030", TransientApiError),
        ("10043", RateLimited),
        ("10044", RateLimited),
        ("10040", QuotaExhausted),
        ("10010", PaymentRequired),  # a paid pack ran out: its own state, not the daily quota
        ("10001", FatalApiError),
        ("10045", FatalApiError),
        ("10046", FatalApiError),
        ("10047", FatalApiError),
        ("10048", FatalApiError),
        ("10050", FatalApiError),
        ("10060", FatalApiError),
        ("19999", TransientApiError),  # unknown: bounded retries, then a dead letter
    ],
)
def test_system_codes(code: str, error: type[ApiError]) -> None:
    with pytest.raises(error) as raised:
        classify(envelope(code))
    assert type(raised.value) is error
    assert raised.value.code == code


def test_rate_limited_is_transient_but_fatal_and_quota_are_not() -> None:
    assert issubclass(RateLimited, TransientApiError)
    assert not issubclass(QuotaExhausted, TransientApiError)
    assert issubclass(PaymentRequired, QuotaExhausted)
    assert not issubclass(FatalApiError, TransientApiError)


def test_no_such_data_fails_every_item_for_good() -> None:
    result = classify(envelope("10003"))
    assert [(r.status, r.reason, r.retryable) for r in result.items] == [  # type: ignore[attr-defined]
        (ItemStatus.FAILED, "NO_SUCH_DATA", False)
    ] * 3


@pytest.mark.parametrize(
    ("status", "error", "code"),
    [
        (500, TransientApiError, "http_500"),
        (502, TransientApiError, "http_502"),
        (503, TransientApiError, "http_503"),
        (504, TransientApiError, "http_504"),
        (429, RateLimited, "http_429"),
        (401, FatalApiError, "http_401"),
        (403, FatalApiError, "http_403"),
        (404, FatalApiError, "http_404"),
        (413, BatchRejected, "http_413"),
        (200, TransientApiError, "bad_body"),
    ],
)
def test_http_statuses_without_an_api_body(status: int, error: type[ApiError], code: str) -> None:
    with pytest.raises(error) as raised:
        classify(b"<html>Bad Gateway</html>", status=status)
    assert raised.value.code == code


def test_an_api_code_wins_over_the_http_status() -> None:
    with pytest.raises(QuotaExhausted):
        classify(envelope("10040"), status=429)


def test_success_code_on_an_error_status_is_not_trusted() -> None:
    with pytest.raises(TransientApiError):
        classify(envelope("10000", {"code": 0, "successful_list": []}), status=500)


@pytest.mark.parametrize("business", [3016, 3050, 3051, 3052, 3053, 5001])
def test_batch_rejections(business: int) -> None:
    with pytest.raises(BatchRejected) as raised:
        classify(envelope("10000", {"code": business, "message": "X"}))
    assert raised.value.code == str(business)


@pytest.mark.parametrize("business", [3032, 5000])
def test_business_codes_worth_another_call(business: int) -> None:
    with pytest.raises(TransientApiError):
        classify(envelope("10000", {"code": business}))


def test_no_relative_image_for_the_whole_call_means_absent() -> None:
    result = classify(envelope("10000", {"code": 1031, "message": "NO_RELATIVE_IMAGE"}))
    assert {r.status for r in result.items} == {ItemStatus.ABSENT}  # type: ignore[attr-defined]


def test_unknown_collection_fails_every_item_with_the_reason() -> None:
    result = classify(envelope("10000", {"code": 1030, "message": "NO_RELATIVE_COLLECTION"}))
    assert {(r.status, r.reason) for r in result.items} == {  # type: ignore[attr-defined]
        (ItemStatus.FAILED, "NO_RELATIVE_COLLECTION")
    }


@pytest.mark.parametrize("success_key", ["successful_list", "succeeded_list"])
def test_per_item_results(success_key: str) -> None:
    result = classify(
        envelope(
            "10000",
            {
                "code": 0,
                "message": "SUCCESS",
                success_key: [{"product_id": "p1", "image_id": "a.jpg"}],
                "failed_list": [
                    {"product_id": "p1", "image_id": "b.jpg", "message": "NO_AVAILABLE_FEATURE"},
                    {"product_id": "p2", "image_id": "c.jpg", "message": "DELETE_IMAGE_ERROR"},
                    {"product_id": "zz", "image_id": "not-ours", "message": "X"},
                ],
            },
            charge=True,
            remainTimes=4998,
        )
    )
    by_item = {r.item: r for r in result.items}  # type: ignore[attr-defined]
    assert by_item[A].status is ItemStatus.DELETED
    assert (by_item[B].status, by_item[B].reason) == (ItemStatus.ABSENT, "NO_AVAILABLE_FEATURE")
    assert (by_item[C].status, by_item[C].reason, by_item[C].retryable) == (
        ItemStatus.FAILED,
        "DELETE_IMAGE_ERROR",
        True,
    )
    assert result.quota.remain_times == 4998  # type: ignore[attr-defined]
    assert result.quota.charge is True  # type: ignore[attr-defined]


def test_texts_a_server_sends_are_made_safe_to_publish() -> None:
    """JSON can carry lone surrogates; a reason is written into an outcome and a log line, both UTF-8."""
    body = (
        b'{"code": "10000", "remainTimes": 9, "result": {"code": 0, "message": "SUCCESS", "failed_list": ['
        b'{"product_id": "p1", "image_id": "a.jpg", "message": "BAD \\ud800 ID"}]}}'
    )
    result = classify(body)
    reason = next(r.reason for r in result.items if r.item == A)  # type: ignore[attr-defined]
    assert reason == "BAD \ufffd ID"
    with pytest.raises(TransientApiError) as raised:
        classify(b'{"code": "10020", "msg": "busy \\udfff"}')
    assert raised.value.message.encode("utf-8") == "busy \ufffd".encode()


def test_reasons_are_configurable() -> None:
    policy = ResponsePolicy(absent_reasons=frozenset({"GONE"}), retryable_reasons=frozenset())
    body = json.dumps(
        envelope(
            "10000",
            {
                "code": 0,
                "failed_list": [
                    {"product_id": "p1", "image_id": "a.jpg", "message": "GONE"},
                    {"product_id": "p1", "image_id": "b.jpg", "message": "NO_AVAILABLE_FEATURE"},
                    {"product_id": "p2", "image_id": "c.jpg", "message": "DELETE_IMAGE_ERROR"},
                ],
            },
        )
    ).encode()
    result = classify_response(status=200, headers={}, body=body, batch=BATCH, policy=policy, now=NOW)
    assert [(r.status, r.retryable) for r in result.items] == [
        (ItemStatus.ABSENT, False),
        (ItemStatus.FAILED, False),
        (ItemStatus.FAILED, False),
    ]


def test_items_the_response_forgot_are_retried_not_guessed() -> None:
    result = classify(envelope("10000", {"code": 0, "successful_list": [{"product_id": "p1", "image_id": "a.jpg"}]}))
    forgotten = [r for r in result.items if r.item != A]  # type: ignore[attr-defined]
    assert {(r.status, r.reason, r.retryable) for r in forgotten} == {(ItemStatus.FAILED, NOT_REPORTED, True)}


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b'{"code": "10000", "result": {"code": 0, "successful_list": [',  # truncated
        b"\xff\xfe not utf-8",
        b"[1, 2]",
        b'{"code": "10000"}',
        b'{"code": "10000", "result": "SUCCESS"}',
        b'{"code": "10000", "result": {"code": "zero"}}',
        b"[" * 100_000,
    ],
)
def test_odd_bodies_are_transient(body: bytes) -> None:
    with pytest.raises(TransientApiError):
        classify(body)


def test_retry_after_is_carried() -> None:
    with pytest.raises(TransientApiError) as raised:
        classify(b"busy", status=503, headers={"retry-after": "7"})
    assert raised.value.retry_after == 7.0


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after("12", NOW) == 12.0
    assert parse_retry_after("Mon, 23 Nov 2026 12:00:30 GMT", NOW) == 30.0
    assert parse_retry_after("Mon, 23 Nov 2026 11:00:00 GMT", NOW) == 0.0
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after(None, NOW) is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=15), children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(
    status=st.sampled_from([200, 201, 400, 401, 403, 404, 413, 429, 500, 502, 503]),
    document=st.fixed_dictionaries(
        {},
        optional={
            "code": st.sampled_from(["10000", "10043", "10040", "10047", "10003", "x"]) | json_values,
            "result": st.fixed_dictionaries(
                {},
                optional={
                    "code": st.integers(-5, 6000) | json_values,
                    "successful_list": json_values,
                    "succeeded_list": json_values,
                    "failed_list": json_values,
                },
            )
            | json_values,
            "remainTimes": json_values,
            "charge": json_values,
        },
    ),
)
def test_nothing_a_server_returns_crashes_the_classifier(status: int, document: dict[str, object]) -> None:
    try:
        result = classify(document, status=status)
    except ApiError:
        return
    assert [r.item for r in result.items] == list(BATCH.items)  # type: ignore[attr-defined]
