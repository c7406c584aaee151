"""The rate limiter, the quota gate and the retry policy, on injected clocks: no sleeping, no I/O."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, time, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.api.errors import CallAbandoned
from service.api.models import QuotaFacts
from service.api.quota import QuotaGate, next_reset
from service.api.rate_limit import RateLimiter, SendSlot
from service.api.retry import RetryPolicy
from tests.support.clock import FakeClock, SleeplessStop

CST = timezone(timedelta(hours=8))


START = 1000.0
"""Where the rate limiter's monotonic clock starts in these tests."""


def test_rate_limiter_spaces_calls_at_the_rate() -> None:
    clock = FakeClock(START)
    limiter = RateLimiter(2.0, clock=clock, margin=0)
    delays = [limiter.reserve() for _ in range(5)]
    assert delays == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])


def test_rate_limiter_keeps_a_safety_margin_under_the_limit() -> None:
    limiter = RateLimiter(2.0, clock=FakeClock(START), margin=0.04)
    delays = [limiter.reserve() for _ in range(3)]
    assert delays == pytest.approx([0.0, 0.52, 1.04])


def test_rate_limiter_has_no_burst_after_idling() -> None:
    clock = FakeClock(START)
    limiter = RateLimiter(2.0, clock=clock, margin=0)
    limiter.reserve()
    clock.now += 60
    assert [limiter.reserve() for _ in range(3)] == pytest.approx([0.0, 0.5, 1.0])


def test_rate_limiter_slows_on_throttle_and_recovers() -> None:
    clock = FakeClock(START)
    limiter = RateLimiter(2.0, clock=clock, increase_fraction=0.25)
    limiter.on_throttled()
    assert limiter.rate == 1.5
    for _ in range(20):
        limiter.on_throttled()
    assert limiter.rate == pytest.approx(0.2)  # the floor: a tenth of the ceiling
    for _ in range(20):
        limiter.on_success()
    assert limiter.rate == 2.0


def test_a_throttle_leaves_a_gap_before_the_next_call() -> None:
    clock = FakeClock(START)
    limiter = RateLimiter(2.0, clock=clock, margin=0)
    assert limiter.reserve() == 0
    limiter.on_throttled()
    assert limiter.reserve() == pytest.approx(1 / 1.5)


def test_rate_limiter_ceiling_follows_the_replica_share() -> None:
    limiter = RateLimiter(2.0, clock=FakeClock(START))
    limiter.set_ceiling(0.5)
    assert (limiter.ceiling, limiter.rate) == (0.5, 0.5)
    limiter.set_ceiling(1.0)
    assert limiter.rate == 1.0
    limiter.on_throttled()
    limiter.set_ceiling(2.0)
    assert limiter.rate == 0.75  # a throttled pace is not raised by a rebalance, only by successes


def test_rate_limiter_is_shared_safely_by_threads() -> None:
    clock = FakeClock(START)
    limiter = RateLimiter(10.0, clock=clock, margin=0)
    delays: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(50):
            delay = limiter.reserve()
            with lock:
                delays.append(delay)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(delays) == pytest.approx([i / 10 for i in range(400)])


def test_acquire_is_interrupted_by_shutdown() -> None:
    limiter = RateLimiter(0.001)
    limiter.reserve()
    stop = threading.Event()
    stop.set()
    with pytest.raises(CallAbandoned):
        limiter.acquire(stop)


def test_the_next_call_waits_a_full_spacing_after_the_previous_request_left() -> None:
    clock = FakeClock(START)
    limiter = RateLimiter(2.0, clock=clock, margin=0.02)
    stop = SleeplessStop(clock)
    first = limiter.acquire(stop)
    assert first.waited == 0
    clock.now += 0.3  # the request took 0.3 s to leave (a busy GIL): its slot was at 0
    first.sent()
    second = limiter.acquire(stop)
    # On the schedule alone it could start at 0.51; it starts 0.51 after the first request left instead.
    assert clock.now == pytest.approx(START + 0.3 + 0.51)
    assert second.waited == pytest.approx(0.51)
    second.sent()


def test_a_call_that_never_left_does_not_move_the_pace() -> None:
    clock = FakeClock(START)
    limiter = RateLimiter(2.0, clock=clock, margin=0)
    stop = SleeplessStop(clock)
    limiter.acquire(stop).release()  # e.g. the connection was refused
    clock.now += 0.1
    limiter.acquire(stop).sent()
    assert clock.now == pytest.approx(START + 0.5)  # the schedule's slot, not 0.5 after the failed attempt


def test_a_call_that_partly_left_counts_as_sent() -> None:
    clock = FakeClock(START)
    limiter = RateLimiter(2.0, clock=clock, margin=0)
    stop = SleeplessStop(clock)
    slot = limiter.acquire(stop)
    slot.trace("http11.send_request_headers.started", {})
    clock.now += 0.2
    slot.release()  # the connection broke while the body was being written: the server may count the call
    slot.release()  # releasing twice is harmless
    limiter.acquire(stop).sent()
    assert clock.now == pytest.approx(START + 0.7)


def test_the_trace_hook_reports_when_the_body_has_left() -> None:
    clock = FakeClock(START)
    limiter = RateLimiter(1.0, clock=clock, margin=0)
    stop = SleeplessStop(clock)
    slot = limiter.acquire(stop)
    slot.trace("http11.send_request_headers.started", {})
    slot.trace("http11.send_request_body.started", {})
    clock.now += 0.4
    slot.trace("http11.send_request_body.complete", {})
    clock.now += 5.0  # waiting for the answer does not matter: the next call may go now
    slot.release()
    next_slot = limiter.acquire(stop)
    assert next_slot.waited == 0


def test_only_one_caller_is_sending_at_a_time() -> None:
    limiter = RateLimiter(1000.0, margin=0)
    stop = threading.Event()
    first = limiter.acquire(stop)
    second: list[float] = []
    waiter = threading.Thread(target=lambda: second.append(limiter.acquire(stop).waited))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive()  # held back while the first request is still on its way out
    first.sent()
    waiter.join(5)
    assert len(second) == 1
    assert second[0] >= 0.2


def test_waiting_for_another_send_is_interrupted_by_shutdown() -> None:
    limiter = RateLimiter(1000.0)
    stop = threading.Event()
    limiter.acquire(stop)  # never sent nor released
    outcome: list[BaseException] = []

    def second() -> None:
        try:
            limiter.acquire(stop)
        except CallAbandoned as abandoned:
            outcome.append(abandoned)

    waiter = threading.Thread(target=second)
    waiter.start()
    stop.set()
    waiter.join(5)
    assert len(outcome) == 1


def test_next_reset_is_midnight_china_time() -> None:
    # 15:59 UTC is 23:59 in Beijing: the reset is a minute away.
    now = datetime(2026, 11, 23, 15, 59, tzinfo=UTC)
    assert next_reset(now, CST, time(0, 0)) == datetime(2026, 11, 23, 16, 0, tzinfo=UTC)
    # 16:00 UTC exactly is the reset itself: the next one is a day later.
    assert next_reset(now + timedelta(minutes=1), CST, time(0, 0)) == datetime(2026, 11, 24, 16, 0, tzinfo=UTC)


@given(st.datetimes(timezones=st.just(UTC)), st.times())
def test_next_reset_is_always_within_a_day_and_after_now(now: datetime, at: time) -> None:
    reset = next_reset(now, CST, at)
    assert now < reset <= now + timedelta(days=1)
    assert reset.astimezone(CST).time() == at


def test_quota_gate_holds_until_the_reset_then_reopens() -> None:
    clock = FakeClock.at(datetime(2026, 11, 23, 15, 0, tzinfo=UTC))  # 23:00 in Beijing
    gate = QuotaGate(CST, time(0, 0), clock=clock.utc, step_seconds=60)
    gate.observe(QuotaFacts(remain_times=3, charge=True))
    assert gate.state().exhausted is False
    assert gate.state().remaining == 3
    gate.observe(QuotaFacts(remain_times=0, charge=True))
    state = gate.state()
    assert state.exhausted is True
    assert state.seconds_until_reset == 3600
    assert state.charged_calls == 2
    stop = SleeplessStop(clock)
    waited = gate.wait(stop)
    assert waited == pytest.approx(3600)
    assert clock.utc() == datetime(2026, 11, 23, 16, 0, tzinfo=UTC)
    assert gate.state().exhausted is False
    assert gate.state().remaining is None


def test_quota_gate_does_not_wait_when_open_or_unlimited() -> None:
    clock = FakeClock.at(datetime(2026, 11, 23, 15, 0, tzinfo=UTC))
    gate = QuotaGate(CST, time(0, 0), clock=clock.utc)
    gate.observe(QuotaFacts(remain_times=-1))
    assert gate.wait(SleeplessStop(clock)) == 0.0


def test_quota_gate_wait_is_interrupted_by_shutdown() -> None:
    clock = FakeClock.at(datetime(2026, 11, 23, 15, 0, tzinfo=UTC))
    gate = QuotaGate(CST, time(0, 0), clock=clock.utc)
    gate.exhausted()
    stop = SleeplessStop(clock)
    stop.set()
    with pytest.raises(CallAbandoned):
        gate.wait(stop)


def test_still_exhausted_right_after_a_reset_probes_again_soon() -> None:
    clock = FakeClock.at(datetime(2026, 11, 23, 15, 59, tzinfo=UTC))
    gate = QuotaGate(CST, time(0, 0), clock=clock.utc, step_seconds=30, reprobe_seconds=600)
    gate.exhausted()
    gate.wait(SleeplessStop(clock))
    gate.exhausted()  # the API still says 10040 right after our reset
    assert gate.state().seconds_until_reset == pytest.approx(600)


def test_retry_delay_is_full_jitter_under_a_growing_cap() -> None:
    policy = RetryPolicy(max_attempts=10, initial_seconds=0.5, max_seconds=8)
    rng = random.Random(7)
    for attempt, cap in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (9, 8.0)]:
        samples = [policy.delay(attempt, rng) for _ in range(300)]
        assert all(0 <= s <= cap for s in samples)
        assert max(samples) > cap * 0.8  # the whole range is used, not a fixed delay
        assert min(samples) < cap * 0.2


def test_retry_after_is_a_floor() -> None:
    policy = RetryPolicy(initial_seconds=0.5, max_seconds=1)
    assert policy.delay(1, random.Random(1), retry_after=12.0) == 12.0


def test_retry_budget_counts_attempts_and_elapsed_time() -> None:
    policy = RetryPolicy(max_attempts=3, max_elapsed_seconds=10)
    assert policy.allows(1, 0, 1)
    assert policy.allows(2, 0, 1)
    assert not policy.allows(3, 0, 1)
    assert not policy.allows(1, 9.5, 1)


# --- try_acquire, seconds_until_free, granted: the poll loop takes a call's first slot without blocking ------------


def test_try_acquire_gives_a_slot_only_when_nobody_sends_and_the_pace_allows() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2.0, clock=clock, margin=0)
    first = limiter.try_acquire()
    assert first is not None
    assert first.waited == 0
    clock.now += 5
    assert limiter.try_acquire() is None  # the first request has not left yet
    assert limiter.seconds_until_free() > 0
    first.sent()  # left 5 s after its slot
    assert limiter.try_acquire() is None  # a full spacing after it left
    assert limiter.seconds_until_free() == pytest.approx(0.5)
    clock.now += 0.49
    assert limiter.try_acquire() is None
    clock.now += 0.01
    assert limiter.seconds_until_free() == 0
    second = limiter.try_acquire()
    assert second is not None
    second.release()  # never started to leave: the pace does not move
    clock.now += 0.5
    assert limiter.try_acquire() is not None


def test_try_acquire_waits_for_the_schedule_too() -> None:
    clock = FakeClock()
    limiter = RateLimiter(4.0, clock=clock, margin=0)
    assert limiter.reserve() == 0  # a worker's retry took the slot now; the next is 0.25 s later
    assert limiter.try_acquire() is None
    assert limiter.seconds_until_free() == pytest.approx(0.25)
    clock.now += 0.25
    assert limiter.try_acquire() is not None


def test_a_throttle_holds_try_acquire_back() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2.0, clock=clock, margin=0)
    limiter.on_throttled()  # the next slot is a gap at the slower pace away
    assert limiter.try_acquire() is None
    assert limiter.seconds_until_free() == pytest.approx(1 / 1.5)
    clock.now += 1 / 1.5
    assert limiter.try_acquire() is not None


_pacing_steps = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.floats(0, 2, allow_nan=False)),
        st.tuples(st.sampled_from(["try", "sent", "release", "reserve", "throttle", "success"]), st.just(0.0)),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(steps=_pacing_steps, qps=st.floats(0.5, 20), margin=st.floats(0, 0.1))
def test_seconds_until_free_is_zero_exactly_when_try_acquire_succeeds(
    steps: list[tuple[str, float]], qps: float, margin: float
) -> None:
    clock = FakeClock()
    limiter = RateLimiter(qps, clock=clock, margin=margin)
    slot: SendSlot | None = None
    for action, seconds in steps:
        if action == "advance":
            clock.now += seconds
        elif action == "try":
            free = limiter.seconds_until_free()
            assert free >= 0
            taken = limiter.try_acquire()
            assert (taken is not None) == (free == 0)
            if taken is not None:
                assert slot is None  # one sender at a time
                slot = taken
        elif action in ("sent", "release") and slot is not None:
            slot.sent() if action == "sent" else slot.release()
            slot = None
        elif action == "reserve":
            limiter.reserve()
        elif action == "throttle":
            limiter.on_throttled()
        elif action == "success":
            limiter.on_success()
        if slot is None:
            # Nobody sends: waiting what it says is enough (a hair more, for the float sums).
            clock.now += limiter.seconds_until_free() + 1e-9
            assert limiter.seconds_until_free() == 0


def test_a_granted_slot_is_this_threads_first_acquire_without_waiting() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2.0, clock=clock, margin=0)
    stop = SleeplessStop(clock)
    start = clock.now
    slot = limiter.try_acquire()
    assert slot is not None
    with limiter.granted(slot):
        assert limiter.acquire(stop) is slot
        assert stop.waits == []  # no wait at all, though the slot is still "sending"
        assert clock.now == start
        slot.sent()
        second = limiter.acquire(stop)  # the call's retry: paced as any other
        assert second is not slot
        assert clock.now == pytest.approx(start + 0.5)
        second.sent()
    assert limiter.try_acquire() is None  # the retry just left
    clock.now += 0.5
    assert limiter.try_acquire() is not None


def test_an_unused_granted_slot_is_released_on_leaving() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2.0, clock=clock, margin=0)
    slot = limiter.try_acquire()
    assert slot is not None
    with limiter.granted(slot):
        pass  # e.g. the call failed before its first send
    clock.now += 0.5  # the schedule's next slot; nothing was sent, so nothing else holds it back
    assert limiter.seconds_until_free() == 0
    assert limiter.try_acquire() is not None


def test_a_granted_slot_is_released_when_the_call_raises() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2.0, clock=clock, margin=0)
    slot = limiter.try_acquire()
    assert slot is not None
    with pytest.raises(RuntimeError), limiter.granted(slot):
        raise RuntimeError("the call broke")
    clock.now += 0.5
    assert limiter.try_acquire() is not None


def test_a_granted_slot_belongs_to_its_thread_and_lasts_one_acquire() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2.0, clock=clock, margin=0)
    slot = limiter.try_acquire()
    assert slot is not None
    stopped = threading.Event()
    stopped.set()
    elsewhere: list[BaseException] = []

    def other_thread() -> None:
        try:
            limiter.acquire(stopped)
        except CallAbandoned as abandoned:
            elsewhere.append(abandoned)

    with limiter.granted(slot):
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join(5)
        assert len(elsewhere) == 1  # another thread does not get this thread's slot: it waits, then stops
        assert limiter.acquire(stopped) is slot
        with pytest.raises(CallAbandoned):
            limiter.acquire(stopped)  # granted once: the next acquire waits as any other
    clock.now += 10  # past every slot the refused callers reserved
    assert limiter.try_acquire() is not None  # the slot, taken but never sent, was released on leaving
