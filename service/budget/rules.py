"""The order of waiting batches and when a partial one is old enough to go: pure rules over plain data, the
call planner's (``service.budget.planner``) vocabulary; the budget itself (what may be spent) is not here."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["BatchRules", "WaitingBatch", "Why"]


@dataclass(frozen=True, slots=True)
class WaitingBatch:
    """A batch in the batcher, as the planner sees it."""

    key: int
    """The batcher's identity of the batch (its sequence number): what the pipeline takes when it is chosen."""
    collection: str
    items: int
    oldest_at: float
    """When its oldest image joined (the batch's creation), on the planner's clock."""
    full: bool
    """Full by items or by bytes: nothing more fits."""


class Why(StrEnum):
    """Why a batch goes, or why nothing does (a bounded label set for metrics)."""

    FULL = "full"
    OVERDUE = "overdue"
    """A partial batch past the max wait, with a call from the budget."""
    PACED = "paced"
    """A partial batch with a call from the budget's pace (daily allowance)."""
    MAX_WAIT = "max_wait"
    """A pack's partial batch at its latency target."""
    NOTHING_WAITING = "nothing_waiting"
    LINGER = "linger"
    """Only partial batches younger than the linger."""
    BUDGET = "budget"
    """Partial batches wait for the budget's next call."""
    LATENCY_TARGET = "latency_target"
    """A pack's partial batches wait for their max wait (fewer calls)."""
    QPS = "qps"
    """A batch may go, at the next QPS slot."""
    RESERVE_ONLY = "reserve_only"
    """Only the reserve is left: waiting for the reset as if the quota were spent."""
    SPEND_LIMIT = "spend_limit"
    """A pack's daily spending limit is reached: waiting for the reset."""
    QUOTA_EXHAUSTED = "quota_exhausted"


Rank = tuple[bool, float, bool, int, float]


@dataclass(frozen=True, slots=True)
class BatchRules:
    """How waiting batches are ordered and when a partial one is due, from the batch settings."""

    max_wait: float
    linger: float
    max_items: int
    latency_paced: bool
    """A pack's partial batches go near their max wait (as few calls as the latency target allows)."""

    def rank(self, now: float, batch: WaitingBatch, wait: float | None = None) -> Rank:
        """Sort key, first goes first: partial ones past the max wait (or past ``wait``, the budget's target
        when shorter) oldest first, then full ones, then the most images (oldest first on a tie)."""
        limit = self.max_wait if wait is None else min(self.max_wait, wait)
        overdue = not batch.full and now - batch.oldest_at > limit
        return (not overdue, batch.oldest_at if overdue else 0.0, not batch.full, -batch.items, batch.oldest_at)

    def ranking(self, now: float, wait: float | None = None) -> Callable[[WaitingBatch], Rank]:
        return lambda batch: self.rank(now, batch, wait)

    def why_sent(self, now: float, batch: WaitingBatch) -> Why:
        if batch.full:
            return Why.FULL
        if now - batch.oldest_at > self.max_wait:
            return Why.OVERDUE
        return Why.MAX_WAIT if self.latency_paced else Why.PACED

    def waste(self, batch: WaitingBatch) -> float:
        """The share of a call a batch leaves unused: what it costs the spare calls."""
        return 0.0 if batch.full else max(0.0, 1.0 - batch.items / self.max_items)

    def latency_lead(self, waiting: Sequence[WaitingBatch], qps: float) -> float:
        """How early a pack's partial batch goes so that the QPS slots of the batches ahead fit in its max wait."""
        return len(waiting) / qps

    def partial_due(self, now: float, batch: WaitingBatch, waiting: Sequence[WaitingBatch], qps: float) -> bool:
        """A partial batch old enough to go if the budget allows: past the linger (a pack: near its max wait)."""
        if batch.full:
            return False
        age = now - batch.oldest_at
        if age < self.linger:
            return False
        return not self.latency_paced or age >= self.max_wait - self.latency_lead(waiting, qps)
