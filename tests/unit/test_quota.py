"""QuotaGate on a FakeClock: the daily quota, a spent paid pack (10010), when each is probed again, and the
reset's time zone (a fixed offset or an IANA name)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from service.api.models import QuotaFacts
from service.api.quota import QuotaGate, next_reset
from tests.support.clock import FakeClock, SleeplessStop

CST = timezone(timedelta(hours=8))
NOON_IN_BEIJING = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)
MIDNIGHT_IN_BEIJING = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)


def gate_at(moment: datetime, **options: float) -> tuple[QuotaGate, FakeClock, SleeplessStop]:
    clock = FakeClock.at(moment)
    return QuotaGate(CST, time(0, 0), clock=clock.utc, step_seconds=60.0, **options), clock, SleeplessStop(clock)


def test_a_spent_daily_quota_holds_calls_until_the_reset() -> None:
    gate, clock, stop = gate_at(NOON_IN_BEIJING)
    gate.exhausted()
    state = gate.state()
    assert (state.exhausted, state.payment_required, state.resets_at) == (True, False, MIDNIGHT_IN_BEIJING)
    gate.wait(stop)
    assert clock.utc() == MIDNIGHT_IN_BEIJING


def test_payment_required_is_its_own_state_probed_hourly() -> None:
    gate, clock, stop = gate_at(NOON_IN_BEIJING)
    gate.payment_required()
    state = gate.state()
    assert (state.exhausted, state.payment_required, state.remaining) == (True, True, 0)
    assert state.resets_at == NOON_IN_BEIJING + timedelta(hours=1)
    gate.wait(stop)
    assert clock.utc() == NOON_IN_BEIJING + timedelta(hours=1)  # one probe an hour, not a day's wait
    probing = gate.state()
    assert (probing.exhausted, probing.payment_required) == (False, True)  # still unpaid while the probe is out
    gate.payment_required()  # the probe was refused too: another hour, not the 10-minute re-probe of a reset
    assert gate.state().resets_at == NOON_IN_BEIJING + timedelta(hours=2)


def test_payment_required_also_probes_at_the_daily_reset_when_that_is_sooner() -> None:
    gate, _, _ = gate_at(MIDNIGHT_IN_BEIJING - timedelta(minutes=20))
    gate.payment_required()
    assert gate.state().resets_at == MIDNIGHT_IN_BEIJING


def test_the_probe_interval_is_configurable() -> None:
    gate, _, _ = gate_at(NOON_IN_BEIJING, payment_probe_seconds=300.0)
    gate.payment_required()
    assert gate.state().resets_at == NOON_IN_BEIJING + timedelta(minutes=5)


def test_an_answer_that_went_through_ends_payment_required() -> None:
    gate, _, stop = gate_at(NOON_IN_BEIJING)
    gate.payment_required()
    gate.wait(stop)
    gate.observe(QuotaFacts(charge=True, remain_times=10_000))
    state = gate.state()
    assert (state.exhausted, state.payment_required, state.remaining, state.charged_calls) == (False, False, 10_000, 1)


def test_a_daily_limit_after_payment_required_is_the_daily_quota_again() -> None:
    gate, _, stop = gate_at(NOON_IN_BEIJING)
    gate.payment_required()
    gate.wait(stop)
    gate.exhausted()  # 10040: the account is back on its daily allowance, spent for today
    state = gate.state()
    assert (state.exhausted, state.payment_required, state.resets_at) == (True, False, MIDNIGHT_IN_BEIJING)


# --- the reset's time zone ---------------------------------------------------------------------------------------


@settings(max_examples=300)
@given(
    now=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    at=st.times(),
)
def test_shanghai_and_plus_eight_give_the_same_reset(now: datetime, at: time) -> None:
    """China has kept UTC+8 all year since 1991: the zone name and the offset must agree at every instant."""
    by_name = next_reset(now, ZoneInfo("Asia/Shanghai"), at)
    assert by_name == next_reset(now, CST, at)
    assert now < by_name <= now + timedelta(days=1)
    assert by_name.astimezone(CST).time() == at


def test_the_next_reset_is_at_local_midnight_in_beijing() -> None:
    shanghai = ZoneInfo("Asia/Shanghai")
    assert next_reset(NOON_IN_BEIJING, shanghai, time(0, 0)) == MIDNIGHT_IN_BEIJING
    assert next_reset(MIDNIGHT_IN_BEIJING, shanghai, time(0, 0)) == MIDNIGHT_IN_BEIJING + timedelta(days=1)


def test_a_zone_with_daylight_saving_resets_at_its_wall_clock_time() -> None:
    new_york = ZoneInfo("America/New_York")  # clocks go forward on 2026-03-08 and back on 2026-11-01
    before_spring = datetime(2026, 3, 8, 4, 59, tzinfo=UTC)  # 23:59 EST on the 7th
    first = next_reset(before_spring, new_york, time(0, 0))
    assert first == datetime(2026, 3, 8, 5, 0, tzinfo=UTC)  # midnight EST
    assert next_reset(first, new_york, time(0, 0)) == datetime(2026, 3, 9, 4, 0, tzinfo=UTC)  # midnight EDT: 23 h


def test_a_reset_in_the_repeated_hour_is_never_in_the_past() -> None:
    new_york = ZoneInfo("America/New_York")
    # 2026-11-01 06:00 UTC is 01:00 EST, the second 01:00 of the day; the 01:30 reset (first pass, EDT) was at
    # 05:30 UTC. Compared by wall time 01:30 looks ahead of 01:00, and the reset would be half an hour ago.
    now = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
    reset = next_reset(now, new_york, time(1, 30))
    assert reset > now
    assert reset == datetime(2026, 11, 2, 6, 30, tzinfo=UTC)  # 01:30 EST the next day


def test_a_gate_in_an_iana_zone_waits_for_that_zone_s_reset() -> None:
    clock = FakeClock.at(NOON_IN_BEIJING)
    gate = QuotaGate(ZoneInfo("Asia/Shanghai"), time(0, 0), clock=clock.utc, step_seconds=60.0)
    gate.exhausted()
    assert gate.state().resets_at == MIDNIGHT_IN_BEIJING
    gate.wait(SleeplessStop(clock))
    assert clock.utc() == MIDNIGHT_IN_BEIJING
