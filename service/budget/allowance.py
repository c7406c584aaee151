"""What an account may spend: the kind of allowance, the reserve kept for the shop, the day's cap.

Pure data. The planner asks it two questions: how many calls are never to be spent (the reserve) and how many
calls imgsweep may make in one budget day at most (a pack's daily spending limit, in calls).

Built from an account's validated settings (``service.settings.ApiSettings`` holds the rules: daily_calls -1 or
positive, a reserve fraction in [0, 1), a price and a spending limit together and for a pack only), so it
checks nothing again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Allowance", "AllowanceKind"]


class AllowanceKind(StrEnum):
    DAILY = "daily"
    """A free plan's daily calls: lost at the reset if unspent, so an unspent call is a wasted one."""
    PACK = "pack"
    """A paid call pack: lasts a year, every call is money, so as few calls as the latency target allows."""


@dataclass(frozen=True, slots=True)
class Allowance:
    kind: AllowanceKind
    daily_calls: int
    """Calls assumed left before the API first answers (``remainTimes`` replaces it): the plan's daily
    allowance, or for a pack what may be spent before the first answer says what is left."""
    reserve_calls: int = 0
    """Calls never spent, left to the shop's own searches."""
    reserve_fraction: float = 0.0
    """The same as a fraction of ``daily_calls`` (of the daily spending limit, for a pack that has one); the
    reserve is the larger of the two."""
    price_per_call: float | None = None
    """A pack's money per call; with ``daily_spend_limit`` it caps the calls of one budget day."""
    daily_spend_limit: float | None = None
    """A pack's most money spent in one budget day (same currency as ``price_per_call``)."""

    def day_cap(self) -> float:
        """The most calls imgsweep makes in one budget day (infinite without a spending limit)."""
        if self.daily_spend_limit is None or self.price_per_call is None:
            return math.inf
        # a price like 0.1 is not exact in binary: 1.0 / 0.1 must still be 10 calls, not 9
        return float(math.floor(self.daily_spend_limit / self.price_per_call + 1e-9))

    def reserve(self) -> int:
        """Calls never spent: the larger of the fixed reserve and the fraction of the day's allowance."""
        base = self.day_cap() if self.kind is AllowanceKind.PACK else float(self.daily_calls)
        if base < 0:  # no daily limit: only the fixed reserve
            return self.reserve_calls
        by_fraction = math.ceil(self.reserve_fraction * base) if math.isfinite(base) else 0
        return max(self.reserve_calls, by_fraction)
