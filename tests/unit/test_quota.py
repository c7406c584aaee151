"""QuotaGate on a FakeClock: the daily quota, a spent paid pack (10010) and when each is probed again."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone

from service.api.models import QuotaFacts
from service.api.quota import QuotaGate
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
