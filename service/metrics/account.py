"""One account's series of the account-labelled metrics."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from service.budget import Decision, Why
from service.metrics.labels import API_CODES, HELD_UNTIL_RESET, bounded
from service.vocabulary import FlushReason

if TYPE_CHECKING:
    from service.metrics.service import Metrics

__all__ = ["AccountMetrics"]


class AccountMetrics:
    """One account's series of the account-labelled metrics; also the API client's ``CallObserver``."""

    def __init__(self, metrics: Metrics, account: str) -> None:
        self.name = account
        m = metrics
        for code in API_CODES:
            m.api_calls.labels(account, code)
            m.retries.labels(account, code)
        for flush in FlushReason:
            m.batch_flushes.labels(account, flush)
        for why in Why:
            m.budget_decisions.labels(account, why)
        self._calls = {code: m.api_calls.labels(account, code) for code in API_CODES}
        self._retries = {code: m.retries.labels(account, code) for code in API_CODES}
        self._duration = m.api_call_duration.labels(account)
        self._items = m.batch_items.labels(account)
        self._flushes = m.batch_flushes
        self._limiter_waits = m.rate_limiter_waits.labels(account)
        self._limiter_wait_seconds = m.rate_limiter_wait_seconds.labels(account)
        self.rate_limit_qps = m.rate_limit_qps.labels(account)
        self.quota_remaining = m.quota_remaining.labels(account)
        self.quota_remaining.set(math.nan)  # unknown until the API first answers
        self.quota_charged = m.quota_charged.labels(account)
        self.quota_exhausted = m.quota_exhausted.labels(account)
        self.quota_payment_required = m.quota_payment_required.labels(account)
        self.account_halted = m.account_halted.labels(account)
        self.account_halted.set(0)
        self.qps_share = m.qps_share.labels(account)
        self.qps_demand_calls = m.qps_demand_calls.labels(account)
        self.qps_share_members = m.qps_share_members.labels(account)
        self.budget_calls_left = m.budget_calls_left.labels(account)
        self.budget_spendable = m.budget_spendable.labels(account)
        self.budget_reserve = m.budget_reserve.labels(account)
        self.budget_needed = m.budget_needed.labels(account)
        self.budget_partial_calls_per_hour = m.budget_partial_calls_per_hour.labels(account)
        self.budget_projected_wait = m.budget_projected_wait.labels(account)
        self.budget_limited = m.budget_limited.labels(account)
        self._decisions = m.budget_decisions
        self._waiting_for_reset = {why: m.budget_waiting_for_reset.labels(account, why) for why in HELD_UNTIL_RESET}
        for gauge in self._waiting_for_reset.values():
            gauge.set(0)

    # The API client's observer interface (service.api.client.CallObserver).
    def call_finished(self, code: str, seconds: float, items: int) -> None:
        self._calls[bounded(code, API_CODES)].inc()
        self._duration.observe(seconds)
        self._items.observe(items)

    def retry_scheduled(self, code: str, delay: float) -> None:
        self._retries[bounded(code, API_CODES)].inc()

    def rate_limiter_waited(self, seconds: float) -> None:
        self._limiter_waits.inc()
        self._limiter_wait_seconds.inc(seconds)

    def batch_flushed(self, reason: str) -> None:
        self._flushes.labels(self.name, reason).inc()

    def budget_decided(self, decision: Decision) -> None:
        budget = decision.budget
        self.budget_calls_left.set(budget.calls_left)
        self.budget_spendable.set(budget.spendable)
        self.budget_reserve.set(budget.reserve)
        self.budget_needed.set(budget.needed)
        self.budget_partial_calls_per_hour.set(budget.partial_calls_per_hour)
        self.budget_projected_wait.set(decision.projected_wait_seconds)
        self.budget_limited.set(1 if decision.budget_limited else 0)
        for why, gauge in self._waiting_for_reset.items():
            gauge.set(1 if decision.why == why else 0)
        if decision.send is not None:
            self._decisions.labels(self.name, decision.why).inc()
