"""The QPS shared by demand: the pure share, the table of announcements and the rising pace."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.pipeline.demand_share import (
    SHARED_HEADROOM,
    Demand,
    DemandTable,
    RisingShare,
    demand_shares,
    floor_qps,
)

accounts = st.one_of(st.integers(1, 50).map(float), st.floats(0.05, 100, allow_nan=False))
demand_maps = st.dictionaries(st.text("abcdefgh", min_size=1, max_size=4), st.integers(0, 500), min_size=1, max_size=12)


@given(accounts, demand_maps, st.integers(0, 1000))
def test_the_shares_add_up_to_the_account_qps_and_never_more(
    account: float, demands: dict[str, int], rotation: int
) -> None:
    shares = demand_shares(account, demands, rotation=rotation)
    assert set(shares) == set(demands)
    assert sum(shares.values()) <= account * (1 + 1e-9)
    assert sum(shares.values()) >= account * (1 - SHARED_HEADROOM) * (1 - 1e-9)
    assert all(share > 0 for share in shares.values())


@given(st.integers(1, 50), demand_maps, st.integers(0, 1000))
def test_a_share_is_floor_plus_whole_calls_a_second(account: int, demands: dict[str, int], rotation: int) -> None:
    """With an integer QPS no member paces above its whole calls per second: their sum fits the sliding second."""
    shares = demand_shares(float(account), demands, rotation=rotation)
    if len(demands) == 1:
        return
    floor = floor_qps(account, len(demands))
    unit = (account - len(demands) * floor) / account
    if sum(1 for share in shares.values() if share > floor * 1.5) > 1:
        unit *= 1 - SHARED_HEADROOM
    assert unit <= 1
    held = [round((share - floor) / unit) for share in shares.values()]
    assert [floor + h * unit for h in held] == pytest.approx(list(shares.values()))
    assert sum(held) == account


@given(accounts, st.text(min_size=1), st.integers(0, 500))
def test_a_replica_alone_gets_all(account: float, member: str, calls: int) -> None:
    assert demand_shares(account, {member: calls}) == {member: account}


@given(accounts, st.integers(1, 500), st.integers(1, 11), st.integers(0, 1000))
def test_an_idle_replica_gets_only_the_floor_while_another_has_work(
    account: float, calls: int, idle: int, rotation: int
) -> None:
    demands = {"busy": calls, **{f"idle{n}": 0 for n in range(idle)}}
    shares = demand_shares(account, demands, rotation=rotation)
    floor = floor_qps(account, len(demands))
    assert all(shares[f"idle{n}"] == pytest.approx(floor) for n in range(idle))
    assert floor <= account * 0.002 + 1e-12
    assert shares["busy"] == pytest.approx(account - idle * floor)


@given(st.integers(1, 20), st.integers(1, 12), st.integers(0, 1000))
def test_busy_replicas_split_the_whole_calls_evenly(account: int, members: int, rotation: int) -> None:
    """Max-min fair: no busy member holds two calls a second more than another."""
    shares = demand_shares(float(account), {f"m{n}": 1000 for n in range(members)}, rotation=rotation)
    if members == 1:
        return
    floor = floor_qps(account, members)
    unit = (account - members * floor) / account
    assert max(shares.values()) - min(shares.values()) <= unit + 1e-9
    if members <= account:
        assert min(shares.values()) >= floor + unit * (1 - SHARED_HEADROOM) - 1e-9


def test_small_demands_are_met_and_the_rest_goes_to_whom_wants_more() -> None:
    shares = demand_shares(10.0, {"a": 1, "b": 100, "c": 0}, rotation=3)
    floor = floor_qps(10.0, 3)
    unit = (10.0 - 3 * floor) / 10 * (1 - SHARED_HEADROOM)
    assert shares["c"] == pytest.approx(floor)
    assert shares["a"] == pytest.approx(floor + unit * round((shares["a"] - floor) / unit))
    assert shares["b"] > shares["a"] >= floor + unit * (1 - SHARED_HEADROOM)


def test_two_busy_replicas_on_2_qps_get_one_call_a_second_each() -> None:
    shares = demand_shares(2.0, {"a": 50, "b": 3})
    assert shares["a"] == pytest.approx(shares["b"]) == pytest.approx(0.98, abs=0.005)


def test_four_busy_replicas_on_2_qps_two_hold_a_call_a_second_and_the_holders_rotate() -> None:
    demands = {name: 50 for name in "abcd"}
    holders = []
    for rotation in range(20):
        shares = demand_shares(2.0, demands, rotation=rotation)
        holding = {name for name, share in shares.items() if share > 0.5}
        assert len(holding) == 2
        holders.append(frozenset(holding))
    assert len(set(holders)) > 1
    assert set().union(*holders) == set(demands)


def test_nobody_busy_shares_everything_out() -> None:
    shares = demand_shares(2.0, {"a": 0, "b": 0})
    assert shares["a"] == pytest.approx(shares["b"]) == pytest.approx(0.98, abs=0.005)


def test_the_table_forgets_tombstoned_and_expired_members() -> None:
    table = DemandTable(expiry_seconds=5)
    table.heard(Demand("a", 3, at=100.0))
    table.heard(Demand("b", 0, at=100.0))
    table.heard(Demand("a", 1, at=99.0))  # an older word never replaces a newer one
    assert table.live(104.0) == {"a": 3, "b": 0}
    table.gone("b")
    assert table.live(104.0) == {"a": 3}
    assert table.live(105.5) == {}


def test_the_pace_falls_at_once_and_rises_only_after_it_held() -> None:
    pace = RisingShare(0.004, rise_seconds=2)
    assert pace.update(1.0, now=0.0) == 0.004
    assert pace.update(2.0, now=1.0) == 0.004
    assert pace.update(2.0, now=1.9) == 0.004
    assert pace.update(2.0, now=2.0) == 1.0  # 1.0 has held for 2 s, 2.0 not yet
    assert pace.update(2.0, now=2.9) == 1.0
    assert pace.update(2.0, now=3.0) == 2.0
    assert pace.update(0.5, now=3.1) == 0.5  # down at once


@given(st.lists(st.tuples(st.floats(0.01, 10), st.floats(0, 1)), min_size=1, max_size=40), st.floats(0.01, 10))
def test_the_pace_is_never_above_the_share_and_reaches_it_once_it_held(
    steps: list[tuple[float, float]], last: float
) -> None:
    pace = RisingShare(0.01, rise_seconds=2)
    now = 0.0
    for share, gap in steps:
        now += gap
        assert pace.update(share, now) <= share
    pace.update(last, now + 1)
    assert pace.update(last, now + 3.001) == last
