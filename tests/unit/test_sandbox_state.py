"""The sandbox's decisions without HTTP: quota, QPS window, business checks, per-item results, faults, stats."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from service.sandbox.protocol import ABSENT_REASON, ITEM_ERROR_REASON, GatewayReply
from service.sandbox.state import (
    UNLIMITED,
    CallPlan,
    DailyQuota,
    Faults,
    QpsWindow,
    SandboxState,
    TransportFault,
)
from tests.support.clock import FakeClock

# 2024-03-01 15:59:00 UTC is 23:59:00 in China Standard Time: one minute before the daily reset.
BEFORE_MIDNIGHT_CST = datetime(2024, 3, 1, 15, 59, tzinfo=UTC).timestamp()


def body(collection: str, *items: tuple[str, str]) -> bytes:
    return json.dumps(
        {"collection_name": collection, "image_id_list": [{"product_id": p, "image_id": i} for p, i in items]}
    ).encode()


def make_state(
    *,
    qps: int = 0,
    quota: int = UNLIMITED,
    clock: FakeClock | None = None,
    wall: FakeClock | None = None,
    **faults: object,
) -> SandboxState:
    return SandboxState(
        faults=Faults.model_validate({"qps": qps, **faults}),
        quota_limit=quota,
        rng=random.Random(7),
        clock=clock or FakeClock(),
        wall_clock=wall or FakeClock(BEFORE_MIDNIGHT_CST),
    )


def lists(reply: GatewayReply) -> tuple[list[object], list[object]]:
    """The two item lists as the client will read them (through the rendered JSON)."""
    result = json.loads(reply.render())["result"]
    return result["successful_list"], result["failed_list"]


# --- quota -------------------------------------------------------------------------------------------------------


def test_quota_counts_down_then_answers_10040_uncharged() -> None:
    state = make_state(quota=3)
    state.seed_images("c", [("p", "i")])
    replies = [state.handle_delete(body("c", ("p", "i"))) for _ in range(4)]
    assert [(r.code, r.charge, r.remain_times) for r in replies] == [
        ("10000", True, 2),
        ("10000", True, 1),
        ("10000", True, 0),
        ("10040", False, 0),
    ]
    assert state.stats().calls_by_code == {"10000": 3, "10040": 1}


def test_quota_refills_at_midnight_china_standard_time() -> None:
    wall = FakeClock(BEFORE_MIDNIGHT_CST)
    state = make_state(quota=1, wall=wall)
    assert state.handle_delete(body("c", ("p", "i"))).remain_times == 0
    assert state.handle_delete(body("c", ("p", "i"))).code == "10040"
    wall.advance(59)  # 23:59:59 CST: still the same day
    assert state.handle_delete(body("c", ("p", "i"))).code == "10040"
    wall.advance(1)  # 00:00:00 CST
    reply = state.handle_delete(body("c", ("p", "i")))
    assert (reply.code, reply.remain_times) == ("10000", 0)


def test_a_spent_paid_pack_answers_10010_uncharged_until_topped_up() -> None:
    state = make_state(quota=3, payment_required=True)
    state.seed_images("c", [("p", "i")])
    refused = state.handle_delete(body("c", ("p", "i")))
    assert (refused.code, refused.charge, refused.remain_times) == ("10010", False, 0)
    assert json.loads(refused.render())["code"] == "10010"
    state.update_faults({"payment_required": False})
    assert state.handle_delete(body("c", ("p", "i"))).code == "10000"
    assert state.stats().calls_by_code == {"10010": 1, "10000": 1}


def test_quota_status_names_the_next_reset() -> None:
    state = make_state(quota=5)
    status = state.quota_status()
    assert status.resets_at == BEFORE_MIDNIGHT_CST + 60
    assert (status.limit, status.remaining) == (5, 5)


def test_unlimited_quota_never_runs_out_and_says_minus_one() -> None:
    state = make_state(quota=UNLIMITED)
    replies = [state.handle_delete(body("c", ("p", str(n)))) for n in range(50)]
    assert {(r.code, r.remain_times) for r in replies} == {("10000", -1)}


def test_configure_quota_limit_remaining_and_reset() -> None:
    state = make_state(quota=10)
    assert state.configure_quota(limit=4).remaining == 4
    assert state.configure_quota(remaining=1).remaining == 1
    state.handle_delete(body("c", ("p", "i")))
    assert state.handle_delete(body("c", ("p", "i"))).code == "10040"
    assert state.configure_quota(reset=True).remaining == 4
    assert state.handle_delete(body("c", ("p", "i"))).code == "10000"
    with pytest.raises(ValueError, match="remaining"):
        state.configure_quota(remaining=5)
    with pytest.raises(ValueError, match="quota limit"):
        state.configure_quota(limit=-2)


def test_daily_quota_unlimited_refuses_a_remaining_count() -> None:
    quota = DailyQuota(UNLIMITED, BEFORE_MIDNIGHT_CST)
    with pytest.raises(ValueError, match="limited quota"):
        quota.configure(limit=None, remaining=3, reset=False)


# --- QPS ---------------------------------------------------------------------------------------------------------


def test_qps_window_admits_limit_per_sliding_second() -> None:
    window = QpsWindow()
    assert window.admit(10.0, 2)
    assert window.admit(10.4, 2)
    assert not window.admit(10.9, 2)  # third within a second
    assert window.admit(11.0, 2)  # the call at 10.0 left the window exactly one second later
    assert not window.admit(11.3, 2)
    assert window.admit(11.41, 2)
    assert window.max_observed == 4  # arrivals in (10.3, 11.3]: 10.4, 10.9, 11.0, 11.3 (refused ones count)


def test_refused_calls_do_not_take_a_place_in_the_window() -> None:
    window = QpsWindow()
    assert window.admit(0.0, 1)
    for step in range(1, 10):
        assert not window.admit(step / 10, 1)
    assert window.admit(1.0, 1)


def test_qps_limit_answers_10043_uncharged_and_records_max_observed() -> None:
    clock = FakeClock(100.0)
    state = make_state(qps=2, quota=10, clock=clock)
    replies = []
    for _ in range(3):
        replies.append(state.handle_delete(body("c", ("p", "i"))))
        clock.advance(0.1)
    assert [(r.code, r.charge, r.remain_times) for r in replies] == [
        ("10000", True, 9),
        ("10000", True, 8),
        ("10043", False, 8),
    ]
    clock.advance(1.0)
    assert state.handle_delete(body("c", ("p", "i"))).code == "10000"
    assert state.stats().max_observed_qps == 3


def test_qps_zero_is_unlimited() -> None:
    state = make_state(qps=0)
    assert {state.handle_delete(body("c", ("p", "i"))).code for _ in range(100)} == {"10000"}
    assert state.stats().max_observed_qps == 100


def test_qps_limit_changes_at_runtime() -> None:
    state = make_state(qps=0)
    state.update_faults({"qps": 1})
    assert [state.handle_delete(body("c", ("p", "i"))).code for _ in range(2)] == ["10000", "10043"]


# --- business checks ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{not json", 5001),
        (b"\xff\xfe", 5001),
        (b"[]", 5001),
        (json.dumps({"image_id_list": [{"product_id": "p", "image_id": "i"}]}).encode(), 5001),
        (json.dumps({"collection_name": "c"}).encode(), 3050),
        (json.dumps({"collection_name": "c", "image_id_list": "p/i"}).encode(), 3050),
        (json.dumps({"collection_name": "c", "image_id_list": [{"product_id": 1, "image_id": "i"}]}).encode(), 3050),
        (json.dumps({"collection_name": "c", "image_id_list": ["i"]}).encode(), 3050),
        (body("c"), 3051),
        (body("c", ("p", "i"), ("p", "i")), 3052),
        (body("c", *[("p", f"{n}.jpg") for n in range(201)]), 3016),
        (body("c", ("p", ""), ("q", "")), 3053),
    ],
)
def test_business_rejections_are_10000_charged_with_result_code(raw: bytes, code: int) -> None:
    state = make_state(quota=10)
    reply = state.handle_delete(raw)
    assert (reply.code, reply.charge, reply.remain_times) == ("10000", True, 9)
    assert reply.business_code == code
    assert set(json.loads(reply.render())["result"]) == {"code", "message"}  # no item lists
    assert state.stats().results_by_code == {str(code): 1}


def test_two_hundred_distinct_items_are_accepted() -> None:
    state = make_state()
    reply = state.handle_delete(body("c", *[("p", f"{n}.jpg") for n in range(200)]))
    assert reply.business_code == 0
    assert len(lists(reply)[1]) == 200


def test_same_image_under_two_products_is_not_a_duplicate() -> None:
    state = make_state()
    assert state.handle_delete(body("c", ("p1", "i"), ("p2", "i"))).business_code == 0


# --- per-item results --------------------------------------------------------------------------------------------


def test_present_images_are_deleted_absent_ones_fail_with_no_available_feature() -> None:
    state = make_state()
    state.seed_images("c", [("p1", "a"), ("p1", "b"), ("p2", "c")])
    reply = state.handle_delete(body("c", ("p1", "a"), ("p2", "c"), ("p3", "z")))
    successful, failed = lists(reply)
    assert successful == [{"product_id": "p1", "image_id": "a"}, {"product_id": "p2", "image_id": "c"}]
    assert failed == [{"product_id": "p3", "image_id": "z", "message": ABSENT_REASON}]
    assert state.collection_images("c") == [("p1", "b")]
    again = state.handle_delete(body("c", ("p1", "a")))
    assert lists(again) == ([], [{"product_id": "p1", "image_id": "a", "message": ABSENT_REASON}])
    stats = state.stats()
    assert (stats.items_deleted, stats.items_absent, stats.images_stored) == (2, 2, 1)


def test_collections_are_separate_and_counted_apart() -> None:
    state = make_state(qps=1)
    state.seed_images("c1", [("p", "i")])
    assert lists(state.handle_delete(body("c2", ("p", "i"))))[0] == []
    assert state.collection_images("c1") == [("p", "i")]
    assert state.handle_delete(body("c1", ("p", "i"))).code == "10043"  # refused: not handled by the interface
    state.update_faults({"qps": 0})
    state.handle_delete(body("c1", ("p", "i")))
    state.handle_delete(body("c1", ("p", "i"), ("p", "i")))  # 3052: charged, but not a well-formed call
    state.handle_delete(b"{")  # 5001: names no collection
    assert state.stats().calls_by_collection == {"c1": 1, "c2": 1}


def test_unknown_collection_answers_1030_only_when_asked() -> None:
    state = make_state()
    assert state.handle_delete(body("nowhere", ("p", "i"))).business_code == 0
    state.update_faults({"unknown_collection_1030": True})
    reply = state.handle_delete(body("nowhere", ("p", "i")))
    assert (reply.code, reply.charge, reply.business_code) == ("10000", True, 1030)
    state.seed_images("empty", [])
    assert state.handle_delete(body("empty", ("p", "i"))).business_code == 0


def test_item_errors_leave_the_image_for_a_retry() -> None:
    state = make_state(item_error_rate=1.0)
    state.seed_images("c", [("p", "i")])
    reply = state.handle_delete(body("c", ("p", "i")))
    assert lists(reply) == ([], [{"product_id": "p", "image_id": "i", "message": ITEM_ERROR_REASON}])
    assert state.collection_images("c") == [("p", "i")]
    state.update_faults({"item_error_rate": 0.0})
    assert lists(state.handle_delete(body("c", ("p", "i"))))[0] == [{"product_id": "p", "image_id": "i"}]
    stats = state.stats()
    assert (stats.items_failed, stats.items_deleted, stats.faults_injected) == (1, 1, {"item_error": 1})


def test_deleted_more_than_once_counts_images_reseeded_and_deleted_again() -> None:
    state = make_state()
    for _ in range(3):
        state.seed_images("c", [("p", "i"), ("p", "j")])
        state.handle_delete(body("c", ("p", "i")))
    state.handle_delete(body("c", ("p", "j")))
    state.seed_images("other", [("p", "i")])
    state.handle_delete(body("other", ("p", "i")))
    stats = state.stats()
    assert stats.items_deleted == 5
    assert stats.items_deleted_more_than_once == 1  # only c/p/i; j once, other/p/i once


def test_seed_reports_new_images_only() -> None:
    state = make_state()
    assert state.seed_images("c", [("p", "i"), ("p", "j")]) == 2
    assert state.seed_images("c", [("p", "i"), ("p", "k")]) == 1
    assert state.collection_sizes() == {"c": 3}
    assert state.collection_images("missing") is None


# --- faults ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("knob", "fault"),
    [
        ("http_503_rate", TransportFault.HTTP_503),
        ("http_500_rate", TransportFault.HTTP_500),
        ("hang_rate", TransportFault.HANG),
        ("truncate_rate", TransportFault.TRUNCATE),
    ],
)
def test_transport_faults_are_planned_at_their_rate(knob: str, fault: TransportFault) -> None:
    state = make_state()
    state.update_faults({knob: 1.0})
    assert state.plan_call().transport is fault
    state.update_faults({knob: 0.0})
    assert state.plan_call().transport is TransportFault.NONE


@pytest.mark.parametrize(("knob", "code"), [("busy_rate", "10020"), ("publisher_error_rate", "11010")])
def test_gateway_faults_answer_their_code_uncharged(knob: str, code: str) -> None:
    state = make_state(quota=5)
    state.update_faults({knob: 1.0})
    state.seed_images("c", [("p", "i")])
    reply = state.handle_delete(body("c", ("p", "i")), state.plan_call())
    assert (reply.code, reply.charge, reply.remain_times, reply.result) == (code, False, 5, None)
    assert json.loads(reply.render())["result"] == {}
    assert state.collection_images("c") == [("p", "i")]
    assert state.stats().faults_injected == {code: 1}


def test_latency_is_fixed_plus_jitter() -> None:
    state = make_state(latency_ms=100, latency_jitter_ms=50)
    for _ in range(50):
        assert 0.1 <= state.plan_call().latency_seconds <= 0.15


def test_partial_rates_split_calls_and_the_seed_makes_them_repeatable() -> None:
    def plans(seed: int) -> list[CallPlan]:
        state = SandboxState(faults=Faults(http_503_rate=0.3, busy_rate=0.2), rng=random.Random(seed))
        return [state.plan_call() for _ in range(500)]

    first = plans(42)
    assert first == plans(42)
    unavailable = sum(plan.transport is TransportFault.HTTP_503 for plan in first)
    busy = sum(plan.gateway_code == "10020" for plan in first)
    assert 100 < unavailable < 200
    assert 50 < busy < 150


def test_truncated_calls_are_processed_and_labelled() -> None:
    state = make_state(truncate_rate=1.0)
    state.seed_images("c", [("p", "i")])
    reply = state.handle_delete(body("c", ("p", "i")), state.plan_call())
    assert reply.code == "10000"
    assert state.collection_images("c") == []
    stats = state.stats()
    assert (stats.calls_by_code, stats.faults_injected) == ({"truncated": 1}, {"truncated": 1})


def test_fault_updates_are_partial_and_validated() -> None:
    state = make_state(http_503_rate=0.5)
    updated = state.update_faults({"busy_rate": 0.25})
    assert (updated.http_503_rate, updated.busy_rate) == (0.5, 0.25)
    with pytest.raises(ValidationError, match="must be at most 1"):
        state.update_faults({"hang_rate": 0.6})
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        state.update_faults({"item_error_rate": 2})
    with pytest.raises(ValidationError, match="Extra inputs"):
        state.update_faults({"no_such_knob": 1})
    assert state.faults == updated


# --- stats -------------------------------------------------------------------------------------------------------


def test_auth_failures_and_transport_failures_are_counted() -> None:
    state = make_state(quota=7)
    assert state.record_auth_failure("10047", "signature does not match").remain_times == 7
    assert state.record_auth_failure("10001").remain_times == -1
    state.record_transport_failure("http_503")
    state.record_transport_failure("hang")
    stats = state.stats()
    assert stats.signature_failures == 2
    assert stats.calls_total == 4
    assert stats.calls_by_code == {"10001": 1, "10047": 1, "hang": 1, "http_503": 1}
    assert stats.quota_remaining == 7


def test_reused_nonces_are_counted_not_refused() -> None:
    state = make_state()
    assert state.handle_delete(body("c", ("p", "i")), nonce="n1").code == "10000"
    assert state.handle_delete(body("c", ("p", "i")), nonce="n2").code == "10000"
    assert state.handle_delete(body("c", ("p", "i")), nonce="n1").code == "10000"
    assert state.stats().nonces_reused == 1


def test_reset_stats_keeps_images_quota_and_faults() -> None:
    state = make_state(quota=5, busy_rate=0.0)
    state.seed_images("c", [("p", "i")])
    state.handle_delete(body("c", ("p", "i")))
    state.seed_images("c", [("p", "i")])
    state.reset_stats()
    state.handle_delete(body("c", ("p", "i")))
    stats = state.stats()
    assert (stats.calls_total, stats.items_deleted, stats.items_deleted_more_than_once) == (1, 1, 0)
    assert stats.quota_remaining == 3
