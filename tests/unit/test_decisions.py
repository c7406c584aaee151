"""The pipeline's pure decisions held to their promises: routing results, QPS share, pausing, the drain plan."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.api.models import DeleteItem, ItemResult, ItemStatus
from service.pipeline.decisions import MIN_QPS, RESUME_FRACTION, drain_plan, qps_share, route_results, should_pause
from service.vocabulary import DeadLetterReason

# --- route_results -----------------------------------------------------------------------------------------------

_answers = st.lists(
    st.tuples(
        st.sampled_from(list(ItemStatus)),
        st.booleans(),  # retryable
        st.integers(1, 6),  # which try this call was
        st.lists(st.integers(0, 50), min_size=1, max_size=3),  # who waits
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(answers=_answers, max_attempts=st.integers(1, 5))
def test_every_result_is_decided_or_retried_exactly_once(
    answers: list[tuple[ItemStatus, bool, int, list[int]]], max_attempts: int
) -> None:
    results: list[ItemResult] = []
    waiters: dict[DeleteItem, list[int]] = {}
    attempts: dict[DeleteItem, int] = {}
    for n, (status, retryable, attempt, who) in enumerate(answers):
        item = DeleteItem("p", f"{n}.jpg")
        reason = "DELETE_IMAGE_ERROR" if status is ItemStatus.FAILED else None
        results.append(ItemResult(item, status, reason, retryable))
        waiters[item] = who
        attempts[item] = attempt

    routing = route_results(results, waiters, attempts, max_attempts)

    decided = [result.item for result, _ in routing.decided]
    retried = [item for item, _, _ in routing.retry]
    assert sorted(decided + retried) == sorted(waiters)  # each item once, in one of the two
    assert not set(decided) & set(retried)

    def retryable_failure(result: ItemResult) -> bool:
        return result.status is ItemStatus.FAILED and result.retryable

    expected_retry = [r.item for r in results if retryable_failure(r) and attempts[r.item] < max_attempts]
    assert retried == expected_retry  # only retryable failures with tries left, in the answer's order
    for item, who, next_attempt in routing.retry:
        assert next_attempt == attempts[item] + 1
        assert who is waiters[item]
    at_max = [r for r in results if retryable_failure(r) and attempts[r.item] >= max_attempts]
    assert routing.exhausted == len(at_max)

    given_results = {r.item: r for r in results}
    exhausted_items = {r.item for r in at_max}
    for result, who in routing.decided:
        assert who is waiters[result.item]
        if result.item in exhausted_items:
            assert (result.status, result.reason) == (ItemStatus.FAILED, DeadLetterReason.RETRIES_EXHAUSTED)
        else:
            assert result == given_results[result.item]  # final results pass through untouched


def test_an_item_at_its_last_try_is_failed_for_good() -> None:
    item = DeleteItem("p", "1.jpg")
    failed = ItemResult(item, ItemStatus.FAILED, "INTERNAL_SERVER_ERROR", retryable=True)
    routing = route_results([failed], {item: ["e"]}, {item: 3}, max_attempts=3)
    assert routing.retry == []
    assert routing.exhausted == 1
    assert routing.decided == [(ItemResult(item, ItemStatus.FAILED, DeadLetterReason.RETRIES_EXHAUSTED), ["e"])]

    routing = route_results([failed], {item: ["e"]}, {item: 2}, max_attempts=3)
    assert routing.retry == [(item, ["e"], 3)]
    assert (routing.decided, routing.exhausted) == ([], 0)


def test_a_permanent_failure_is_never_retried() -> None:
    item = DeleteItem("p", "1.jpg")
    failed = ItemResult(item, ItemStatus.FAILED, "NO_IMAGE", retryable=False)
    routing = route_results([failed], {item: ["e"]}, {item: 1}, max_attempts=5)
    assert routing.decided == [(failed, ["e"])]
    assert (routing.retry, routing.exhausted) == ([], 0)


# --- qps_share ---------------------------------------------------------------------------------------------------

_qps = st.floats(min_value=0.001, max_value=1000, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(account=_qps, assigned=st.integers(0, 300), partitions=st.one_of(st.none(), st.integers(0, 200)))
def test_the_share_stays_between_the_floor_and_the_account_qps(
    account: float, assigned: int, partitions: int | None
) -> None:
    share = qps_share(account, assigned, partitions)
    assert share <= account
    assert share >= min(MIN_QPS, account)
    assert share > 0


@settings(max_examples=200, deadline=None)
@given(account=_qps, partitions=st.integers(1, 200), data=st.data())
def test_the_share_is_proportional_to_the_partitions_held(account: float, partitions: int, data: st.DataObject) -> None:
    assigned = data.draw(st.integers(1, partitions))
    share = qps_share(account, assigned, partitions)
    assert share == pytest.approx(min(account, max(MIN_QPS, account * assigned / partitions)))
    if assigned < partitions:
        assert qps_share(account, assigned + 1, partitions) >= share  # more partitions, never a slower pace
    else:
        assert share == pytest.approx(account)


@given(account=_qps, assigned=st.integers(0, 50))
def test_the_whole_qps_while_the_partition_count_is_unknown_or_nothing_is_held(account: float, assigned: int) -> None:
    assert qps_share(account, assigned, None) == account
    assert qps_share(account, assigned, 0) == account
    assert qps_share(account, 0, 12) == account


def test_the_share_has_a_floor() -> None:
    assert qps_share(0.5, 1, 1000) == MIN_QPS
    assert qps_share(10.0, 3, 12) == pytest.approx(2.5)
    assert qps_share(10.0, 20, 12) == 10.0  # a stale count below what is held never raises the pace above the account's
    assert qps_share(0.005, 1, 12) == 0.005  # nor does the floor, for an account slower than it
    assert qps_share(11.00438544530646, 51, 51) <= 11.00438544530646  # qps * 51 / 51 rounded above qps


# --- should_pause ------------------------------------------------------------------------------------------------


def _pause(*, paused: bool, pending: int, limit: int = 100, **flags: bool) -> bool:
    options = {"rejected": False, "stopping": False, "fatal": False, "quota_exhausted": False} | flags
    return should_pause(paused=paused, pending=pending, limit=limit, **options)


_flags = st.fixed_dictionaries(
    {"rejected": st.booleans(), "stopping": st.booleans(), "fatal": st.booleans(), "quota_exhausted": st.booleans()}
)


@settings(max_examples=200, deadline=None)
@given(paused=st.booleans(), pending=st.integers(0, 2000), limit=st.integers(1, 1000), flags=_flags)
def test_pausing_follows_the_backlog_with_hysteresis_and_the_flags(
    paused: bool, pending: int, limit: int, flags: dict[str, bool]
) -> None:
    pause = should_pause(paused=paused, pending=pending, limit=limit, **flags)
    if any(flags.values()):
        assert pause
    elif paused:
        assert pause == (pending >= RESUME_FRACTION * limit)  # stays paused until below the resume mark
    else:
        assert pause == (pending >= limit)  # stays running below the limit


@pytest.mark.parametrize("flag", ["rejected", "stopping", "fatal", "quota_exhausted"])
def test_any_flag_pauses_even_an_empty_pipeline(flag: str) -> None:
    assert _pause(paused=False, pending=0, **{flag: True})
    assert _pause(paused=True, pending=0, **{flag: True})


def test_a_full_backlog_pauses_and_resumes_only_well_below_the_limit() -> None:
    assert not _pause(paused=False, pending=99)
    assert _pause(paused=False, pending=100)
    assert _pause(paused=True, pending=99)  # no flapping just under the limit
    assert _pause(paused=True, pending=80)
    assert not _pause(paused=True, pending=79)


@settings(max_examples=100, deadline=None)
@given(backlog=st.lists(st.integers(0, 300), min_size=1, max_size=60), limit=st.integers(10, 200))
def test_a_paused_replica_never_resumes_without_dropping_below_the_resume_mark(backlog: list[int], limit: int) -> None:
    paused = False
    for pending in backlog:
        now_paused = _pause(paused=paused, pending=pending, limit=limit)
        if paused and not now_paused:
            assert pending < RESUME_FRACTION * limit
        if not paused and now_paused:
            assert pending >= limit
        paused = now_paused


# --- drain_plan --------------------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(pending=st.lists(st.integers(0, 100), unique=True, max_size=50), data=st.data())
def test_the_drain_gives_up_exactly_on_the_untouched_events_in_order(pending: list[int], data: st.DataObject) -> None:
    others = st.integers(101, 200)  # started, but not among the pending (finished meanwhile)
    started = data.draw(st.sets(st.one_of(st.sampled_from(pending), others) if pending else others))
    plan = drain_plan(pending, started)
    assert plan == [event for event in pending if event not in started]
    assert set(plan).isdisjoint(started)
    assert set(plan) | (set(pending) & started) == set(pending)


def test_the_drain_plan_reads_an_iterator_once() -> None:
    assert drain_plan(iter(["a", "b", "c", "d"]), {"b", "d"}) == ["a", "c"]
    assert drain_plan([], {"a"}) == []
