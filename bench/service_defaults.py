"""The service settings a figure depends on, read from the service's code so the report never restates a stale
default: the pending-event bound, the linger, and the rate limiter's margin and back-off."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from service.api.rate_limit import RateLimiter
from service.settings import BatchSettings, KafkaSettings

__all__ = ["ServiceDefaults"]


def _limiter_default(name: str, fallback: float) -> float:
    parameter = inspect.signature(RateLimiter.__init__).parameters.get(name)
    if parameter is None or not isinstance(parameter.default, int | float):
        return fallback
    return float(parameter.default)


@dataclass(frozen=True)
class ServiceDefaults:
    max_pending_events: int
    linger_seconds: float
    limiter_margin: float
    """Calls leave (1 + margin) / QPS apart."""
    limiter_decrease: float
    """The pace is multiplied by this on a 10043."""
    limiter_increase_fraction: float
    """...and raised by this fraction of the ceiling per successful call."""

    @classmethod
    def read(cls) -> ServiceDefaults:
        return cls(
            max_pending_events=KafkaSettings().max_pending_events,
            linger_seconds=BatchSettings().linger_seconds,
            limiter_margin=_limiter_default("margin", 0.0),
            limiter_decrease=_limiter_default("decrease_factor", 0.5),
            limiter_increase_fraction=_limiter_default("increase_fraction", 0.0),
        )
