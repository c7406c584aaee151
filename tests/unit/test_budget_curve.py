"""The arrival curve and the allowance: the two plain pieces the planner reads."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.budget import DAY_SECONDS, Allowance, AllowanceKind, ArrivalCurve

HOUR = 3_600.0

rates = st.lists(st.one_of(st.none(), st.floats(0, 10)), min_size=24, max_size=24)


@given(rates, st.sampled_from([0.0, 0.5, 1.0]), st.floats(0, DAY_SECONDS), st.floats(0, DAY_SECONDS))
def test_mass_runs_from_0_to_1_and_position_inverts_it(
    learned: list[float | None], exponent: float, a: float, b: float
) -> None:
    curve = ArrivalCurve(rates=learned, exponent=exponent)
    low, high = sorted((a, b))
    assert curve.mass(0.0) == 0.0
    assert curve.mass(DAY_SECONDS) == 1.0
    assert curve.mass(low) <= curve.mass(high) + 1e-12
    assert curve.position(curve.mass(low)) == pytest.approx(low, abs=1e-6)


@given(rates, st.floats(0, DAY_SECONDS), st.floats(0, 1e5))
def test_position_expecting_leaves_at_most_that_many_images(
    learned: list[float | None], start: float, images: float
) -> None:
    curve = ArrivalCurve(rates=learned)
    position = curve.position_expecting(images)
    assert curve.expected_images(position, DAY_SECONDS) <= images + 1e-6
    if position > 0:
        assert curve.expected_images(max(0.0, position - 1.0), DAY_SECONDS) >= images - 1e-6 - 10.0


def test_a_day_seen_teaches_the_rate_of_each_watched_hour() -> None:
    curve = ArrivalCurve(smoothing=0.5)
    curve.watched(0.0, DAY_SECONDS)
    curve.arrived(20 * HOUR + 10, 3_600)  # one image a second in the evening hour, nothing elsewhere
    curve.end_day()

    assert curve.rates[20] == pytest.approx(1.0)
    assert curve.rates[3] == 0.0
    assert curve.expected_images(20 * HOUR, 21 * HOUR) == pytest.approx(3_600)
    assert curve.expected_images(0.0, DAY_SECONDS) == pytest.approx(3_600)

    curve.watched(0.0, DAY_SECONDS)
    curve.end_day()  # a quiet day: smoothing halves the evening
    assert curve.rates[20] == pytest.approx(0.5)


def test_an_hour_not_watched_keeps_what_it_knew() -> None:
    curve = ArrivalCurve(rates=[2.0] * 24, smoothing=0.3)
    curve.watched(0.0, 12 * HOUR)  # the service stopped at noon: a quiet morning, nothing known of the afternoon
    curve.end_day()
    assert curve.rates[:12] == pytest.approx((0.7 * 2.0,) * 12)
    assert curve.rates[12:] == (2.0,) * 12


def test_before_any_day_is_learned_the_rest_is_expected_at_the_busiest_rate_seen_today() -> None:
    curve = ArrivalCurve()
    curve.watched(0.0, 2 * HOUR)
    curve.arrived(10.0, 360)
    curve.arrived(HOUR + 10.0, 720)
    assert curve.expected_images(2 * HOUR, 3 * HOUR) == pytest.approx(720)


def test_the_shares_follow_the_rate_to_the_exponent_with_a_flat_part() -> None:
    learned: list[float | None] = [0.0] * 24
    learned[20] = 1.0
    even = ArrivalCurve(rates=learned, exponent=0.0)
    along = ArrivalCurve(rates=learned, exponent=1.0, flat_share=0.05)
    assert even.mass(HOUR) == pytest.approx(1 / 24)
    assert along.mass(21 * HOUR) - along.mass(20 * HOUR) == pytest.approx(0.95 + 0.05 / 24)


def test_the_reserve_is_the_larger_of_calls_and_fraction() -> None:
    assert Allowance(AllowanceKind.DAILY, daily_calls=1_000, reserve_calls=50, reserve_fraction=0.1).reserve() == 100
    assert Allowance(AllowanceKind.DAILY, daily_calls=1_000, reserve_calls=150, reserve_fraction=0.1).reserve() == 150
    pack = Allowance(
        AllowanceKind.PACK, daily_calls=10, reserve_fraction=0.25, price_per_call=0.1, daily_spend_limit=1.0
    )
    assert pack.day_cap() == 10
    assert pack.reserve() == 3
    assert Allowance(AllowanceKind.PACK, daily_calls=10, reserve_fraction=0.25).day_cap() == math.inf


def test_no_daily_limit_keeps_only_the_fixed_reserve() -> None:
    unlimited = Allowance(AllowanceKind.DAILY, daily_calls=-1, reserve_calls=3, reserve_fraction=0.5)
    assert unlimited.reserve() == 3
