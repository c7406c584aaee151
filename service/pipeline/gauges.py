"""The pipeline's gauges, set once per turn of the poll loop from what the steps and the quota gate say."""

from __future__ import annotations

import math

from service.api.quota import QuotaGate
from service.api.rate_limit import RateLimiter
from service.health import HealthState
from service.metrics import Metrics

__all__ = ["Gauges"]


class Gauges:
    def __init__(self, *, metrics: Metrics, quota: QuotaGate, limiter: RateLimiter, health: HealthState) -> None:
        self._metrics = metrics
        self._quota = quota
        self._limiter = limiter
        self._health = health
        self._charged_reported = 0

    def update(self, *, inflight: int, pending: int, paused: int) -> None:
        metrics = self._metrics
        state = self._quota.state()
        metrics.quota_exhausted.set(1 if state.exhausted else 0)
        metrics.quota_payment_required.set(1 if state.payment_required else 0)
        metrics.quota_reset_seconds.set(state.seconds_until_reset)
        metrics.quota_remaining.set(math.nan if state.remaining is None else state.remaining)
        if state.charged_calls > self._charged_reported:
            metrics.quota_charged.inc(state.charged_calls - self._charged_reported)
            self._charged_reported = state.charged_calls
        metrics.ready.set(1 if self._health.ready else 0)
        metrics.brokers_up.set(1 if self._health.brokers_up else 0)
        metrics.inflight_batches.set(inflight)
        metrics.pending_events.set(pending)
        metrics.paused_partitions.set(paused)
        metrics.rate_limit_qps.set(self._limiter.rate)
