"""When to try a failed call again, and how long to wait first: exponential backoff with full jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 8
    max_elapsed_seconds: float = 600.0
    initial_seconds: float = 0.5
    max_seconds: float = 30.0

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        Full jitter spreads replicas that failed together; a server's Retry-After is a floor, never cut.
        """
        cap = min(self.max_seconds, self.initial_seconds * 2 ** (attempt - 1))
        jittered = rng.uniform(0, cap)
        return max(jittered, retry_after) if retry_after is not None else jittered

    def allows(self, attempt: int, elapsed: float, delay: float) -> bool:
        """Whether another attempt fits both budgets after ``attempt`` tries and ``elapsed`` seconds."""
        return attempt < self.max_attempts and elapsed + delay <= self.max_elapsed_seconds
