"""Batch: delist events -> one open batch per collection -> the call step, when the budget and a call allow.

A batch stays in the batcher, still growing, until the call step can start it (a worker and a rate-limiter
slot are free) and the account's call budget (``service.budget.CallPlanner``) chooses it: full batches go as
the QPS allows, partial ones when the budget has a call for them, the longest-waiting past the max wait
first. Waiting batches fill up instead of queueing half empty in a worker, and a crash leaves no taken batch
to redo. Draining (shutdown) bypasses the plan: what is left goes as it is, within the day's spending limit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from service.api.models import DeleteItem
from service.budget import Decision, QuotaView, WaitingBatch, Why
from service.metrics import AccountMetrics
from service.pipeline.batcher import Batcher, ReadyBatch
from service.pipeline.pending import PendingEvent
from service.pipeline.steps.abstract import MessageRejected, Step

__all__ = ["BatchStep", "CallBudget", "CallStarter"]

log = logging.getLogger(__name__)

_UNTIL_RESET = frozenset((Why.RESERVE_ONLY, Why.SPEND_LIMIT))


class CallBudget(Protocol):
    """The account's call budget as the batch step drives it (``CallPlanner``, or ``SharedPlanner`` counting
    every replica's calls): what to send, and whether one more call may start at all (a drain too)."""

    def plan(self, now: float, waiting: Sequence[WaitingBatch], quota: QuotaView) -> Decision: ...
    def sent(self, now: float, batch: WaitingBatch) -> None: ...
    def spent(self, now: float, calls: int) -> None: ...
    def learned(self, now: float, remain_times: int, calls_in_flight: int = 0) -> None: ...
    def observe_arrivals(self, now: float, images: int) -> None: ...
    def may_start(self) -> bool: ...


class CallStarter(Step[ReadyBatch[PendingEvent]], Protocol):
    """What the batch step hands to (``GateStep``, then ``CallStep``): it also says whether a call could start now,
    and whether calls of a collection are held (paused, braked): those batches stay and keep growing."""

    def accepting(self) -> bool: ...
    def holds(self, collection: str) -> bool: ...


class BatchStep:
    def __init__(
        self,
        *,
        calls: CallStarter,
        batcher: Batcher[PendingEvent],
        planner: CallBudget | None,
        quota: Callable[[], QuotaView],
        metrics: AccountMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._batcher = batcher
        self._calls = calls
        self._planner = planner
        self._quota = quota
        self._decision: Decision | None = None
        self._decided_at = -1.0
        self._metrics = metrics
        self._clock = clock
        self._draining = False

    def submit(self, pending: PendingEvent) -> None:
        now = self._clock()
        collection = pending.event.collection_name
        items = pending.items()
        for item in items:
            self._batcher.add(collection, item, pending, now)
        if self._planner is not None:
            self._planner.observe_arrivals(now, len(items))

    def retry(self, collection: str, item: DeleteItem, waiters: list[PendingEvent], attempt: int) -> None:
        """An item another call may fix: it joins the collection's open batch again."""
        now = self._clock()
        for waiter in waiters:
            if not waiter.abandoned:
                self._batcher.add(collection, item, waiter, now, attempt)

    def poll(self) -> None:
        """Hands the batches the budget chooses to the call step while it can start calls (the rest keep growing);
        then polls the call step."""
        self._hand_out()
        self._calls.poll()

    def _hand_out(self) -> None:
        if self._planner is None:
            self._poll_by_linger()
            return
        now = self._clock()
        while self._calls.accepting():
            now = self._clock()
            chosen = self._choose(now)
            if chosen is None:
                break
            ready = self._batcher.take_sequence(chosen.key)
            if ready is None:  # pragma: no cover - chosen from this turn's waiting list
                break
            try:
                self._calls.submit(ready)
            except MessageRejected:
                self._batcher.put_back(ready)
                if self._calls.holds(ready.batch.collection):
                    continue  # its brake tripped: the other collections' batches may still go
                break
            self._planner.sent(now, chosen)
            self._metrics.batch_flushed(ready.flush_reason)
        if now - self._decided_at >= 1.0:  # the budget's gauges stay current, whatever waits
            self._decided(self._planner.plan(now, self._waiting(), self._quota()), now)

    def _poll_by_linger(self) -> None:
        """Without a budget: every batch full or past its linger goes, oldest first, while calls can start."""
        while self._calls.accepting():
            ready = self._batcher.take(self._clock(), drain=self._draining, skip=self._calls.holds)
            if ready is None:
                return
            try:
                self._calls.submit(ready)
            except MessageRejected:
                self._batcher.put_back(ready)
                if self._calls.holds(ready.batch.collection):
                    continue  # its brake tripped: the other collections' batches may still go
                return
            self._metrics.batch_flushed(ready.flush_reason)

    def _waiting(self) -> list[WaitingBatch]:
        """The batches that may go: not those of a held collection."""
        holds = self._calls.holds
        return [WaitingBatch(*batch) for batch in self._batcher.waiting() if not holds(batch[1])]

    def _choose(self, now: float) -> WaitingBatch | None:
        waiting = self._waiting()
        if self._draining or not waiting or self._planner is None:  # a drain passes the plan, never the day's cap
            return waiting[0] if waiting and (self._planner is None or self._planner.may_start()) else None
        decision = self._planner.plan(now, waiting, self._quota())
        self._decided(decision, now)
        return decision.send

    def _decided(self, decision: Decision, now: float) -> None:
        """Gauges from every decision; one log line when the budget starts or stops holding calls until the reset."""
        holding = decision.why in _UNTIL_RESET
        was_holding = self._decision is not None and self._decision.why in _UNTIL_RESET
        if holding and not was_holding:
            log.warning(
                "calls of account %s wait for the quota reset: %s",
                self._metrics.name,
                "only the reserve is left" if decision.why is Why.RESERVE_ONLY else "today's spending limit is reached",
                extra={"reason": str(decision.why), "count": int(decision.budget.calls_left)},
            )
        elif was_holding and not holding and decision.why is not Why.NOTHING_WAITING:
            log.info(
                "the budget of account %s spends calls again", self._metrics.name, extra={"reason": str(decision.why)}
            )
        self._decision, self._decided_at = decision, now
        self._metrics.budget_decided(decision)

    def learned(self, remain_times: int, calls_in_flight: int) -> None:
        """An answer said how many calls the account has left."""
        if self._planner is not None:
            self._planner.learned(self._clock(), remain_times, calls_in_flight)

    def spent(self, calls: int) -> None:
        """Calls beyond a batch's first (its retries)."""
        if self._planner is not None:
            self._planner.spent(self._clock(), calls)

    def pending_items(self) -> int:
        """Images waiting in the open batches."""
        return self._batcher.pending_items()

    def sendable_items(self) -> int:
        """Images waiting in the open batches of collections whose calls are not held."""
        holds = self._calls.holds
        return sum(items for _, collection, items, _, _ in self._batcher.waiting() if not holds(collection))

    def waiting_for(self, collection: str, product_id: str) -> list[PendingEvent]:
        """Events with images of this product in an open batch."""
        return self._batcher.waiters_of(collection, product_id)

    def withdraw(self, pending: PendingEvent) -> list[DeleteItem]:
        """The event's images leave the open batches (a relist); returns them. Images in a call stay there."""
        return self._batcher.withdraw(pending)

    def close(self) -> None:
        """From now on every batch is due (shutdown): what is left is sent as it is."""
        self._draining = True
        self._calls.close()

    def terminate(self) -> None:
        self._batcher.discard_waiters(lambda _pending: True)
        self._calls.terminate()

    def forget(self, gone: Callable[[PendingEvent], bool]) -> None:
        """Unsent images of events that are ``gone`` (abandoned, revoked) leave their batches."""
        self._batcher.discard_waiters(gone)

    def seconds_until_due(self, now: float) -> float | None:
        """How long until a batch may go, if nothing arrives meanwhile; None if nothing waits."""
        if not self._batcher.pending_items():
            return None
        if self._draining:
            return 0.0
        if self._decision is None or self._decision.next_check_seconds is None:
            return self._batcher.seconds_until_due(now, skip=self._calls.holds)
        return max(0.0, self._decided_at + self._decision.next_check_seconds - now)

    def join(self, deadline: float) -> None:
        """Nothing runs here (batches leave through poll): the calls under way are waited for."""
        self._calls.join(deadline)
