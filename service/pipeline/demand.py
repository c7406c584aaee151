"""What this replica could send now, by account: the demand it announces for the QPS share (``share.py``)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Final

from service.pipeline.lane import AccountLane
from service.pipeline.steps.hold import HoldStep
from service.pipeline.steps.route import RouteStep

__all__ = ["HELD_ACCOUNTS_SECONDS", "ReplicaDemand"]

HELD_ACCOUNTS_SECONDS: Final = 0.5


class ReplicaDemand:
    def __init__(self, *, lanes: Sequence[AccountLane], hold: HoldStep, route: RouteStep, max_items: int) -> None:
        self._lanes = lanes
        self._hold = hold
        self._route = route
        self._max_items = max_items
        self._held_accounts_seen: set[str] = set()
        self._held_accounts_until = 0.0

    def now(self, *, stopped: bool) -> dict[str, int]:
        """Calls this replica could make now, by account: its waiting images in full calls and its calls under
        way; an account with neither asks for one while delists of its collections are held (the relist grace),
        as they will want a call soon. None while no call of the account can start (``stopped``: shutting down or
        halted; an account's quota spent, or the account paused)."""
        lanes = self._lanes
        demand = {lane.account: 0 if stopped or lane.exhausted() else lane.demand(self._max_items) for lane in lanes}
        idle = {
            lane.account
            for lane in lanes
            if not demand[lane.account] and not stopped and not lane.exhausted() and not lane.paused()
        }
        if idle and self._hold.held():
            for account in self._held_accounts() & idle:
                demand[account] = 1
        return demand

    def _held_accounts(self) -> set[str]:
        """The accounts of the delists held, looked up at most twice a second (demand is announced once a
        second; a busy partition's grace may hold thousands of delists)."""
        now = time.monotonic()
        if now >= self._held_accounts_until:
            self._held_accounts_seen = self._route.accounts_of(self._hold.collections())
            self._held_accounts_until = now + HELD_ACCOUNTS_SECONDS
        return self._held_accounts_seen
