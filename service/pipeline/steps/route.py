"""Route: delist events -> the account their collection belongs to; a collection of no account -> a failed outcome.

Each account (``service.settings.Account``) has a lane of its own: a batch step and a call step with the
account's rate limiter, quota gate and call budget, so one account's quota wait, budget or QPS never holds
another's calls. An event whose collection no account holds fails at once, every image with reason
``no_account`` (its outcome says so and a dead-letter copy waits for a replay), and costs no call.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass

from service.api.models import DeleteItem, ItemResult, ItemStatus
from service.api.quota import QuotaGate
from service.api.rate_limit import RateLimiter
from service.metrics import Metrics
from service.pipeline.partitions import Partitions
from service.pipeline.pending import PendingEvent
from service.pipeline.steps.abstract import Step
from service.pipeline.steps.batch import BatchStep
from service.pipeline.steps.call import CallStep
from service.settings import EVERY_OTHER_COLLECTION
from service.vocabulary import DeadLetterReason

__all__ = ["Lane", "RouteStep", "Routes"]


class Routes:
    """Which account holds a collection: the one that names it, else the one with ``"*"``, else none."""

    def __init__(self, accounts: Iterable[tuple[str, Collection[str]]]) -> None:
        self._named: dict[str, str] = {}
        self._rest: str | None = None
        for account, collections in accounts:
            for collection in collections:
                if collection == EVERY_OTHER_COLLECTION:
                    self._rest = account
                else:
                    self._named[collection] = account

    def account_of(self, collection: str) -> str | None:
        return self._named.get(collection, self._rest)


@dataclass(frozen=True, slots=True)
class Lane:
    """One account's part of the flow: its batches, its calls and what paces them."""

    account: str
    batch: BatchStep
    call: CallStep
    quota: QuotaGate
    limiter: RateLimiter

    def exhausted(self) -> bool:
        return self.quota.state().exhausted

    def demand(self, max_items: int) -> int:
        """Calls this account could make now: its waiting images in full calls and its calls under way."""
        return math.ceil(self.batch.pending_items() / max_items) + self.call.inflight()


class RouteStep:
    """Hands each delist to its account's lane, and answers for all the lanes what the loop, the hold step, a
    rebalance and the drain ask (what waits, what is under way, what may go when)."""

    def __init__(
        self,
        *,
        lanes: Sequence[Lane],
        routes: Routes,
        partitions: Partitions,
        finished: Step[PendingEvent],
        wake: threading.Event,
        metrics: Metrics,
    ) -> None:
        self.lanes = tuple(lanes)
        self._by_account = {lane.account: lane for lane in lanes}
        self._routes = routes
        self._partitions = partitions
        self._finished = finished
        self._wake = wake
        self._metrics = metrics

    def accounts_of(self, collections: Iterable[str]) -> set[str]:
        """The accounts that hold these collections (a collection of no account adds none)."""
        return {account for collection in collections if (account := self._routes.account_of(collection))}

    def _lane(self, collection: str) -> Lane | None:
        account = self._routes.account_of(collection)
        return None if account is None else self._by_account[account]

    def submit(self, pending: PendingEvent) -> None:
        lane = self._lane(pending.event.collection_name)
        if lane is not None:
            lane.batch.submit(pending)
            return
        for item in pending.items():
            pending.decide(ItemResult(item, ItemStatus.FAILED, DeadLetterReason.NO_ACCOUNT))
        self._metrics.image_decided(ItemStatus.FAILED, DeadLetterReason.NO_ACCOUNT, len(pending.event.image_ids))
        if self._partitions.finish(pending):
            self._finished.submit(pending)

    def poll(self) -> None:
        """Every account's batches that may go to its calls, then every finished call's results. Never blocks."""
        for lane in self.lanes:
            lane.batch.poll()
        for lane in self.lanes:
            lane.call.poll()

    def join(self, deadline: float) -> None:
        for lane in self.lanes:
            lane.call.join(deadline)

    # ---- what the hold step asks: the images of a product not yet deleted ----------------------------------

    def pending_of(self, collection: str, product_id: str) -> list[PendingEvent]:
        """Events with images of this product waiting in a batch or in a call under way."""
        lane = self._lane(collection)
        if lane is None:
            return []
        return [*lane.batch.waiting_for(collection, product_id), *lane.call.calling_for(collection, product_id)]

    def withdraw(self, pending: PendingEvent) -> list[DeleteItem]:
        """The event's images leave the open batches (a relist); returns them. Images in a call stay there."""
        lane = self._lane(pending.event.collection_name)
        return [] if lane is None else lane.batch.withdraw(pending)

    # ---- what a rebalance and the drain ask -----------------------------------------------------------------

    def forget(self, gone: Callable[[PendingEvent], bool]) -> None:
        for lane in self.lanes:
            lane.batch.forget(gone)

    def drain(self) -> None:
        for lane in self.lanes:
            lane.batch.drain()

    def carries(self, partitions: Collection[int]) -> bool:
        return any(lane.call.carries(partitions) for lane in self.lanes)

    def events_in_calls(self) -> set[PendingEvent]:
        return set().union(*(lane.call.events_in_calls() for lane in self.lanes))

    def wait(self, seconds: float) -> None:
        """Blocks up to ``seconds`` for a call of any account to finish (a call's completion is queued before
        the wake is set, so none is missed), and hands on what finished."""
        if not any(lane.call.finished_waiting() for lane in self.lanes):
            self._wake.wait(seconds)
            self._wake.clear()
        for lane in self.lanes:
            lane.call.poll()

    # ---- what the poll loop asks ----------------------------------------------------------------------------

    def busy(self) -> bool:
        return any(lane.call.busy() for lane in self.lanes)

    def inflight(self) -> int:
        return sum(lane.call.inflight() for lane in self.lanes)

    def pending_items(self) -> int:
        return sum(lane.batch.pending_items() for lane in self.lanes)

    def all_exhausted(self) -> bool:
        """Whether no account can call now (each waits for its quota): only then is the input paused for it."""
        return all(lane.exhausted() for lane in self.lanes)

    def stuck_on_quota(self) -> bool:
        """Whether every account with images waiting or calls under way waits for its quota (a drain then has
        nothing more to wait for)."""
        busy = [lane for lane in self.lanes if lane.batch.pending_items() or lane.call.inflight()]
        return bool(busy) and all(lane.exhausted() for lane in busy)

    def seconds_until_due(self, now: float) -> float | None:
        """How long until some account's batch may go (and its rate limiter lets it), if nothing arrives. An
        account whose calls cannot start (its quota, a fatal error) is not waited for: the loop's own pace
        notices when it opens."""
        waits = []
        for lane in self.lanes:
            if lane.call.blocked():
                continue
            due = lane.batch.seconds_until_due(now)
            if due is not None:
                waits.append(max(due, lane.limiter.seconds_until_free()))
        return min(waits) if waits else None
