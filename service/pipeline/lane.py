"""An account's lane: everything one JD account's deletions go through, built from one ``Account``.

A lane owns the account's client (how a batch is deleted), rate limiter, quota gate, batcher and call budget
(its batch step), call step, metric series and its slot in the QPS share, so one account's quota wait, budget
or QPS never holds another's calls, and whatever is per account is found here. The route step hands each delist
to its collection's lane; the lane's batch step hands batches to its call step, whose results go to the ledger.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from service.api.models import DeleteItem
from service.budget import Allowance, AllowanceKind, CallPlanner, QuotaView
from service.budget.shared import SharedPlanner, SharedSpend
from service.metrics import AccountMetrics, Metrics
from service.pipeline.batcher import Batcher
from service.pipeline.ledger import Ledger
from service.pipeline.pending import PendingEvent
from service.pipeline.share import Paced
from service.pipeline.steps.batch import BatchStep
from service.pipeline.steps.call import AccountCalls, CallStep, Workers
from service.pipeline.steps.gate import NO_CONTROLS, Controls, GateStep
from service.settings import ApiSettings, BatchSettings

__all__ = ["AccountCalls", "AccountLane", "LaneShared", "call_planner"]


@dataclass(frozen=True, slots=True)
class LaneShared:
    """What every lane is built with: the batch settings, the worker threads, the ledger, the metrics, the
    batches' clock, this replica's fraction of the input's partitions and the pauses and brakes it obeys."""

    batch: BatchSettings
    workers: Workers
    ledger: Ledger
    metrics: Metrics
    share_fraction: Callable[[], float]
    clock: Callable[[], float] = time.monotonic
    controls: Controls = NO_CONTROLS


def call_planner(api: ApiSettings, batch: BatchSettings, spend: SharedSpend | None = None) -> SharedPlanner | None:
    """The account's call budget, as configured; None without a daily limit (``DAILY_CALLS=-1``): the linger
    alone decides, as before the budget existed. ``spend``: the budget day every replica counts (the budget
    topic), restored into the planner now; None: this process counts alone."""
    if not api.budgeted:
        return None
    allowance = Allowance(
        AllowanceKind(api.allowance),
        api.daily_calls,
        api.reserve_calls,
        api.reserve_fraction,
        api.price_per_call,
        api.daily_spend_limit,
    )
    planner = CallPlanner(
        allowance,
        max_wait_seconds=batch.max_wait_seconds,
        linger_seconds=batch.linger_seconds,
        max_items=batch.max_items,
    )
    return SharedPlanner(planner, spend)


class AccountLane:
    def __init__(self, calls: AccountCalls, shared: LaneShared) -> None:
        account, batch = calls.account, shared.batch
        self.account = account.name
        self.collections = account.collections
        self.quota, self.limiter, self.fatal = calls.quota, calls.limiter, calls.fatal
        self.metrics: AccountMetrics = shared.metrics.account(account.name)
        self.paced = Paced(account.name, calls.limiter, account.api.qps, self.metrics)
        """This account's slot in the QPS share."""
        self.call = CallStep(
            calls=calls, workers=shared.workers, ledger=shared.ledger, metrics=shared.metrics,
        )  # fmt: skip
        calls.limiter.when_free(shared.workers.wake.set)
        quota, limiter = calls.quota, calls.limiter
        self._controls = shared.controls
        self.batch = BatchStep(
            calls=GateStep(account=account.name, controls=shared.controls, calls=self.call),
            batcher=Batcher(max_items=batch.max_items, max_bytes=batch.max_bytes, linger_seconds=batch.linger_seconds),
            planner=call_planner(account.api, batch, calls.spend),
            quota=lambda: QuotaView(
                quota.seconds_until_daily_reset(), limiter.rate, quota.state().exhausted, shared.share_fraction()
            ),
            metrics=self.metrics,
            clock=shared.clock,
        )
        self.call.feed_back_to(self.batch)
        self._charged_reported = 0

    # ---- the chain: the lane is its batch step, followed by its call step -------------------------------------

    def submit(self, pending: PendingEvent) -> None:
        self.batch.submit(pending)

    def poll(self) -> None:
        self.batch.poll()

    def close(self) -> None:
        self.batch.close()

    def join(self, deadline: float) -> None:
        self.batch.join(deadline)

    def terminate(self) -> None:
        self.batch.terminate()

    # ---- what the route step, a rebalance and the loop ask ----------------------------------------------------

    def exhausted(self) -> bool:
        """Whether the account can make no call for a long while: its quota is spent, or it is halted on a fatal
        answer (``FatalGate``)."""
        return self.quota.state().exhausted or self.fatal.halted

    def halted_reason(self) -> str | None:
        """Why the account is halted (its fatal answer's code and message), or None."""
        state = self.fatal.state()
        return None if state is None else state.reason()

    def blocked(self) -> bool:
        """Whether no call can start until something outside the flow changes (quota, fatal error, shutdown)."""
        return self.call.blocked()

    def demand(self, max_items: int) -> int:
        """Calls this account could make now: its waiting images not held (paused, braked) in full calls and its
        calls under way; none while the account is paused."""
        if self.paused():
            return 0
        return math.ceil(self.batch.sendable_items() / max_items) + self.call.inflight()

    def paused(self) -> bool:
        """Whether the whole account is paused (``imgsweep pause --account``)."""
        return self._controls.account_paused(self.account)

    def pending_items(self) -> int:
        return self.batch.pending_items()

    def inflight(self) -> int:
        return self.call.inflight()

    def busy(self) -> bool:
        return self.call.busy()

    def pending_of(self, collection: str, product_id: str) -> list[PendingEvent]:
        """Events with images of this product waiting in a batch or in a call under way."""
        return [*self.batch.waiting_for(collection, product_id), *self.call.calling_for(collection, product_id)]

    def withdraw(self, pending: PendingEvent) -> list[DeleteItem]:
        return self.batch.withdraw(pending)

    def forget(self, gone: Callable[[PendingEvent], bool]) -> None:
        self.batch.forget(gone)

    def carries(self, partitions: Collection[int]) -> bool:
        return self.call.carries(partitions)

    def events_in_calls(self) -> set[PendingEvent]:
        return self.call.events_in_calls()

    def seconds_until_due(self, now: float) -> float | None:
        """How long until a batch may go and the rate limiter lets it; None if nothing waits or no call can
        start (the loop's own pace notices when that changes)."""
        if self.call.blocked():
            return None
        due = self.batch.seconds_until_due(now)
        return None if due is None else max(due, self.limiter.seconds_until_free())

    def update_gauges(self) -> None:
        """The account's quota and rate gauges (once per turn of the loop)."""
        state, series = self.quota.state(), self.metrics
        series.quota_exhausted.set(1 if state.exhausted else 0)
        series.quota_payment_required.set(1 if state.payment_required else 0)
        series.quota_remaining.set(math.nan if state.remaining is None else state.remaining)
        if state.charged_calls > self._charged_reported:
            series.quota_charged.inc(state.charged_calls - self._charged_reported)
            self._charged_reported = state.charged_calls
        series.rate_limit_qps.set(self.limiter.rate)
        series.account_halted.set(1 if self.fatal.halted else 0)
