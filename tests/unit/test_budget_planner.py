"""The call planner, driven as the batch step will drive it, over generated days of arrivals.

A small model of the batcher (one open batch per collection, full at ``max_items``) and of the account (calls
refilled at each reset, or a pack that only goes down, answers learned at once) run on a virtual clock: each
turn the planner is asked, what it names is taken and sent, and the clock moves to the next arrival, the next
reset or the moment the planner asked to look again.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.budget import (
    DAY_SECONDS,
    Allowance,
    AllowanceKind,
    CallPlanner,
    Decision,
    QuotaView,
    WaitingBatch,
    Why,
)

MAX_STEP = 3_600.0


@dataclass
class _Batch:
    key: int
    collection: str
    joined: list[float]
    full: bool = False


class _Batches:
    """The batcher as the planner sees it: one open batch per collection, full at ``max_items``."""

    def __init__(self, max_items: int) -> None:
        self.max_items = max_items
        self.batches: dict[int, _Batch] = {}
        self.open: dict[str, _Batch] = {}
        self.next_key = 0

    def add(self, now: float, collection: str, images: int) -> None:
        for _ in range(images):
            batch = self.open.get(collection)
            if batch is None:
                batch = _Batch(self.next_key, collection, [])
                self.next_key += 1
                self.batches[batch.key] = batch
                self.open[collection] = batch
            batch.joined.append(now)
            if len(batch.joined) >= self.max_items:
                batch.full = True
                del self.open[collection]

    def waiting(self) -> list[WaitingBatch]:
        return [WaitingBatch(b.key, b.collection, len(b.joined), b.joined[0], b.full) for b in self.batches.values()]

    def take(self, key: int) -> _Batch:
        batch = self.batches.pop(key)
        if self.open.get(batch.collection) is batch:
            del self.open[batch.collection]
        return batch

    def images(self) -> int:
        return sum(len(batch.joined) for batch in self.batches.values())


@dataclass(frozen=True)
class Scenario:
    allowance: Allowance
    account_calls: int
    """Calls the account has: a day's (refilled at each reset) or the pack's."""
    qps: float
    linger: float
    max_wait: float
    max_items: int
    first_reset: float
    arrivals: tuple[tuple[float, str, int], ...]
    shop_calls: tuple[tuple[float, int], ...] = ()
    """The shop's own searches spending the account's calls, learned by the next answer (here: at once)."""


@dataclass
class Step:
    now: float
    waiting: list[WaitingBatch]
    decision: Decision
    left: int
    spent_today: int
    last_send: float | None


@dataclass
class Trace:
    steps: list[Step] = field(default_factory=list)
    sends: list[tuple[float, int, int]] = field(default_factory=list)
    """(time, calls left before the send, calls spent that budget day before it)."""
    waits: list[float] = field(default_factory=list)
    unsent: int = 0


def run(scenario: Scenario, horizon: float) -> Trace:
    planner = CallPlanner(
        scenario.allowance,
        max_wait_seconds=scenario.max_wait,
        linger_seconds=scenario.linger,
        max_items=scenario.max_items,
    )
    batches = _Batches(scenario.max_items)
    daily = scenario.allowance.kind is AllowanceKind.DAILY
    left, spent_today = scenario.account_calls, 0
    reset = scenario.first_reset
    arrivals, shop = list(scenario.arrivals), list(scenario.shop_calls)
    trace = Trace()
    last_send: float | None = None
    now = 0.0
    if not daily:  # a pack's calls left are what its first answer says (the setting is only a first guess)
        planner.learned(now, left)
    while now <= horizon:
        while now >= reset:
            reset += DAY_SECONDS
            spent_today = 0
            if daily:
                left = scenario.account_calls
        while arrivals and arrivals[0][0] <= now:
            _, collection, images = arrivals.pop(0)
            batches.add(now, collection, images)
            planner.observe_arrivals(now, images)
        while shop and shop[0][0] <= now:
            left = max(0, left - shop.pop(0)[1])
            planner.learned(now, left)
        while True:
            waiting = batches.waiting()
            decision = planner.plan(now, waiting, QuotaView(reset - now, scenario.qps, exhausted=left <= 0))
            trace.steps.append(Step(now, waiting, decision, left, spent_today, last_send))
            if decision.send is None:
                break
            assert decision.send in waiting
            trace.sends.append((now, left, spent_today))
            trace.waits += [now - joined for joined in batches.take(decision.send.key).joined]
            left -= 1
            spent_today += 1
            last_send = now
            planner.sent(now, decision.send)
            planner.learned(now, left)
        following = min(
            arrivals[0][0] if arrivals else math.inf,
            shop[0][0] if shop else math.inf,
            reset,
            now + MAX_STEP,
            now + max(1e-3, decision.next_check_seconds if decision.next_check_seconds is not None else math.inf),
        )
        now = max(following, now + 1e-3)
    trace.unsent = batches.images()
    return trace


@st.composite
def scenarios(draw: st.DrawFn, *, enough_calls: bool = False) -> Scenario:
    collections = ["a", "b", "c", "d"][: draw(st.integers(1, 4))]
    gaps = draw(st.lists(st.floats(0, 3_600), min_size=1, max_size=25))
    times = [sum(gaps[: index + 1]) for index in range(len(gaps))]
    arrivals = tuple((at, draw(st.sampled_from(collections)), draw(st.integers(1, 30))) for at in times)
    images = sum(count for _, _, count in arrivals)
    kind = draw(st.sampled_from(AllowanceKind))
    reserve_calls = draw(st.integers(0, 20))
    reserve_fraction = draw(st.sampled_from([0.0, 0.1, 0.25]))
    price, limit = None, None
    if kind is AllowanceKind.PACK and draw(st.booleans()):
        price, limit = 0.5, draw(st.sampled_from([0.5, 2.0, 10.0, 50.0]))
    if enough_calls:  # every image could have a call of its own on the first day
        daily_calls = reserve_calls + images + draw(st.integers(0, 50))
        daily_calls = max(daily_calls, math.ceil((daily_calls + 1) * reserve_fraction) + images)
        if limit is not None:
            limit = max(limit, 0.5 * (images + 1) / (1 - reserve_fraction) + 0.5 * reserve_calls)
            # a pack's reserve is a fraction of its day's cap (limit / price), not of the calls it has left
            daily_calls = max(daily_calls, reserve_calls + math.ceil(reserve_fraction * limit / 0.5) + images)
    else:
        daily_calls = draw(st.integers(0, 80))
    allowance = Allowance(
        kind,
        daily_calls=daily_calls,
        reserve_calls=reserve_calls,
        reserve_fraction=reserve_fraction,
        price_per_call=price,
        daily_spend_limit=limit,
    )
    linger = draw(st.sampled_from([0.0, 2.0, 30.0]))
    shop: tuple[tuple[float, int], ...] = ()
    if not enough_calls:
        shop = tuple(sorted(draw(st.lists(st.tuples(st.floats(0, 2 * DAY_SECONDS), st.integers(1, 20)), max_size=3))))
    return Scenario(
        allowance=allowance,
        account_calls=daily_calls if kind is AllowanceKind.DAILY else draw(st.integers(daily_calls, daily_calls + 100)),
        qps=draw(st.sampled_from([0.5, 1.0, 2.0, 3.5])),
        linger=linger,
        max_wait=linger + draw(st.sampled_from([0.0, 60.0, 600.0, 3_600.0])),
        max_items=draw(st.integers(2, 20)),
        first_reset=draw(st.floats(1.0, DAY_SECONDS)),
        arrivals=arrivals,
        shop_calls=shop,
    )


def _horizon(scenario: Scenario) -> float:
    return scenario.arrivals[-1][0] + 2 * DAY_SECONDS + scenario.max_wait


HYPOTHESIS = settings(max_examples=80, deadline=None)  # 150 before the target-wait planner, 2.3x slower a decision


@HYPOTHESIS
@given(scenarios())
def test_never_spends_the_reserve_nor_past_the_days_spending_limit(scenario: Scenario) -> None:
    trace = run(scenario, _horizon(scenario))
    reserve = scenario.allowance.reserve()
    for _, left_before, spent_before in trace.sends:
        assert left_before - 1 >= reserve
        assert spent_before + 1 <= scenario.allowance.day_cap()


@HYPOTHESIS
@given(scenarios())
def test_never_exceeds_the_qps_in_any_window(scenario: Scenario) -> None:
    times = [at for at, _, _ in run(scenario, _horizon(scenario)).sends]
    for earlier, later in itertools.pairwise(times):
        assert later - earlier >= 1 / scenario.qps - 1e-9
    for window in (1.0, 10.0, 60.0):
        for start in times:
            calls = sum(1 for at in times if start <= at < start + window - 1e-9)
            assert calls <= math.ceil(scenario.qps * window)


@HYPOTHESIS
@given(scenarios(enough_calls=True))
def test_every_image_is_eventually_sent(scenario: Scenario) -> None:
    trace = run(scenario, _horizon(scenario))
    assert trace.unsent == 0
    assert len(trace.waits) == sum(images for _, _, images in scenario.arrivals)


def _truly_spendable(scenario: Scenario, step: Step) -> bool:
    allowance = scenario.allowance
    return step.left - allowance.reserve() >= 1 and step.spent_today + 1 <= allowance.day_cap()


@HYPOTHESIS
@given(scenarios())
def test_full_batches_are_never_held_while_spendable_quota_exists(scenario: Scenario) -> None:
    for step in run(scenario, _horizon(scenario)).steps:
        slot_free = step.last_send is None or step.now - step.last_send >= 1 / scenario.qps - 1e-9
        if any(batch.full for batch in step.waiting) and slot_free and _truly_spendable(scenario, step):
            assert step.decision.send is not None


@HYPOTHESIS
@given(scenarios())
def test_past_the_max_wait_first_then_full_then_most_images(scenario: Scenario) -> None:
    for step in run(scenario, _horizon(scenario)).steps:
        sent = step.decision.send
        if sent is None:
            continue

        # past the max wait, or past the budget's target wait when that is shorter (issue 22: a partial batch
        # goes when it waited what the calls carry, oldest first, not the fullest one first)
        limit = min(scenario.max_wait, step.decision.budget.target_wait_seconds)

        def overdue(batch: WaitingBatch, now: float = step.now, limit: float = limit) -> bool:
            return not batch.full and now - batch.oldest_at > limit

        late = [batch for batch in step.waiting if overdue(batch)]
        if late:
            assert sent.full or overdue(sent)
            if math.isinf(scenario.allowance.day_cap()) and scenario.allowance.kind is AllowanceKind.PACK:
                assert overdue(sent)  # no pace to wait for: past the max wait goes before full
        if overdue(sent):
            assert sent.oldest_at == min(batch.oldest_at for batch in late)
        if not sent.full and not overdue(sent):
            assert not any(batch.full for batch in step.waiting)
            lead = len(step.waiting) / scenario.qps if scenario.allowance.kind is AllowanceKind.PACK else 0.0
            due = [
                batch
                for batch in step.waiting
                if step.now - batch.oldest_at >= max(scenario.linger, scenario.max_wait - lead if lead else 0.0)
            ]
            assert sent.items == max(batch.items for batch in due)


@HYPOTHESIS
@given(scenarios())
def test_a_partial_batch_never_goes_before_its_linger(scenario: Scenario) -> None:
    for step in run(scenario, _horizon(scenario)).steps:
        sent = step.decision.send
        if sent is not None and not sent.full:
            assert step.now - sent.oldest_at >= scenario.linger


# ---- examples ------------------------------------------------------------------------------------------------


def _planner(allowance: Allowance, *, max_wait: float = 600.0, linger: float = 2.0) -> CallPlanner:
    return CallPlanner(allowance, max_wait_seconds=max_wait, linger_seconds=linger)


def _batch(key: int, items: int, oldest_at: float, *, full: bool = False, collection: str = "") -> WaitingBatch:
    return WaitingBatch(key, collection or f"c{key}", items, oldest_at, full)


def test_only_the_reserve_left_waits_for_the_reset_as_if_the_quota_were_spent() -> None:
    planner = _planner(Allowance(AllowanceKind.DAILY, daily_calls=1_000, reserve_calls=100))
    planner.learned(0.0, 100)
    full = _batch(1, 200, 0.0, full=True)

    held = planner.plan(10.0, [full], QuotaView(3_600.0, 2.0))

    assert held.send is None
    assert held.why is Why.RESERVE_ONLY
    assert held.next_check_seconds == 3_600.0
    assert held.budget_limited
    assert held.projected_wait_seconds == pytest.approx(10.0 + 3_600.0)
    after_reset = planner.plan(3_611.0, [full], QuotaView(DAY_SECONDS - 1, 2.0))
    assert after_reset.send == full
    assert after_reset.why is Why.FULL


def test_a_full_batch_goes_at_once_and_the_next_waits_for_the_qps_slot() -> None:
    planner = _planner(Allowance(AllowanceKind.DAILY, daily_calls=1_000))
    first, second = _batch(1, 200, 0.0, full=True), _batch(2, 200, 0.0, full=True)

    decision = planner.plan(5.0, [first, second], QuotaView(40_000.0, 2.0))
    assert decision.send == first
    planner.sent(5.0, first)
    again = planner.plan(5.0, [second], QuotaView(40_000.0, 2.0))

    assert again.send is None
    assert again.why is Why.QPS
    assert again.next_check_seconds == pytest.approx(0.5)


def test_a_tight_budget_holds_partial_batches_past_the_max_wait_and_says_so() -> None:
    planner = _planner(Allowance(AllowanceKind.DAILY, daily_calls=3), max_wait=60.0)
    waiting = [_batch(key, 1, 0.0) for key in range(4)]

    decision = planner.plan(10.0, waiting, QuotaView(40_000.0, 2.0))

    assert decision.send is None
    assert decision.why is Why.BUDGET
    assert decision.budget_limited
    assert decision.projected_wait_seconds > 60.0
    assert decision.next_check_seconds is not None
    assert decision.next_check_seconds > 0


def test_a_pack_sends_a_partial_batch_only_near_its_max_wait() -> None:
    planner = _planner(Allowance(AllowanceKind.PACK, daily_calls=10_000), max_wait=600.0)
    batch = _batch(1, 50, 0.0)

    early = planner.plan(300.0, [batch], QuotaView(40_000.0, 2.0))
    due = planner.plan(599.5, [batch], QuotaView(40_000.0 - 299.5, 2.0))

    assert early.send is None
    assert early.why is Why.LATENCY_TARGET
    assert early.next_check_seconds == pytest.approx(600.0 - 0.5 - 300.0)
    assert not early.budget_limited
    assert due.send == batch
    assert due.why is Why.MAX_WAIT


def test_a_pack_stops_at_its_daily_spending_limit_until_the_reset() -> None:
    pack = Allowance(AllowanceKind.PACK, daily_calls=10_000, price_per_call=0.5, daily_spend_limit=1.0)
    planner = _planner(pack)
    full = _batch(1, 200, 0.0, full=True)
    for second in (1.0, 2.0):
        decision = planner.plan(second, [full], QuotaView(1_000.0 - second, 2.0))
        assert decision.send == full
        planner.sent(second, full)

    held = planner.plan(3.0, [full], QuotaView(997.0, 2.0))
    next_day = planner.plan(1_001.0, [full], QuotaView(DAY_SECONDS - 1, 2.0))

    assert held.send is None
    assert held.why is Why.SPEND_LIMIT
    assert next_day.send == full


def test_an_exhausted_quota_holds_everything() -> None:
    planner = _planner(Allowance(AllowanceKind.DAILY, daily_calls=1_000))
    decision = planner.plan(1.0, [_batch(1, 200, 0.0, full=True)], QuotaView(500.0, 2.0, exhausted=True))
    assert decision.send is None
    assert decision.why is Why.QUOTA_EXHAUSTED


def test_calls_are_kept_for_the_days_expected_images_at_full_batches() -> None:
    """Yesterday 100 images an hour arrived all day: today's 11 calls are less than the rest of the day's
    images need at full batches, so a partial batch waits (for the day's last minutes, if it stays partial)."""
    planner = _planner(Allowance(AllowanceKind.DAILY, daily_calls=11))
    for second in range(0, int(DAY_SECONDS), 600):
        planner.plan(float(second), [], QuotaView(DAY_SECONDS - second, 2.0))
        planner.observe_arrivals(float(second), 100 // 6)
    waiting = [_batch(1, 40, DAY_SECONDS + 10.0)]

    held = planner.plan(DAY_SECONDS + 3_600.0, waiting, QuotaView(DAY_SECONDS - 3_600.0, 2.0))
    last_minutes = planner.plan(2 * DAY_SECONDS - 60.0, waiting, QuotaView(60.0, 2.0))

    assert held.budget.needed > held.budget.spendable
    assert held.send is None
    assert held.why is Why.BUDGET
    assert last_minutes.send == waiting[0]


def test_the_spending_of_a_day_is_forgotten_at_the_reset() -> None:
    planner = _planner(Allowance(AllowanceKind.DAILY, daily_calls=10))
    full = _batch(1, 200, 0.0, full=True)
    planner.plan(0.0, [full], QuotaView(100.0, 2.0))
    planner.sent(0.0, full)
    planner.learned(0.0, 0)

    spent = planner.plan(50.0, [], QuotaView(50.0, 2.0))
    renewed = planner.plan(101.0, [], QuotaView(DAY_SECONDS - 1, 2.0))

    assert spent.budget.calls_left == 0
    assert renewed.budget.calls_left == 10
    assert renewed.budget.spent_today == 0


def test_the_answer_counts_the_calls_still_under_way() -> None:
    planner = _planner(Allowance(AllowanceKind.DAILY, daily_calls=1_000, reserve_calls=5))
    planner.learned(0.0, 8, calls_in_flight=2)
    decision = planner.plan(0.0, [], QuotaView(1_000.0, 2.0))
    assert decision.budget.calls_left == 6
    assert decision.budget.spendable == 1


def test_a_batch_past_the_max_wait_goes_before_full_ones_and_the_oldest_of_them_first() -> None:
    planner = _planner(Allowance(AllowanceKind.PACK, daily_calls=10_000), max_wait=60.0)
    full = _batch(1, 200, 0.0, full=True)
    late, later, young_big = _batch(2, 3, 5.0), _batch(3, 150, 1.0), _batch(4, 199, 90.0)

    decision = planner.plan(100.0, [full, late, later, young_big], QuotaView(40_000.0, 2.0))

    assert decision.send == later
    assert decision.why is Why.OVERDUE


def _light_day(replicas: int, share: float, hours: int = 12) -> tuple[int, int]:
    """A trickle (4 images every 20 s, round the 4 collections, dealt round the replicas) for ``hours`` on a
    1,000-call day; every answer tells each replica the account's calls left. Calls made, and the fewest calls
    the account had left, over the window."""
    daily = 1_000
    planners = [_planner(Allowance(AllowanceKind.DAILY, daily_calls=daily)) for _ in range(replicas)]
    waiting: list[dict[str, WaitingBatch]] = [{} for _ in range(replicas)]
    calls = 0
    for tick in range(hours * 180):
        now = tick * 20.0
        replica, collection = tick % replicas, f"c{tick % 4}"
        open_batch = waiting[replica].get(collection)
        items = 4 + (open_batch.items if open_batch else 0)
        oldest = open_batch.oldest_at if open_batch else now
        waiting[replica][collection] = WaitingBatch(tick, collection, items, oldest, items >= 200)
        planners[replica].observe_arrivals(now, 4)
        for number, planner in enumerate(planners):
            while (
                decision := planner.plan(
                    now, list(waiting[number].values()), QuotaView(DAY_SECONDS - now, 2.0, share=share)
                )
            ).send:
                planner.sent(now, decision.send)
                del waiting[number][decision.send.collection]
                calls += 1
                for other in planners:
                    other.learned(now, daily - calls)
            now += 0.5
    return calls, daily - calls


def test_replicas_spend_the_spare_calls_once_not_once_each() -> None:
    """Two replicas sharing one account's images pace their partial batches by half the spare calls each: they
    spend about what one replica alone would, where each counting every spare call spends far more."""
    alone, _ = _light_day(1, 1.0)
    shared, _ = _light_day(2, 0.5)
    unshared, _ = _light_day(2, 1.0)
    assert shared <= alone * 1.1
    assert unshared >= alone * 1.35, "the measure could not tell a shared budget from an unshared one"


def test_a_replica_whose_share_halves_expects_half_of_what_it_learned() -> None:
    """A replica that learned a day alone, then halved by a second replica, expects half the images against
    half the calls: its partial batches still find spare calls (not all of them kept for images it will not see)."""
    alone, halved = (_planner(Allowance(AllowanceKind.DAILY, daily_calls=1_000)) for _ in range(2))
    for planner in (alone, halved):
        for second in range(0, int(DAY_SECONDS), 600):
            planner.plan(float(second), [], QuotaView(DAY_SECONDS - second, 2.0))
            planner.observe_arrivals(float(second), 400)
    now = DAY_SECONDS + 3_600.0
    stays = alone.plan(now, [], QuotaView(DAY_SECONDS - 3_600.0, 2.0))
    shrunk = halved.plan(now, [], QuotaView(DAY_SECONDS - 3_600.0, 2.0, share=0.5))
    assert shrunk.budget.needed == pytest.approx(stays.budget.needed / 2)
    # the account's calls are the account's, less a margin of one call per other replica for its calls under
    # way (issue 22: without it, replicas spending from stale counts breached the reserve)
    assert shrunk.budget.spendable == stays.budget.spendable - 1
    back = halved.plan(now + 1, [], QuotaView(DAY_SECONDS - 3_601.0, 2.0, share=1.0))
    assert back.budget.needed == pytest.approx(stays.budget.needed, rel=0.01)
