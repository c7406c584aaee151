"""``Metrics``: every collector on one registry, and the events that move them (its parts: ``budget.py``,
``delivery.py``, ``control.py``, ``reading.py``); ``AccountMetrics``: one account's series of them."""

from __future__ import annotations

import math
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, GCCollector, Histogram, Info, ProcessCollector

from service import __version__
from service.budget import Decision, Why
from service.metrics.budget import BudgetMetrics
from service.metrics.control import ControlMetrics
from service.metrics.delivery import DeliveryMetrics
from service.metrics.labels import (
    API_CODES,
    HELD_UNTIL_RESET,
    IMAGE_REASONS,
    INTERNAL_ERROR_STEPS,
    OTHER,
    PUBLISH_FALLBACKS,
    bounded,
)
from service.metrics.reading import ReadingMetrics, partition_accounts
from service.settings import DEFAULT_ACCOUNT
from service.vocabulary import (
    AbortReason,
    CancelReason,
    DeadLetterReason,
    FlushReason,
    ItemStatus,
    SkipReason,
)

__all__ = ["AccountMetrics", "Metrics"]


class Metrics(DeliveryMetrics, BudgetMetrics, ReadingMetrics):
    """Holds the collectors on its own registry (tests build as many as they like)."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        error_classes: Iterable[str] = (),
        accounts: Iterable[str] = (DEFAULT_ACCOUNT,),
        by_partition: bool = False,
    ) -> None:
        """``accounts``: the names of the accounts (``Settings.api_accounts``, in its order), the ``account``
        label's values; ``by_partition``: each partition of what the pipeline reads is one account's (the router,
        decision 0022), so what is read, committed and answered is labelled with that account (``reading.py``)."""
        accounts = tuple(accounts)
        self.registry = r = registry or CollectorRegistry()
        self._error_classes = (*error_classes, OTHER)
        Info("imgsweep_build", "Build information.", registry=r).info({"version": __version__})
        # Memory, CPU and file descriptors (process_*), and the garbage collector (python_gc_*): what a
        # dashboard charts against the pod's limits. Each registry gets its own, read at scrape time.
        ProcessCollector(registry=r)
        GCCollector(registry=r)
        self._declare_reading(r, partition_accounts(accounts, by_partition=by_partition), self._error_classes)
        self.images = Counter(
            "imgsweep_images", "Images decided, by status and reason.", ["status", "reason"], registry=r
        )
        self.api_calls = Counter(
            "imgsweep_api_calls", "Delete API calls made, by answer code.", ["account", "code"], registry=r
        )
        self.api_call_duration = Histogram(
            "imgsweep_api_call_duration_seconds",
            "Duration of one delete API call.",
            labelnames=["account"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.batch_items = Histogram(
            "imgsweep_batch_items",
            "Items per delete API call.",
            labelnames=["account"],
            buckets=(1, 5, 10, 25, 50, 100, 150, 190, 199, 200),
            registry=r,
        )
        self.batch_flushes = Counter(
            "imgsweep_batch_flushes",
            "Batches handed to workers, by why they were cut.",
            ["account", "reason"],
            registry=r,
        )
        self.retries = Counter(
            "imgsweep_api_retries", "Call retries scheduled, by the code retried.", ["account", "code"], registry=r
        )
        self.rate_limiter_waits = Counter(
            "imgsweep_rate_limiter_waits", "Calls that waited for the rate limiter.", ["account"], registry=r
        )
        self.rate_limiter_wait_seconds = Counter(
            "imgsweep_rate_limiter_wait_seconds",
            "Time calls spent waiting for the rate limiter.",
            ["account"],
            registry=r,
        )
        self.rate_limit_qps = Gauge(
            "imgsweep_rate_limit_qps",
            "This replica's current call pace (AIMD, up to its QPS share).",
            ["account"],
            registry=r,
        )
        self.quota_remaining = Gauge(
            "imgsweep_quota_remaining_calls",
            "Calls left as the API last said (remainTimes); -1 unlimited.",
            ["account"],
            registry=r,
        )
        self.quota_charged = Counter(
            "imgsweep_quota_charged_calls", "Calls the API said it charged.", ["account"], registry=r
        )
        self.quota_exhausted = Gauge(
            "imgsweep_quota_exhausted",
            "1 while calls are held for the quota: the daily reset, or a spent paid pack (see payment_required).",
            ["account"],
            registry=r,
        )
        self.quota_payment_required = Gauge(
            "imgsweep_quota_payment_required",
            "1 while the API answers 10010 (a paid call pack ran out): calls held, probed rarely, until topped up.",
            ["account"],
            registry=r,
        )
        self.quota_reset_seconds = Gauge(
            "imgsweep_quota_reset_seconds", "Seconds until the next daily quota reset.", registry=r
        )
        self.ready = Gauge("imgsweep_ready", "1 while /readyz answers 200.", registry=r)
        self.brokers_up = Gauge("imgsweep_brokers_up", "1 while a Kafka broker is reachable.", registry=r)
        # The replica's fatal state (Kafka), and an account's (a fatal API answer, re-checked by probes).
        self.fatal, self.account_halted = (
            Gauge(
                "imgsweep_fatal",
                "1 when the replica stopped on a fatal Kafka error (it commits nothing more).",
                registry=r,
            ),
            Gauge(
                "imgsweep_account_halted",
                "1 while the account's calls are held on a fatal API answer (keys, clock, permission, endpoint), "
                "re-checked by a probe call with a growing backoff.",
                ["account"],
                registry=r,
            ),
        )
        # How old the oldest unread is per assigned partition (how much is unread: ``reading.py``).
        self.consumer_lag_seconds = Gauge(
            "imgsweep_consumer_lag_seconds",
            "Age of the oldest unread (uncommitted) input event per assigned partition, by its record "
            "timestamp; 0 without lag. At the input topic's retention it is deleted unread.",
            ["partition"],
            registry=r,
        )
        self.inflight_batches = Gauge("imgsweep_inflight_batches", "Batches being called now.", registry=r)
        self.pending_events = Gauge("imgsweep_pending_events", "Events consumed and not yet finished.", registry=r)
        self.paused_partitions = Gauge("imgsweep_paused_partitions", "Assigned partitions paused.", registry=r)
        self.assigned_partitions = Gauge("imgsweep_assigned_partitions", "Partitions assigned.", registry=r)
        self.qps_share = Gauge(
            "imgsweep_qps_share",
            "This replica's share of the account's QPS (the rate limiter's ceiling).",
            ["account"],
            registry=r,
        )
        self.qps_demand_calls = Gauge(
            "imgsweep_qps_demand_calls",
            "Calls this replica could make now (what it announces).",
            ["account"],
            registry=r,
        )
        self.qps_share_members = Gauge(
            "imgsweep_qps_share_members",
            "Replicas sharing the QPS by demand as this one sees them; 0 while it shares by partitions.",
            ["account"],
            registry=r,
        )
        self.dead_letters = Counter(
            "imgsweep_dead_letters", "Records acknowledged on the dead-letter topic, by reason.", ["reason"], registry=r
        )
        self.end_to_end_latency = Histogram(
            "imgsweep_end_to_end_latency_seconds",
            "From the event's Kafka timestamp to its outcome being acknowledged.",
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400),
            registry=r,
        )
        self._declare_checkpoints(r)
        self.events_skipped = Counter(
            "imgsweep_events_skipped",
            "Input records committed without a call or an outcome, by reason.",
            ["reason"],
            registry=r,
        )
        self.offset_metadata_truncated = Gauge(
            "imgsweep_offset_metadata_dropped_offsets",
            "Finished offsets above the commit watermark left out of the commit's metadata (it did not fit); "
            "a new owner would process them again.",
            registry=r,
        )
        self._declare_budget(r)
        self.control = ControlMetrics(r, accounts)
        self._initialise_labels(accounts)

    def _initialise_labels(self, accounts: Iterable[str]) -> None:
        self._failure_counters(self.registry)
        self._accounts: dict[str, AccountMetrics] = {}
        for account in accounts:
            self.account(account)
        for status in ItemStatus:
            self.images.labels(status, "none")
        for reason in IMAGE_REASONS:
            self.images.labels(ItemStatus.FAILED, reason)
        for cancel in CancelReason:
            self.images.labels(ItemStatus.CANCELLED, cancel)
        self.images.labels(ItemStatus.ABSENT, "NO_AVAILABLE_FEATURE")
        self.images.labels(ItemStatus.ABSENT, "NO_RELATIVE_IMAGE")
        for dead_letter in DeadLetterReason:
            self.dead_letters.labels(dead_letter)
        for skip in SkipReason:
            self.events_skipped.labels(skip)
        for abort in AbortReason:
            self.transaction_aborts.labels(abort)
        for step in INTERNAL_ERROR_STEPS:
            self.internal_errors.labels(step)
        for kind, instead in PUBLISH_FALLBACKS:
            self.publish_failures.labels(kind, instead)

    def account(self, name: str) -> AccountMetrics:
        """The metrics of one account (its ``account`` label); made on first use, every series at zero."""
        if name not in self._accounts:
            self._accounts[name] = AccountMetrics(self, name)
        return self._accounts[name]

    def image_decided(self, status: str, reason: str | None, count: int = 1) -> None:
        self.images.labels(status, bounded(reason or "none", IMAGE_REASONS)).inc(count)

    def invalid_event(self, error_class: str, partition: int) -> None:
        account = self.partition_account(partition)
        self.invalid_events.labels(bounded(error_class, self._error_classes), account).inc()


class AccountMetrics:
    """One account's series of the account-labelled metrics; also the API client's ``CallObserver``."""

    def __init__(self, metrics: Metrics, account: str) -> None:
        self.name = account
        m = metrics
        for code in API_CODES:
            m.api_calls.labels(account, code)
            m.retries.labels(account, code)
        for flush in FlushReason:
            m.batch_flushes.labels(account, flush)
        for why in Why:
            m.budget_decisions.labels(account, why)
        self._calls = {code: m.api_calls.labels(account, code) for code in API_CODES}
        self._retries = {code: m.retries.labels(account, code) for code in API_CODES}
        self._duration = m.api_call_duration.labels(account)
        self._items = m.batch_items.labels(account)
        self._flushes = m.batch_flushes
        self._limiter_waits = m.rate_limiter_waits.labels(account)
        self._limiter_wait_seconds = m.rate_limiter_wait_seconds.labels(account)
        self.rate_limit_qps = m.rate_limit_qps.labels(account)
        self.quota_remaining = m.quota_remaining.labels(account)
        self.quota_remaining.set(math.nan)  # unknown until the API first answers
        self.quota_charged = m.quota_charged.labels(account)
        self.quota_exhausted = m.quota_exhausted.labels(account)
        self.quota_payment_required = m.quota_payment_required.labels(account)
        self.account_halted = m.account_halted.labels(account)
        self.account_halted.set(0)
        self.qps_share = m.qps_share.labels(account)
        self.qps_demand_calls = m.qps_demand_calls.labels(account)
        self.qps_share_members = m.qps_share_members.labels(account)
        self.budget_calls_left = m.budget_calls_left.labels(account)
        self.budget_spendable = m.budget_spendable.labels(account)
        self.budget_reserve = m.budget_reserve.labels(account)
        self.budget_needed = m.budget_needed.labels(account)
        self.budget_partial_calls_per_hour = m.budget_partial_calls_per_hour.labels(account)
        self.budget_projected_wait = m.budget_projected_wait.labels(account)
        self.budget_limited = m.budget_limited.labels(account)
        self.budget_account_spent = m.budget_account_spent.labels(account)
        self.budget_members = m.budget_members.labels(account)
        self._decisions = m.budget_decisions
        self._waiting_for_reset = {why: m.budget_waiting_for_reset.labels(account, why) for why in HELD_UNTIL_RESET}
        for gauge in self._waiting_for_reset.values():
            gauge.set(0)

    # The API client's observer interface (service.api.client.CallObserver).
    def call_finished(self, code: str, seconds: float, items: int) -> None:
        self._calls[bounded(code, API_CODES)].inc()
        self._duration.observe(seconds)
        self._items.observe(items)

    def retry_scheduled(self, code: str, delay: float) -> None:
        self._retries[bounded(code, API_CODES)].inc()

    def rate_limiter_waited(self, seconds: float) -> None:
        self._limiter_waits.inc()
        self._limiter_wait_seconds.inc(seconds)

    def batch_flushed(self, reason: str) -> None:
        self._flushes.labels(self.name, reason).inc()

    def budget_decided(self, decision: Decision) -> None:
        budget = decision.budget
        self.budget_calls_left.set(budget.calls_left)
        self.budget_spendable.set(budget.spendable)
        self.budget_reserve.set(budget.reserve)
        self.budget_needed.set(budget.needed)
        self.budget_partial_calls_per_hour.set(budget.partial_calls_per_hour)
        self.budget_projected_wait.set(decision.projected_wait_seconds)
        self.budget_limited.set(1 if decision.budget_limited else 0)
        for why, gauge in self._waiting_for_reset.items():
            gauge.set(1 if decision.why == why else 0)
        if decision.send is not None:
            self._decisions.labels(self.name, decision.why).inc()
