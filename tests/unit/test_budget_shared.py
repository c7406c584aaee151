"""The budget day shared by replicas and kept across restarts (issue 20, point 2): pure logic, no Kafka.

``AccountDay`` resolves every member's records in the topic's order; ``Lease`` is a member's side of the claims;
``SharedPlanner`` puts the other members' calls into the planner's day and restores what a member left; the
planner's state goes to plain data and back (``CallPlanner.saved``/``restore``)."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Sequence
from typing import cast

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from hypothesis import given, settings
from hypothesis import strategies as st

from service.budget import DAY_SECONDS, Allowance, AllowanceKind, CallPlanner, QuotaView, WaitingBatch, Why
from service.budget.shared import AccountDay, Lease, SharedPlanner, SpendRecord
from service.internal_topics import create_command, internal_topics
from service.metrics import Metrics
from service.pipeline.budget_state import BudgetBoard
from service.pipeline.events import ERROR_CLASSES
from service.settings import load_settings

DAY = 1_800_000_000
CAP = 10.0


def pack(cap_calls: int = 10) -> Allowance:
    return Allowance(AllowanceKind.PACK, daily_calls=1000, price_per_call=0.1, daily_spend_limit=cap_calls / 10)


def planner(allowance: Allowance | None = None) -> CallPlanner:
    return CallPlanner(allowance or pack(), max_wait_seconds=600.0, linger_seconds=2.0, max_items=5)


# ---- AccountDay: the day's records, resolved the same way by every reader ----------------------------------------


def test_claims_are_granted_in_the_topics_order_until_the_cap() -> None:
    days = AccountDay(CAP)
    assert days.heard(SpendRecord("a", DAY, 0, 6))
    assert days.heard(SpendRecord("b", DAY, 0, 4))
    assert not days.heard(SpendRecord("a", DAY, 6, 7)), "the 11th call of a 10-call day"
    assert (days.counted(DAY, "a"), days.counted(DAY, "b"), days.total(DAY)) == (6, 4, 10)
    assert days.members(DAY) == 2


def test_a_record_written_twice_counts_once() -> None:
    days = AccountDay(CAP)
    for _ in range(3):
        days.heard(SpendRecord("a", DAY, 2, 3))
    assert days.total(DAY) == 3


def test_calls_spent_always_count_even_past_the_cap() -> None:
    """A call's retries are counted after they happened: what was spent is never denied."""
    days = AccountDay(CAP)
    days.heard(SpendRecord("a", DAY, 0, 10))
    days.heard(SpendRecord("b", DAY, 2, 2))
    assert days.total(DAY) == 12


def test_a_gone_members_calls_count_until_the_day_is_over() -> None:
    days = AccountDay(CAP)
    days.heard(SpendRecord("gone", DAY, 7, 7))
    days.heard(SpendRecord("gone", DAY - 86_400, 9, 9))
    assert days.total(DAY) == 7, "yesterday's calls are not today's"
    days.forget_before(DAY + 86_400)
    assert days.total(DAY) == 0
    assert days.total(DAY + 86_400) == 0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.integers(1, 4)), min_size=1, max_size=60),
    st.integers(1, 30),
)
def test_however_members_claim_every_reader_counts_the_same_and_the_cap_holds(
    claims: list[tuple[str, int]], cap: int
) -> None:
    """Members claiming blocks on top of what they last saw granted, in any interleaving: the granted calls
    never pass the cap, and two readers of the same records agree on every member's count."""
    writer, reader = AccountDay(float(cap)), AccountDay(float(cap))
    for member, block in claims:
        record = SpendRecord(member, DAY, 0, writer.counted(DAY, member) + block)
        assert writer.heard(record) == reader.heard(record)
    assert writer.total(DAY) <= cap
    for member in "abcd":
        assert writer.counted(DAY, member) == reader.counted(DAY, member)


# ---- Lease: a member's claims -------------------------------------------------------------------------------------


def test_a_call_starts_only_once_its_claim_is_read_back_granted() -> None:
    days, lease = AccountDay(CAP), Lease("a", CAP)
    assert not lease.may_start(days, DAY, 0)
    record = lease.claim(days, DAY, 0)
    assert record == SpendRecord("a", DAY, 0, 1)
    assert lease.claim(days, DAY, 0) is None, "one claim at a time"
    days.heard(record)
    lease.read_back(record)
    assert lease.may_start(days, DAY, 0)
    assert not lease.may_start(days, DAY, 1), "the claimed call is spent"
    assert lease.claim(days, DAY, 1) == SpendRecord("a", DAY, 1, 2)


def test_no_claim_when_the_others_took_the_day() -> None:
    days, lease = AccountDay(CAP), Lease("a", CAP)
    days.heard(SpendRecord("b", DAY, 10, 10))
    assert lease.claim(days, DAY, 0) is None


def test_a_lost_claim_is_asked_again_and_counts_once() -> None:
    days, lease = AccountDay(CAP), Lease("a", CAP)
    first = lease.claim(days, DAY, 0)
    lease.lost()  # the delivery failed, or timed out after the broker took it
    again = lease.claim(days, DAY, 0)
    assert first == again
    assert first is not None
    days.heard(first)
    days.heard(first)
    assert days.total(DAY) == 1


def test_without_a_cap_nothing_waits_for_a_claim() -> None:
    days, lease = AccountDay(math.inf), Lease("a", math.inf)
    assert lease.may_start(days, DAY, 1_000)


def test_a_claim_of_yesterday_read_back_today_does_not_hold_todays() -> None:
    days, lease = AccountDay(CAP), Lease("a", CAP)
    assert lease.claim(days, DAY, 0) is not None
    assert lease.claim(days, DAY + 86_400, 0) == SpendRecord("a", DAY + 86_400, 0, 1)


# ---- the planner's day counts the others ----------------------------------------------------------------------


class FakeSpend:
    """The budget topic as ``SharedPlanner`` sees it, in memory."""

    def __init__(self, others: int = 0, *, counted: int = 0, state: dict[str, object] | None = None) -> None:
        self.others_count = others
        self.counted = counted
        self.state = state
        self.same_day = True
        self.grant = True
        self.told: list[int] = []

    def others(self) -> int:
        return self.others_count

    def may_start(self, started: int) -> bool:
        return self.grant

    def started(self, started: int, state: Callable[[], dict[str, object]]) -> None:
        self.told.append(started)

    def restored(self) -> tuple[int, dict[str, object] | None, bool]:
        return self.counted, self.state, self.same_day

    def need(self, calls: Sequence[float]) -> None:
        pass

    def needs(self) -> list[Sequence[float]]:
        return []


def full(key: int) -> WaitingBatch:
    return WaitingBatch(key, "shoes", 5, 0.0, True)


QUOTA = QuotaView(seconds_until_reset=43_200.0, qps=2.0)


def test_the_day_cap_counts_every_replicas_calls() -> None:
    spend = FakeSpend(others=7)
    shared = SharedPlanner(planner(), spend)
    sent = 0
    now = 0.0
    while (decision := shared.plan(now, [full(sent)], QUOTA)).send is not None:
        shared.sent(now, decision.send)
        sent += 1
        now += 1.0
    assert sent == 3, "10 calls a day, 7 spent by the others"
    assert decision.why is Why.SPEND_LIMIT
    assert not shared.may_start(), "a drain stops at the cap too"
    assert spend.told[-1] == 3


def test_a_restart_takes_back_its_calls_of_the_day() -> None:
    shared = SharedPlanner(planner(), FakeSpend(others=2, counted=6))
    assert shared.planner.day.account_spent == 8
    assert shared.plan(0.0, [full(1)], QUOTA).send is not None
    shared.sent(0.0, full(1))
    shared.sent(1.0, full(2))
    assert shared.plan(2.0, [full(3)], QUOTA).why is Why.SPEND_LIMIT


def test_a_batch_waits_for_its_claim() -> None:
    spend = FakeSpend()
    spend.grant = False
    shared = SharedPlanner(planner(), spend)
    decision = shared.plan(0.0, [full(1)], QUOTA)
    assert decision.send is None
    assert decision.next_check_seconds is not None
    assert decision.next_check_seconds < 0.1, "looked at again as soon as the claim can be back"
    spend.grant = True
    assert shared.plan(0.02, [full(1)], QUOTA).send == full(1)


def test_before_an_answer_the_calls_left_are_the_days_less_every_replicas() -> None:
    daily = Allowance(AllowanceKind.DAILY, daily_calls=100, reserve_fraction=0.1)
    shared = SharedPlanner(planner(daily), FakeSpend(others=30, counted=20))
    assert shared.planner.day.calls_left == 50
    assert shared.planner.day.spendable == 40


# ---- the planner's state, saved and restored ------------------------------------------------------------------


def learned_planner(seed: int = 3) -> tuple[CallPlanner, float]:
    """A daily planner that watched a day and a half of a trickle busier in the evening."""
    daily = Allowance(AllowanceKind.DAILY, daily_calls=500, reserve_fraction=0.1)
    learned = planner(daily)
    rng = random.Random(seed)
    now = 0.0
    while now < 1.5 * DAY_SECONDS:
        hour = (now % DAY_SECONDS) // 3600
        learned.plan(now, [], QuotaView(DAY_SECONDS - now % DAY_SECONDS, 2.0))
        learned.observe_arrivals(now, rng.randint(1, 3 if hour < 18 else 12))
        now += 60.0
    return learned, now


def test_a_saved_state_goes_through_json_and_back_the_same_day() -> None:
    learned, now = learned_planner()
    state = json.loads(json.dumps(learned.saved()))
    fresh = planner(Allowance(AllowanceKind.DAILY, daily_calls=500, reserve_fraction=0.1))
    fresh.restore(state, same_day=True)
    assert fresh.saved() == learned.saved()
    position = now % DAY_SECONDS
    quota = QuotaView(DAY_SECONDS - position, 2.0)
    assert fresh.plan(now, [], quota).budget.needed == pytest.approx(learned.plan(now, [], quota).budget.needed)


def test_a_state_of_an_earlier_day_is_folded_into_the_curve() -> None:
    learned, _ = learned_planner()
    state = learned.saved()
    fresh = planner(Allowance(AllowanceKind.DAILY, daily_calls=500, reserve_fraction=0.1))
    fresh.restore(state, same_day=False)
    curve = fresh.saved()["curve"]
    assert isinstance(curve, dict)
    assert sum(curve["images"]) == 0, "that day is over"
    before = learned.saved()["curve"]
    assert isinstance(before, dict)
    morning = 6  # watched on both days: the second day's half is folded in, the evening (not watched) kept
    assert curve["rates"][morning] != before["rates"][morning], "what it watched of that day was learned"
    assert curve["rates"][20] == before["rates"][20]


@pytest.mark.parametrize(
    "broken",
    [
        {"version": 99},
        {"version": 1, "share": 2.0, "curve": {}, "target": {}},
        {"version": 1, "share": 0.5, "curve": {"rates": [1.0], "images": [0.0], "watched": [0.0]}, "target": {}},
        {"version": 1, "share": None, "curve": {"rates": [-1.0] * 24, "images": [0] * 24, "watched": [0] * 24}},
    ],
)
def test_a_malformed_state_changes_nothing(broken: dict[str, object]) -> None:
    fresh = planner()
    before = fresh.saved()
    with pytest.raises((ValueError, KeyError, TypeError)):
        fresh.restore(broken, same_day=True)
    assert fresh.saved() == before


# ---- the topic: made when a budget needs it, required by a spending limit --------------------------------------


PACK_WITH_A_LIMIT = {
    "IMGSWEEP_API__ALLOWANCE": "pack",
    "IMGSWEEP_API__PRICE_PER_CALL": "0.1",
    "IMGSWEEP_API__DAILY_SPEND_LIMIT": "1",
}


@pytest.mark.usefixtures("settings_from_the_test_only")
@pytest.mark.parametrize(
    ("env", "required"),
    [
        ({"IMGSWEEP_API__DAILY_CALLS": "-1"}, None),  # no budget: no topic
        ({}, False),  # a daily allowance: counted together when the topic is there, alone when not
        (PACK_WITH_A_LIMIT, True),
    ],
)
def test_the_budget_topic_is_made_when_a_budget_needs_it(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], required: bool | None
) -> None:
    monkeypatch.setenv("IMGSWEEP_KAFKA__GROUP_ID", "shop")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    found = [topic for topic in internal_topics(settings, 3) if topic.variable == "IMGSWEEP_KAFKA__BUDGET_TOPIC"]
    if required is None:
        assert found == []
        return
    (topic,) = found
    assert (topic.name, topic.partitions, topic.required) == ("imgsweep.shop.budget", 1, required)
    command = create_command(topic, "kafka:9092")
    assert "--partitions 1 --config cleanup.policy=compact --config min.compaction.lag.ms=93600000" in command


class _LeaderlessReader:
    """A reader of a topic just made: its partition has no leader for the first ``refusals`` asks."""

    def __init__(self, refusals: int, ends: tuple[int, int]) -> None:
        self.refusals, self.ends, self.asks = refusals, ends, 0
        self.assigned: list[object] = []

    def get_watermark_offsets(self, _partition: object, timeout: float) -> tuple[int, int]:
        assert timeout > 0
        self.asks += 1
        if self.asks <= self.refusals:
            raise KafkaException(KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION))
        return self.ends

    def assign(self, partitions: list[object]) -> None:
        self.assigned = partitions

    def consume(self, _batch: int, timeout: float) -> list[object]:
        return []


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.05
        return self.now


@pytest.mark.parametrize(("refusals", "asks"), [(0, 1), (3, 4)])
def test_a_budget_topic_without_a_leader_yet_is_asked_again(
    refusals: int, asks: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A topic imgsweep just made may have no leader for a moment: the start asks again, it never crashes."""
    monkeypatch.setattr("service.pipeline.budget_state.time.sleep", lambda _seconds: None)
    reader = _LeaderlessReader(refusals, (0, 0))
    board = BudgetBoard(
        topic="t.budget", member="m", producer=cast(Producer, object()), reader=cast(Consumer, reader),
        metrics=Metrics(error_classes=ERROR_CLASSES, accounts=["default"]), clock=_Clock(),
    )  # fmt: skip
    assert board.restore(timeout=5.0) == 0
    assert reader.asks == asks
    assert reader.assigned


def test_a_budget_topic_never_readable_at_start_is_read_as_it_comes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("service.pipeline.budget_state.time.sleep", lambda _seconds: None)
    reader = _LeaderlessReader(10**6, (0, 5))
    board = BudgetBoard(
        topic="t.budget", member="m", producer=cast(Producer, object()), reader=cast(Consumer, reader),
        metrics=Metrics(error_classes=ERROR_CLASSES, accounts=["default"]), clock=_Clock(),
    )  # fmt: skip
    assert board.restore(timeout=2.0) == 0  # gave up at the deadline, no exception
    assert 1 < reader.asks < 100
    assert reader.assigned  # poll reads the records as they come


# ---- needs on the budget topic ----------------------------------------------------------------------------------


class _Topic:
    """One partition in memory: what every board writes, each reader reading on from its own position."""

    def __init__(self) -> None:
        self.records: list[bytes] = []

    def producer(self) -> Producer:
        topic = self

        class _Producer:
            def produce(self, _topic: str, *, key: bytes, value: bytes, partition: int, on_delivery: object) -> None:
                topic.records.append(value)

            def poll(self, _timeout: float) -> int:
                return 0

        return cast(Producer, _Producer())

    def reader(self) -> Consumer:
        topic = self

        class _Message:
            def __init__(self, value: bytes) -> None:
                self._value = value

            def error(self) -> None:
                return None

            def value(self) -> bytes:
                return self._value

        class _Reader:
            position = 0

            def consume(self, batch: int, timeout: float) -> list[_Message]:
                read = topic.records[self.position : self.position + batch]
                self.position += len(read)
                return [_Message(value) for value in read]

        return cast(Consumer, _Reader())


def test_a_members_need_reaches_the_others_until_it_expires_or_the_member_leaves() -> None:
    topic, wall = _Topic(), [1_000.0]
    spends = {}
    for member in ("a", "b"):
        board = BudgetBoard(
            topic="t.budget", member=member, producer=topic.producer(), reader=topic.reader(),
            metrics=Metrics(error_classes=ERROR_CLASSES, accounts=["default"]), wall=lambda: wall[0],
        )  # fmt: skip
        spends[member] = board.account("default", math.inf, lambda: DAY)
    need = [float(calls) for calls in range(15, 0, -1)]
    spends["a"].need(need)
    assert spends["b"].needs() == [need]
    assert spends["a"].needs() == [], "a member's own need is not another's"
    wall[0] += 301.0
    assert spends["b"].needs() == [], "a need not published again for 5 minutes is a dead member's"
    spends["a"].need(need)
    assert spends["b"].needs() == [need]
    spends["a"].save_last()
    assert spends["b"].needs() == [], "a member shutting down leaves its part to the others at once"
