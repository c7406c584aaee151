"""The replica's fatal state: once Kafka says something no retry can fix, calling stops and nothing more is committed.

A fatal API answer is not this: it halts its account alone, re-checked by probes (``service.api.fatal_gate``).
"""

from __future__ import annotations

import logging

from service.health import HealthState
from service.metrics import Metrics

__all__ = ["Halt"]

log = logging.getLogger(__name__)


class Halt:
    """Tripped once (by the consumer or the producer); the loop then pauses everything, or, for a
    producer that can do nothing more (fenced, fatal in a transaction), ends the process (``exit``) so that
    Kubernetes starts a fresh one."""

    def __init__(self, health: HealthState, metrics: Metrics) -> None:
        self._health = health
        self._metrics = metrics
        self.reason: str | None = None
        self.exit = False

    def trip(self, reason: str, *, exit: bool = False) -> None:
        self.exit = self.exit or exit
        if self.reason is not None:
            return
        self.reason = reason
        self._health.fatal_reason = reason
        self._metrics.fatal.set(1)
        if exit:
            log.critical("FATAL: %s. Nothing more is committed; exiting so that a fresh process takes over.", reason)
            return
        log.critical(
            "FATAL: %s. Calling stopped, consumption paused, nothing more is committed; "
            "fix the configuration and restart.",
            reason,
        )
