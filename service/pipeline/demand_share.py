"""Sharing the account's QPS by what each replica has to send: pure, no Kafka, no clock, no threads.

Replicas announce their demand (calls they could make now) on the demand topic; each one reads every live
announcement and paces itself at its share (``demand_shares``). The API counts calls over a *sliding second*,
so a share is dealt in whole calls per second ("units"): a replica holding k units paces at no more than k
calls a second, so it never has more than k calls in any sliding second whatever its phase, and the units
held by all replicas add up to no more than the account's QPS. Splitting 2 QPS into four paces of 0.5 would not
hold: four unsynchronised replicas put 3 or 4 calls into one second a third of the time.

The edge (``service.pipeline.share.DemandShare``) feeds these with what it reads and applies what they answer.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

__all__ = [
    "FLOOR_FRACTION",
    "SHARED_HEADROOM",
    "Demand",
    "DemandTable",
    "RisingShare",
    "demand_shares",
    "floor_qps",
]

SHARED_HEADROOM: Final = 0.02
"""While two or more replicas hold units, each unit is paced this much slower. A replica spaces its own calls by
when they left; calls of different replicas reach the API through different connections and queues, and a
call of one delayed by more than the spacing's slack (17 ms at 1 call/s with the limiter's 1.5 % margin) puts
three calls into one second. 2 % more makes that slack 36 ms."""
FLOOR_FRACTION: Final = 0.002
"""A replica with no unit still keeps this fraction of the account's QPS (one call in 250 s at 2 QPS): a
positive pace, and a first call for a replica that had nothing to send for that long."""


@dataclass(frozen=True, slots=True)
class Demand:
    """One replica's announcement."""

    member: str
    calls: int
    """Calls it could make now: its waiting batches (full, due or still open) and its calls under way."""
    at: float
    """When it was heard, on the hearer's clock."""


def floor_qps(account_qps: float, members: int) -> float:
    """The floor of one member: small, and never more than half of an even split."""
    return min(account_qps * FLOOR_FRACTION, account_qps / (2 * max(1, members)))


def _order(members: Mapping[str, int], rotation: int) -> list[str]:
    """The same order on every replica for the same rotation number; a new order at each rotation, so that when
    fewer units than wanting replicas exist, others get them next time."""
    return sorted(members, key=lambda member: hashlib.sha256(f"{rotation}:{member}".encode()).digest())


def demand_shares(account_qps: float, demands: Mapping[str, int], *, rotation: int = 0) -> dict[str, float]:
    """Each member's pace (calls a second): its floor plus the units it holds.

    ``floor(account_qps)`` units (at least one) are dealt max-min fair over demand: one unit a round to every
    member that still wants more than it holds, in ``rotation``'s order, until none is left or nobody wants
    more; then what is left goes to members with demand, and to everyone when nobody has any (an idle group
    keeps its paces ready). A unit is worth ``(account_qps - floors) / units`` (``SHARED_HEADROOM`` less while
    two or more members hold units), so the paces add up to ``account_qps`` at most, a member alone gets all of
    it, and a member with nothing to send gets its floor alone as soon as any other member has work.
    """
    if not demands:
        return {}
    if len(demands) == 1:
        return {member: account_qps for member in demands}
    floor = floor_qps(account_qps, len(demands))
    units = max(1, math.floor(account_qps))
    unit = (account_qps - floor * len(demands)) / units
    order = _order(demands, rotation)
    held = dict.fromkeys(order, 0)
    left = units
    while left:
        wanting = [member for member in order if held[member] < demands[member]]
        if not wanting:
            break
        for member in wanting[:left]:
            held[member] += 1
        left -= min(left, len(wanting))
    if left:
        takers = [member for member in order if demands[member] > 0] or order
        for n in range(left):
            held[takers[n % len(takers)]] += 1
    if sum(1 for count in held.values() if count) > 1:
        unit *= 1 - SHARED_HEADROOM
    return {member: floor + held[member] * unit for member in demands}


class DemandTable:
    """The latest announcement of every member heard, and which of them are still live."""

    def __init__(self, expiry_seconds: float) -> None:
        self._expiry = expiry_seconds
        self._latest: dict[str, Demand] = {}

    def heard(self, demand: Demand) -> None:
        known = self._latest.get(demand.member)
        if known is None or demand.at >= known.at:
            self._latest[demand.member] = demand

    def gone(self, member: str) -> None:
        """A tombstone: the member shut down."""
        self._latest.pop(member, None)

    def live(self, now: float) -> dict[str, int]:
        """Members announced within the expiry (a dead replica's last word expires), with their demand."""
        for member in [m for m, d in self._latest.items() if now - d.at > self._expiry]:
            del self._latest[member]
        return {member: demand.calls for member, demand in self._latest.items()}


class RisingShare:
    """A pace that goes down at once and up only after the higher value has held for ``rise_seconds``: the
    lowest share computed over the last ``rise_seconds``.

    When a replica's share rises, another's fell: the one losing pace applies it as soon as it reads the new
    demand; the one gaining waits until that has surely happened and the sliding second of calls made at the
    old pace has passed. Starts at ``start``, as if it had been there for ever.
    """

    def __init__(self, start: float, rise_seconds: float) -> None:
        self._rise = rise_seconds
        self._shares: deque[tuple[float, float]] = deque([(-math.inf, start)])
        """(since when, share) of every share computed within the last rise_seconds, and the one before."""

    @property
    def applied(self) -> float:
        return min(share for _, share in self._shares)

    def update(self, share: float, now: float) -> float:
        """The pace to apply now, given the share computed now."""
        if share != self._shares[-1][1]:
            self._shares.append((now, share))
        while len(self._shares) > 1 and self._shares[1][0] <= now - self._rise:
            self._shares.popleft()
        return self.applied
