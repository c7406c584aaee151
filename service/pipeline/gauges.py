"""The pipeline's gauges, set once per turn of the poll loop from what the steps and the lanes say."""

from __future__ import annotations

from collections.abc import Sequence

from service.health import HealthState
from service.metrics import Metrics
from service.pipeline.lane import AccountLane

__all__ = ["Gauges"]


class Gauges:
    def __init__(self, *, metrics: Metrics, health: HealthState, lanes: Sequence[AccountLane]) -> None:
        self._metrics = metrics
        self._health = health
        self._lanes = lanes

    def update(self, *, inflight: int, pending: int, paused: int, remembered: int) -> None:
        metrics = self._metrics
        for lane in self._lanes:
            lane.update_gauges()
        self._health.halted_accounts = {
            lane.account: reason for lane in self._lanes if (reason := lane.halted_reason()) is not None
        }
        if self._lanes:  # one reset time for every account
            metrics.quota_reset_seconds.set(self._lanes[-1].quota.seconds_until_daily_reset())
        metrics.ready.set(1 if self._health.ready else 0)
        metrics.brokers_up.set(1 if self._health.brokers_up else 0)
        metrics.inflight_batches.set(inflight)
        metrics.pending_events.set(pending)
        metrics.paused_partitions.set(paused)
        metrics.state_remembered_products.set(remembered)
