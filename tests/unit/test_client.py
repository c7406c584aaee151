"""DeleteClient on virtual time: an in-memory transport, one FakeClock behind every clock and wait, no I/O."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, time, timedelta, timezone

import httpx
import pytest

from service.api.classify import ResponsePolicy
from service.api.client import DeleteClient
from service.api.errors import RetriesExhausted
from service.api.models import DeleteBatch, DeleteItem, ItemStatus
from service.api.quota import QuotaGate
from service.api.rate_limit import RateLimiter
from service.api.retry import RetryPolicy
from service.api.signing import Credentials
from tests.support.clock import FakeClock, SleeplessStop

CST = timezone(timedelta(hours=8))
NOON_IN_BEIJING = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)  # twelve hours before the daily reset
BATCH = DeleteBatch("shop", (DeleteItem("p1", "1.jpg"), DeleteItem("p2", "2.jpg")), "b1")


def answer(code: str, remain: int = 100) -> httpx.Response:
    result: dict[str, object] = {}
    if code == "10000":
        listed = [{"product_id": item.product_id, "image_id": item.image_id} for item in BATCH.items]
        result = {"code": 0, "message": "SUCCESS", "successful_list": listed, "failed_list": []}
    document = {"code": code, "charge": code == "10000", "remainTimes": remain, "remainSeconds": -1, "result": result}
    return httpx.Response(200, content=json.dumps(document).encode())


def http_503() -> httpx.Response:
    return httpx.Response(503, content=b"<html><body>503 Service Temporarily Unavailable</body></html>")


def scripted(answers: Iterator[httpx.Response], sent_at: list[float], clock: FakeClock) -> httpx.Client:
    def handle(_request: httpx.Request) -> httpx.Response:
        sent_at.append(clock())
        return next(answers)

    return httpx.Client(transport=httpx.MockTransport(handle))


def make_client(
    clock: FakeClock,
    answers: Iterator[httpx.Response],
    *,
    retry: RetryPolicy,
    limiter: RateLimiter | None = None,
) -> tuple[DeleteClient, QuotaGate, list[float]]:
    sent_at: list[float] = []
    gate = QuotaGate(CST, time(0, 0), clock=clock.utc, step_seconds=60.0)
    client = DeleteClient(
        http=scripted(answers, sent_at, clock),
        endpoint="http://127.0.0.1:1/jdai/product_image_del_image",
        credentials=Credentials("ak", "sk"),
        region="cn-north-1",
        service="aiapi",
        policy=ResponsePolicy(),
        retry=retry,
        limiter=limiter or RateLimiter(1000.0, clock=clock),
        quota=gate,
        stop=SleeplessStop(clock),
        now=clock.utc,
        rng=random.Random(3),
        monotonic=clock,
    )
    return client, gate, sent_at


def repeat(make: Callable[[], httpx.Response]) -> Iterator[httpx.Response]:
    while True:
        yield make()


def test_a_quota_wait_does_not_count_against_the_retry_budget() -> None:
    clock = FakeClock.at(NOON_IN_BEIJING)
    answers = iter([answer("10040", remain=0), http_503(), answer("10000")])
    retry = RetryPolicy(max_attempts=8, max_elapsed_seconds=600, initial_seconds=1, max_seconds=30)
    client, gate, sent_at = make_client(clock, answers, retry=retry)
    result = client.delete(BATCH)
    assert {item.status for item in result.items} == {ItemStatus.DELETED}
    assert result.codes == ("10040", "http_503", "10000")
    assert sent_at[1] - sent_at[0] >= 12 * 3600  # the second call waited for midnight in Beijing
    assert result.attempts == 3
    assert not gate.state().exhausted


def test_after_a_quota_wait_the_budget_still_runs_out_on_time_spent_trying() -> None:
    clock = FakeClock.at(NOON_IN_BEIJING)
    answers = iter([answer("10040", remain=0), *[http_503() for _ in range(100)]])
    retry = RetryPolicy(max_attempts=100, max_elapsed_seconds=60, initial_seconds=1, max_seconds=8)
    client, _, sent_at = make_client(clock, answers, retry=retry)
    with pytest.raises(RetriesExhausted) as raised:
        client.delete(BATCH)
    assert raised.value.last.code == "http_503"
    assert 3 <= raised.value.attempts < 100  # the time budget ended it, not the attempt cap
    assert sent_at[-1] - sent_at[1] <= 60  # retried for at most the budget after the reset


def test_waits_for_the_rate_limiter_do_not_count_against_the_retry_budget() -> None:
    clock = FakeClock.at(NOON_IN_BEIJING)
    limiter = RateLimiter(0.01, clock=clock)  # one call every 100 s: far beyond the 30 s budget
    answers = iter([http_503(), http_503(), answer("10000")])
    retry = RetryPolicy(max_attempts=8, max_elapsed_seconds=30, initial_seconds=1, max_seconds=2)
    client, _, sent_at = make_client(clock, answers, retry=retry, limiter=limiter)
    result = client.delete(BATCH)
    assert {item.status for item in result.items} == {ItemStatus.DELETED}
    assert sent_at[-1] - sent_at[0] >= 200  # two full spacings of the limiter passed between the tries


def test_payment_required_holds_the_call_for_an_hour_then_probes() -> None:
    clock = FakeClock.at(NOON_IN_BEIJING)
    answers = iter([answer("10010", remain=0), answer("10010", remain=0), answer("10000")])
    retry = RetryPolicy(max_attempts=2, max_elapsed_seconds=60, initial_seconds=1, max_seconds=2)
    client, gate, sent_at = make_client(clock, answers, retry=retry)
    result = client.delete(BATCH)
    assert {item.status for item in result.items} == {ItemStatus.DELETED}
    assert result.codes == ("10010", "10010", "10000")
    assert result.api_calls == 3  # with max_attempts=2: waiting for a top-up is not a failed attempt
    assert [later - earlier for earlier, later in itertools.pairwise(sent_at)] == [3600, 3600]
    assert not gate.state().payment_required  # the call went through: the pack was topped up
