"""The budget's metrics, from the planner's decisions (service.metrics.AccountMetrics.budget_decided)."""

from __future__ import annotations

from service.budget import BudgetSnapshot, Decision, WaitingBatch, Why
from service.metrics import HELD_UNTIL_RESET, Metrics

SNAPSHOT = BudgetSnapshot(calls_left=10, reserve=10, spendable=0, needed=40, partial_calls_per_hour=0.0, spent_today=20)


def _value(metrics: Metrics, name: str, account: str = "default", **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"account": account, **labels})


def test_waiting_for_the_reset_is_said_by_why_and_cleared_when_a_batch_goes() -> None:
    metrics = Metrics()
    for why in HELD_UNTIL_RESET:
        assert _value(metrics, "imgsweep_budget_waiting_for_reset", why=why) == 0

    metrics.account("default").budget_decided(Decision(None, Why.RESERVE_ONLY, 7200.0, True, 3600.0, SNAPSHOT))
    assert _value(metrics, "imgsweep_budget_waiting_for_reset", why="reserve_only") == 1
    assert _value(metrics, "imgsweep_budget_waiting_for_reset", why="spend_limit") == 0
    assert _value(metrics, "imgsweep_budget_spendable_calls") == 0
    assert _value(metrics, "imgsweep_budget_limited") == 1
    assert _value(metrics, "imgsweep_budget_decisions_total", why="reserve_only") == 0  # holds are not counted

    batch = WaitingBatch(key=1, collection="shoes", items=200, oldest_at=0.0, full=True)
    metrics.account("default").budget_decided(Decision(batch, Why.FULL, 0.0, False, 0.0, SNAPSHOT))
    assert _value(metrics, "imgsweep_budget_waiting_for_reset", why="reserve_only") == 0
    assert _value(metrics, "imgsweep_budget_decisions_total", why="full") == 1


def test_each_account_has_its_own_series_from_the_start() -> None:
    metrics = Metrics(accounts=["shoes", "bags"])
    assert _value(metrics, "imgsweep_api_calls_total", account="bags", code="10000") == 0
    assert _value(metrics, "imgsweep_quota_remaining_calls", account="shoes") != _value(
        metrics, "imgsweep_quota_remaining_calls", account="shoes"
    ), "unknown (NaN) until the API first answers"
    assert _value(metrics, "imgsweep_api_calls_total", account="default", code="10000") is None

    metrics.account("shoes").call_finished("10000", 0.1, 200)
    metrics.account("shoes").budget_decided(Decision(None, Why.RESERVE_ONLY, 7200.0, True, 3600.0, SNAPSHOT))
    assert _value(metrics, "imgsweep_api_calls_total", account="shoes", code="10000") == 1
    assert _value(metrics, "imgsweep_api_calls_total", account="bags", code="10000") == 0
    assert _value(metrics, "imgsweep_batch_items_sum", account="shoes") == 200
    assert _value(metrics, "imgsweep_budget_waiting_for_reset", account="shoes", why="reserve_only") == 1
    assert _value(metrics, "imgsweep_budget_waiting_for_reset", account="bags", why="reserve_only") == 0
