"""The pipeline's gauges, set once per turn of the poll loop from what the steps and the quota gates say."""

from __future__ import annotations

import math
from collections.abc import Sequence

from service.api.quota import QuotaGate
from service.api.rate_limit import RateLimiter
from service.health import HealthState
from service.metrics import AccountMetrics, Metrics

__all__ = ["Gauges"]


class Gauges:
    def __init__(
        self,
        *,
        metrics: Metrics,
        health: HealthState,
        accounts: Sequence[tuple[AccountMetrics, QuotaGate, RateLimiter]],
    ) -> None:
        """``accounts``: each account's series, quota gate and rate limiter."""
        self._metrics = metrics
        self._health = health
        self._accounts = accounts
        self._charged_reported = [0] * len(accounts)

    def update(self, *, inflight: int, pending: int, paused: int) -> None:
        metrics = self._metrics
        reset_in = 0.0
        for number, (series, quota, limiter) in enumerate(self._accounts):
            state = quota.state()
            reset_in = quota.seconds_until_daily_reset()
            series.quota_exhausted.set(1 if state.exhausted else 0)
            series.quota_payment_required.set(1 if state.payment_required else 0)
            series.quota_remaining.set(math.nan if state.remaining is None else state.remaining)
            if state.charged_calls > self._charged_reported[number]:
                series.quota_charged.inc(state.charged_calls - self._charged_reported[number])
                self._charged_reported[number] = state.charged_calls
            series.rate_limit_qps.set(limiter.rate)
        metrics.quota_reset_seconds.set(reset_in)  # one reset time for every account
        metrics.ready.set(1 if self._health.ready else 0)
        metrics.brokers_up.set(1 if self._health.brokers_up else 0)
        metrics.inflight_batches.set(inflight)
        metrics.pending_events.set(pending)
        metrics.paused_partitions.set(paused)
