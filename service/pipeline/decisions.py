"""The pipeline's decisions, as pure functions over plain data: no Kafka, no clock, no threads.

The steps call these and act on the answer; the property tests in ``tests/unit/test_decisions.py`` hold them
to their promises.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

from service.api.models import DeleteItem, ItemResult, ItemStatus
from service.vocabulary import DeadLetterReason

__all__ = ["MIN_QPS", "RESUME_FRACTION", "Routing", "drain_plan", "qps_share", "route_results", "should_pause"]

W = TypeVar("W")

RESUME_FRACTION: Final = 0.8
"""Consumption paused for a full backlog resumes once it is down to this fraction of the limit."""

MIN_QPS: Final = 0.01
"""The limiter's pace never reaches zero: a replica with no partitions keeps a pace for nothing."""


@dataclass(slots=True)
class Routing(Generic[W]):
    """Where each item of an answered call goes."""

    decided: list[tuple[ItemResult, list[W]]] = field(default_factory=list)
    """Final results (deleted, absent, failed for good), with who waits for each."""
    retry: list[tuple[DeleteItem, list[W], int]] = field(default_factory=list)
    """Items another call may fix, with who waits for them and which try the next call is."""
    exhausted: int = 0
    """Items that failed retryably once too often: decided as failed with ``retries_exhausted``."""


def route_results(
    results: Iterable[ItemResult],
    waiters: Mapping[DeleteItem, list[W]],
    attempts: Mapping[DeleteItem, int],
    max_attempts: int,
) -> Routing[W]:
    """Decides every item of a call's answer: final now, into a later call, or out of tries."""
    routing: Routing[W] = Routing()
    for result in results:
        item_waiters = waiters[result.item]
        if result.status is ItemStatus.FAILED and result.retryable:
            attempt = attempts[result.item]
            if attempt < max_attempts:
                routing.retry.append((result.item, item_waiters, attempt + 1))
                continue
            routing.exhausted += 1
            result = ItemResult(result.item, ItemStatus.FAILED, DeadLetterReason.RETRIES_EXHAUSTED)  # noqa: PLW2901
        routing.decided.append((result, item_waiters))
    return routing


def qps_share(account_qps: float, assigned: int, partitions: int | None) -> float:
    """This replica's pace: the account's QPS times its share of the topic's partitions.

    Before the partition count is known, or with no partition assigned, the whole QPS: a replica alone
    must not starve, and one with nothing to do makes no calls whatever its pace.
    """
    if assigned == 0 or not partitions:
        return account_qps
    # The fraction first: ``qps * n / n`` can round above ``qps``, ``qps * (n / n)`` cannot. The floor never
    # lifts the pace above the account's own QPS.
    return min(account_qps, max(MIN_QPS, account_qps * (min(assigned, partitions) / partitions)))


def should_pause(
    *,
    paused: bool,
    pending: int,
    limit: int,
    rejected: bool,
    stopping: bool,
    fatal: bool,
    quota_exhausted: bool,
) -> bool:
    """Whether consumption should be paused now.

    Paused while draining, in the fatal state, while the quota is spent, or while the pipeline refuses
    input (``rejected``: a step raised ``MessageRejected``). A backlog at ``limit`` pauses; once paused,
    it resumes only below ``RESUME_FRACTION`` of it, so pause and resume do not alternate on every poll
    (librdkafka drops a paused partition's prefetched messages and fetches them again on resume).
    """
    if stopping or fatal or quota_exhausted or rejected:
        return True
    return pending >= (limit * RESUME_FRACTION if paused else limit)


def drain_plan(pending: Iterable[W], started: Collection[W]) -> list[W]:
    """The events a SIGTERM drain gives up on: those no call has touched yet.

    An event with an image in a call (or decided by one) is finished within the grace period, so the
    calls already paid for are not wasted; the rest stays uncommitted and its next owner does it. Outcomes
    published above an unfinished event are remembered in the commit's metadata, so nothing is redone.
    """
    return [event for event in pending if event not in started]
