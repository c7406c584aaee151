"""The call budget: which waiting batch may spend one of the account's calls now (pure, injected time)."""

from service.budget.allowance import Allowance, AllowanceKind
from service.budget.curve import DAY_SECONDS, ArrivalCurve
from service.budget.planner import FINISH_SECONDS, BudgetSnapshot, CallPlanner, Decision, QuotaView, WaitingBatch, Why

__all__ = [
    "DAY_SECONDS",
    "FINISH_SECONDS",
    "Allowance",
    "AllowanceKind",
    "ArrivalCurve",
    "BudgetSnapshot",
    "CallPlanner",
    "Decision",
    "QuotaView",
    "WaitingBatch",
    "Why",
]
