"""Route: delist events -> the lane of the account their collection belongs to; a collection of no account -> a
failed outcome.

Each account (``service.settings.Account``) has a lane of its own (``service.pipeline.lane.AccountLane``): a
batch step and a call step with the account's rate limiter, quota gate and call budget, so one account's quota
wait, budget or QPS never holds another's calls. An event whose collection no account holds fails at once,
every image with reason ``no_account`` (its outcome says so and a dead-letter copy waits for a replay), and
costs no call. What the lanes decide goes to the ledger; the route step's next step is publishing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterable, Sequence

from service.api.models import DeleteItem, ItemResult, ItemStatus
from service.metrics import Metrics
from service.pipeline.lane import AccountLane
from service.pipeline.ledger import Due, Ledger
from service.pipeline.pending import PendingEvent
from service.pipeline.steps.abstract import Step
from service.settings import EVERY_OTHER_COLLECTION
from service.vocabulary import DeadLetterReason

__all__ = ["RouteStep", "Routes"]


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


class RouteStep:
    """Hands each delist to its account's lane; polls the lanes, then the step that publishes what they finish."""

    def __init__(
        self, *, lanes: Sequence[AccountLane], next_step: Step[Due], ledger: Ledger,
        wake: threading.Event, metrics: Metrics,
    ) -> None:  # fmt: skip
        self.lanes = tuple(lanes)
        self._routes = Routes((lane.account, lane.collections) for lane in lanes)
        self._by_account = {lane.account: lane for lane in lanes}
        self._next = next_step
        self._ledger = ledger
        self._wake = wake
        self._metrics = metrics

    def accounts_of(self, collections: Iterable[str]) -> set[str]:
        return {account for collection in collections if (account := self._routes.account_of(collection))}

    def _lane(self, collection: str) -> AccountLane | None:
        account = self._routes.account_of(collection)
        return None if account is None else self._by_account[account]

    def submit(self, pending: PendingEvent) -> None:
        lane = self._lane(pending.event.collection_name)
        if lane is not None:
            lane.submit(pending)
            return
        self._metrics.image_decided(ItemStatus.FAILED, DeadLetterReason.NO_ACCOUNT, len(pending.event.image_ids))
        failed = (ItemResult(item, ItemStatus.FAILED, DeadLetterReason.NO_ACCOUNT) for item in pending.items())
        self._ledger.decide(pending, failed)

    def poll(self) -> None:
        """Every account's lane (batches that may go to its calls, finished calls' results), then publishing.
        Never blocks."""
        for lane in self.lanes:
            lane.poll()
        self._next.poll()

    def close(self) -> None:
        """A drain: every lane sends what is left as it is."""
        for lane in self.lanes:
            lane.forget(lambda pending: pending.abandoned)
            lane.close()
        self._next.close()

    def join(self, deadline: float) -> None:
        for lane in self.lanes:
            lane.join(deadline)
        self._next.join(deadline)

    def terminate(self) -> None:
        for lane in self.lanes:
            lane.terminate()
        self._next.terminate()

    # ---- what the hold step asks: the images of a product not yet deleted ----------------------------------

    def pending_of(self, collection: str, product_id: str) -> list[PendingEvent]:
        """Events with images of this product waiting in a batch or in a call under way."""
        lane = self._lane(collection)
        return [] if lane is None else lane.pending_of(collection, product_id)

    def withdraw(self, pending: PendingEvent) -> list[DeleteItem]:
        """The event's images leave the open batches (a relist); returns them. Images in a call stay there."""
        lane = self._lane(pending.event.collection_name)
        return [] if lane is None else lane.withdraw(pending)

    # ---- what a revoke asks ---------------------------------------------------------------------------------

    def forget(self, gone: Callable[[PendingEvent], bool]) -> None:
        for lane in self.lanes:
            lane.forget(gone)

    def carries(self, partitions: Collection[int]) -> bool:
        return any(lane.carries(partitions) for lane in self.lanes)

    def events_in_calls(self) -> set[PendingEvent]:
        return set().union(*(lane.events_in_calls() for lane in self.lanes))

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
        return any(lane.busy() for lane in self.lanes)

    def inflight(self) -> int:
        return sum(lane.inflight() for lane in self.lanes)

    def pending_items(self) -> int:
        return sum(lane.pending_items() for lane in self.lanes)

    def all_exhausted(self) -> bool:
        """Whether no account can call now (each waits for its quota): only then is the input paused for it."""
        return all(lane.exhausted() for lane in self.lanes)

    def waiting(self, account: int | None) -> bool:
        """Whether account number ``account`` (its place in the settings, which owns its own partitions behind the
        router, decision 0022) waits for a long while: quota spent, halted, or paused. None: whether every account's
        quota is spent or halted (one set of partitions for all)."""
        if account is None:
            return self.all_exhausted()
        lane = self.lanes[account]
        return lane.exhausted() or lane.paused()

    def stuck_on_quota(self) -> bool:
        """Whether every account with images waiting or calls under way waits for its quota (a drain then has
        nothing more to wait for)."""
        busy = [lane for lane in self.lanes if lane.pending_items() or lane.inflight()]
        return bool(busy) and all(lane.exhausted() for lane in busy)

    def seconds_until_due(self, now: float) -> float | None:
        """How long until some account's batch may go (and its rate limiter lets it), if nothing arrives."""
        waits = [due for lane in self.lanes if (due := lane.seconds_until_due(now)) is not None]
        return min(waits) if waits else None
