"""The real DeleteClient (httpx, signing, retries, limiter, quota gate) against the sandbox over loopback."""

from __future__ import annotations

import random
import threading
import time as clock
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta, timezone
from typing import Any

import pytest

from service.api.classify import ResponsePolicy
from service.api.client import DeleteClient, new_http_client
from service.api.errors import FatalApiError, RetriesExhausted
from service.api.models import BatchResult, DeleteBatch, DeleteItem, ItemStatus
from service.api.quota import QuotaGate
from service.api.rate_limit import RateLimiter
from service.api.retry import RetryPolicy
from service.api.signing import Credentials
from service.sandbox import Faults, SandboxServer, SandboxState

pytestmark = pytest.mark.integration

KEYS = Credentials("client-test-ak", "client-test-SECRET")
CST = timezone(timedelta(hours=8))


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    state = SandboxState(faults=Faults(qps=0), quota_limit=-1, rng=random.Random(5))
    server = SandboxServer(state, credentials=KEYS).start()
    yield server
    server.stop()


class Recorder:
    def __init__(self) -> None:
        self.codes: list[str] = []
        self.retries: list[str] = []

    def call_finished(self, code: str, seconds: float, items: int) -> None:
        self.codes.append(code)

    def retry_scheduled(self, code: str, delay: float) -> None:
        self.retries.append(code)

    def rate_limiter_waited(self, seconds: float) -> None:
        pass


def make_client(
    sandbox: SandboxServer,
    *,
    credentials: Credentials = KEYS,
    now: Any = None,
    quota: QuotaGate | None = None,
    limiter: RateLimiter | None = None,
    attempts: int = 6,
    max_elapsed: float = 30.0,
    read_timeout: float = 1.0,
    recorder: Recorder | None = None,
) -> tuple[DeleteClient, Recorder]:
    recorder = recorder or Recorder()
    client = DeleteClient(
        http=new_http_client(connect=2, read=read_timeout, write=2, pool=2, connections=4),
        endpoint=sandbox.endpoint,
        credentials=credentials,
        region="cn-north-1",
        service="aiapi",
        policy=ResponsePolicy(),
        retry=RetryPolicy(
            max_attempts=attempts, max_elapsed_seconds=max_elapsed, initial_seconds=0.01, max_seconds=0.05
        ),
        limiter=limiter or RateLimiter(1000),
        quota=quota or QuotaGate(CST, time(0, 0)),
        stop=threading.Event(),
        observer=recorder,
        **({"now": now} if now is not None else {}),
        rng=random.Random(1),
    )
    return client, recorder


def seeded_batch(sandbox: SandboxServer, count: int = 10, collection: str = "shop") -> DeleteBatch:
    items = tuple(DeleteItem(f"p{n}", f"{n}.jpg") for n in range(count))
    sandbox.state.seed_images(collection, [(item.product_id, item.image_id) for item in items])
    return DeleteBatch(collection, items, "b1")


def test_success_deletes_and_reports_quota(sandbox: SandboxServer) -> None:
    sandbox.state.configure_quota(limit=100)
    batch = seeded_batch(sandbox)
    extra = DeleteItem("px", "never-there.jpg")
    client, recorder = make_client(sandbox)
    result = client.delete(DeleteBatch("shop", (*batch.items, extra), "b1"))
    statuses = {r.item: r.status for r in result.items}
    assert statuses[extra] is ItemStatus.ABSENT
    assert [statuses[item] for item in batch.items] == [ItemStatus.DELETED] * 10
    assert result.quota.remain_times == 99
    assert result.quota.charge is True
    assert recorder.codes == ["10000"]
    assert sandbox.state.collection_size("shop") == 0


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ({"http_503_rate": 1.0}, "http_503"),
        ({"http_500_rate": 1.0}, "http_500"),
        ({"truncate_rate": 1.0}, "connection_error"),
        ({"hang_rate": 1.0, "hang_seconds": 3.0}, "timeout"),
        ({"busy_rate": 1.0}, "10020"),
        ({"publisher_error_rate": 1.0}, "11010"),
    ],
)
def test_each_transient_fault_is_retried_then_succeeds(
    sandbox: SandboxServer, fault: dict[str, Any], code: str
) -> None:
    batch = seeded_batch(sandbox)
    sandbox.state.update_faults(fault)
    client, recorder = make_client(sandbox, attempts=60)
    healer = threading.Timer(0.3, sandbox.state.update_faults, args=({name: 0.0 for name in fault},))
    healer.start()
    try:
        result = client.delete(batch)
    finally:
        healer.cancel()
    assert {r.status for r in result.items} <= {ItemStatus.DELETED, ItemStatus.ABSENT}
    assert code in recorder.retries
    assert result.attempts >= 2
    assert sandbox.state.collection_size("shop") == 0
    assert sandbox.state.stats().nonces_reused == 0  # every retry was signed afresh


def test_retries_run_out(sandbox: SandboxServer) -> None:
    sandbox.state.update_faults({"http_503_rate": 1.0})
    client, _ = make_client(sandbox, attempts=3)
    with pytest.raises(RetriesExhausted) as raised:
        client.delete(seeded_batch(sandbox))
    assert raised.value.attempts == 3
    assert raised.value.last.code == "http_503"


def test_qps_rejections_slow_the_limiter_down(sandbox: SandboxServer) -> None:
    sandbox.state.update_faults({"qps": 2})
    limiter = RateLimiter(50)
    client, recorder = make_client(sandbox, limiter=limiter, attempts=60)
    for n in range(6):
        client.delete(seeded_batch(sandbox, 2, collection=f"c{n}"))
    assert "10043" in recorder.retries
    assert limiter.rate < 50


def test_quota_exhaustion_holds_calls_until_the_reset(sandbox: SandboxServer) -> None:
    sandbox.state.configure_quota(limit=1)
    now = [datetime(2026, 11, 23, 15, 59, 58, tzinfo=UTC)]  # two seconds before midnight in Beijing
    gate = QuotaGate(CST, time(0, 0), clock=lambda: now[0], step_seconds=0.05)
    client, recorder = make_client(sandbox, quota=gate)
    client.delete(seeded_batch(sandbox, 1, collection="a"))
    assert gate.state().exhausted  # remainTimes said 0: no call is wasted on a 10040

    def midnight() -> None:
        now[0] += timedelta(seconds=3)
        sandbox.state.configure_quota(reset=True)

    threading.Timer(0.5, midnight).start()
    started = clock.monotonic()
    result = client.delete(seeded_batch(sandbox, 1, collection="b"))
    assert clock.monotonic() - started >= 0.4  # it waited for the reset
    assert result.items[0].status is ItemStatus.DELETED
    assert "10040" not in recorder.codes


def test_a_10040_answer_closes_the_gate(sandbox: SandboxServer) -> None:
    sandbox.state.configure_quota(limit=0)
    gate = QuotaGate(CST, time(0, 0), step_seconds=0.05)
    client, recorder = make_client(sandbox, quota=gate)
    stop_later = threading.Timer(0.5, client._stop.set)  # shutdown interrupts the wait for the reset
    stop_later.start()
    with pytest.raises(Exception, match="shutdown"):
        client.delete(seeded_batch(sandbox, 1))
    assert recorder.codes == ["10040"]
    assert gate.state().exhausted


@pytest.mark.parametrize("exhausted_by", ["remainTimes 0", "10040"])
def test_a_quota_wait_followed_by_a_503_does_not_fail_the_call(sandbox: SandboxServer, exhausted_by: str) -> None:
    """The wait for the reset (2 s here) is longer than the whole retry budget (1 s), and must not count."""
    if exhausted_by == "remainTimes 0":
        sandbox.state.configure_quota(limit=1)
    else:
        sandbox.state.configure_quota(limit=5, remaining=0)
    real_now = datetime.now(UTC)
    midnight_in_beijing = datetime.combine(real_now.astimezone(CST).date() + timedelta(days=1), time(0, 0), CST)
    shift = midnight_in_beijing - timedelta(seconds=2) - real_now
    midnight_passed = threading.Event()

    def gate_clock() -> datetime:
        shifted = datetime.now(UTC) + shift
        if shifted >= midnight_in_beijing and not midnight_passed.is_set():
            # The sandbox's day turns over as the gate sees midnight, and its gateway starts failing.
            midnight_passed.set()
            sandbox.state.configure_quota(reset=True)
            sandbox.state.update_faults({"http_503_rate": 1.0})
        return shifted

    class HealAfterFirstRetry(Recorder):
        def retry_scheduled(self, code: str, delay: float) -> None:
            super().retry_scheduled(code, delay)
            sandbox.state.update_faults({"http_503_rate": 0.0})

    gate = QuotaGate(CST, time(0, 0), clock=gate_clock, step_seconds=0.05)
    client, recorder = make_client(sandbox, quota=gate, max_elapsed=1.0, recorder=HealAfterFirstRetry())
    if exhausted_by == "remainTimes 0":
        client.delete(seeded_batch(sandbox, 1, collection="a"))
        assert gate.state().exhausted
    started = clock.monotonic()
    result = client.delete(seeded_batch(sandbox, 1, collection="b"))
    assert clock.monotonic() - started >= 1.5  # it waited for the reset, longer than the retry budget
    assert result.items[0].status is ItemStatus.DELETED
    assert recorder.retries == ["http_503"]
    first = "10000" if exhausted_by == "remainTimes 0" else "10040"
    assert recorder.codes == [first, "http_503", "10000"]


def test_payment_required_holds_calls_and_probes_rarely_until_topped_up(sandbox: SandboxServer) -> None:
    sandbox.state.update_faults({"payment_required": True})
    shift = [timedelta(0)]
    gate = QuotaGate(CST, time(0, 0), clock=lambda: datetime.now(UTC) + shift[0], step_seconds=0.05)
    client, recorder = make_client(sandbox, quota=gate)
    outcome: list[object] = []
    caller = threading.Thread(target=lambda: outcome.append(client.delete(seeded_batch(sandbox, 1))))
    caller.start()
    deadline = clock.monotonic() + 10
    while not gate.state().payment_required and clock.monotonic() < deadline:
        clock.sleep(0.02)
    state = gate.state()
    assert (state.exhausted, state.payment_required) == (True, True)
    clock.sleep(1.0)
    assert caller.is_alive()  # held, not failed
    assert recorder.codes == ["10010"]  # and not probing every few seconds meanwhile
    sandbox.state.update_faults({"payment_required": False})  # someone bought a pack
    shift[0] = timedelta(hours=1, seconds=1)  # the next probe is due
    caller.join(timeout=10)
    assert not caller.is_alive()
    (result,) = outcome
    assert isinstance(result, BatchResult)
    assert result.items[0].status is ItemStatus.DELETED
    assert recorder.codes == ["10010", "10000"]
    assert not gate.state().payment_required


def test_wrong_secret_is_fatal(sandbox: SandboxServer) -> None:
    client, recorder = make_client(sandbox, credentials=Credentials(KEYS.access_key, "wrong"))
    with pytest.raises(FatalApiError) as raised:
        client.delete(seeded_batch(sandbox))
    assert raised.value.code == "10047"
    assert recorder.codes == ["10047"]  # never retried


def test_unknown_access_key_is_fatal(sandbox: SandboxServer) -> None:
    client, _ = make_client(sandbox, credentials=Credentials("nobody", KEYS.secret_key))
    with pytest.raises(FatalApiError, match="10001"):
        client.delete(seeded_batch(sandbox))


def test_a_skewed_clock_is_fatal(sandbox: SandboxServer) -> None:
    client, _ = make_client(sandbox, now=lambda: datetime.now(UTC) - timedelta(minutes=20))
    with pytest.raises(FatalApiError, match="10045"):
        client.delete(seeded_batch(sandbox))


def test_per_item_errors_come_back_retryable(sandbox: SandboxServer) -> None:
    sandbox.state.update_faults({"item_error_rate": 1.0})
    client, _ = make_client(sandbox)
    result = client.delete(seeded_batch(sandbox, 3))
    assert {(r.status, r.reason, r.retryable) for r in result.items} == {
        (ItemStatus.FAILED, "DELETE_IMAGE_ERROR", True)
    }
    assert sandbox.state.collection_size("shop") == 3  # still there for the next call


def test_a_batch_rejected_as_a_whole_is_split_to_isolate_the_offender(sandbox: SandboxServer) -> None:
    big = tuple(DeleteItem(f"p{n}", f"{n}-" + "x" * 30_000) for n in range(200))  # about 6 MB: HTTP 413
    sandbox.state.seed_images("shop", [(item.product_id, item.image_id) for item in big])
    client, recorder = make_client(sandbox)
    result = client.delete(DeleteBatch("shop", big, "big"))
    assert recorder.codes[0] == "http_413"
    assert {r.status for r in result.items} == {ItemStatus.DELETED}
    assert result.api_calls == 3  # the rejected call, then its two halves
    lonely = DeleteBatch("shop", (DeleteItem("p", ""),), "empty-id")
    (failed,) = client.delete(lonely).items
    assert (failed.status, failed.reason) == (ItemStatus.FAILED, "NO_VALID_IMAGE_ID")
