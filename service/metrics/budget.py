"""The call budget's series (``service.budget``): what each account may spend, and why it holds calls."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["BudgetMetrics"]


class BudgetMetrics:
    """The budget's gauges and decisions, by account; a part of ``Metrics`` (``AccountMetrics.budget_decided``
    sets them)."""

    def _declare_budget(self, r: CollectorRegistry) -> None:
        self.budget_calls_left = Gauge(
            "imgsweep_budget_calls_left",
            "Calls the account has left today, as the budget counts them.",
            ["account"],
            registry=r,
        )
        self.budget_spendable = Gauge(
            "imgsweep_budget_spendable_calls",
            "Calls imgsweep may still spend before the reset: calls left, capped by a pack's daily limit, "
            "less the reserve.",
            ["account"],
            registry=r,
        )
        self.budget_reserve = Gauge(
            "imgsweep_budget_reserve_calls",
            "Calls never spent: left to the shop's own searches.",
            ["account"],
            registry=r,
        )
        self.budget_needed = Gauge(
            "imgsweep_budget_needed_calls",
            "Calls the images waiting and the rest of the day's expected ones need at full batches.",
            ["account"],
            registry=r,
        )
        self.budget_partial_calls_per_hour = Gauge(
            "imgsweep_budget_partial_calls_per_hour",
            "The pace at which the budget gives partial batches calls now (planned calls per hour).",
            ["account"],
            registry=r,
        )
        self.budget_projected_wait = Gauge(
            "imgsweep_budget_projected_wait_seconds",
            "The longest wait an image now waiting is projected to have before its call.",
            ["account"],
            registry=r,
        )
        self.budget_limited = Gauge(
            "imgsweep_budget_limited",
            "1 while the budget holds an image past IMGSWEEP_BATCH__MAX_WAIT_SECONDS (the budget wins).",
            ["account"],
            registry=r,
        )
        self.budget_account_spent = Gauge(
            "imgsweep_budget_account_spent_calls",
            "The account's calls of the budget day counted on the budget topic, every replica's (gone ones too) "
            "and the calls claimed to start, as this replica reads them.",
            ["account"],
            registry=r,
        )
        self.budget_members = Gauge(
            "imgsweep_budget_members",
            "Replicas (members) with calls of the account counted today on the budget topic, gone ones too.",
            ["account"],
            registry=r,
        )
        self.budget_state_restore_seconds = Gauge(
            "imgsweep_budget_state_restore_seconds",
            "How long reading the budget topic back took at start.",
            registry=r,
        )
        self.budget_state_restored_records = Gauge(
            "imgsweep_budget_state_restored_records",
            "Records of the budget topic read back at start.",
            registry=r,
        )
        self.budget_state_write_failures = Counter(
            "imgsweep_budget_state_write_failures",
            "Records of the budget topic (calls spent or claimed, planner state) Kafka did not take.",
            registry=r,
        )
        self.budget_claim_seconds = Histogram(
            "imgsweep_budget_claim_seconds",
            "From writing a claim of one call on the budget topic to reading it back (a capped pack's call waits "
            "for it).",
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
            registry=r,
        )
        self.budget_decisions = Counter(
            "imgsweep_budget_decisions", "Batches the budget let go, by why.", ["account", "why"], registry=r
        )
        self.budget_waiting_for_reset = Gauge(
            "imgsweep_budget_waiting_for_reset",
            "1 while the budget holds every call until the daily reset, by why: reserve_only (only the reserve "
            "is left), spend_limit (a pack's daily spending limit), quota_exhausted.",
            ["account", "why"],
            registry=r,
        )
