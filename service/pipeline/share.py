"""This replica's share of each account's QPS, applied to its rate limiter: by partitions, or by demand.

``PartitionShare`` is the old rule (docs/decisions/0002): ``QPS x assigned / partitions``, set after every
rebalance. ``DemandShare`` (docs/decisions/0009) announces, about once a second, how many calls this replica
could make now, by account, on a small compacted topic (key: the member id; a tombstone on shutdown) and reads every
replica's announcements from it; its pace is its share of ``demand_shares`` over the live ones. It falls back
to the partition share while its own announcements do not come back (the topic is missing or unreachable).

Both are driven from the poll loop: ``assigned`` after a rebalance, ``poll`` on every turn (never blocks),
``close`` once on shutdown (blocks up to a second for the tombstone).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from confluent_kafka import OFFSET_END, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from service.api.rate_limit import RateLimiter
from service.metrics import AccountMetrics
from service.pipeline.decisions import qps_share
from service.pipeline.demand_share import Demand, DemandTable, RisingShare, demand_shares, floor_qps
from service.settings import DEFAULT_ACCOUNT

__all__ = ["DemandShare", "Paced", "PartitionShare", "QpsShare"]

log = logging.getLogger(__name__)

ANNOUNCE_SECONDS: Final = 1.0
"""How often a replica announces its demand (and at once when it goes from nothing to something)."""
EXPIRY_SECONDS: Final = 5.0
"""A replica not heard from for this long (on the hearer's own clock) is dead: it no longer holds a share."""
RISE_SECONDS: Final = 2.0
"""A higher share waits this long: the replica losing pace has read the change, and its last second passed."""
ROTATE_SECONDS: Final = 120.0
"""When fewer whole calls a second than busy replicas exist, who holds them changes this often."""
RETRY_TOPIC_SECONDS: Final = 30.0
"""How often a missing demand topic is looked for again."""
METADATA_TIMEOUT: Final = 5.0


@dataclass(frozen=True, slots=True)
class Paced:
    """One account as the share sees it: its name, the rate limiter it paces, its QPS, and its series."""

    account: str
    limiter: RateLimiter
    qps: float
    metrics: AccountMetrics


class QpsShare(Protocol):
    def assigned(self, assigned: int, partitions: int | None) -> None:
        """After a rebalance: how many of the input topic's partitions this replica holds."""

    def poll(self, demand: Mapping[str, int]) -> None:
        """Every turn of the poll loop: the calls this replica could make now, by account. Never blocks."""

    def close(self) -> None:
        """On shutdown."""


class PartitionShare:
    """Each account's QPS times this replica's fraction of the input topic's partitions, set on every rebalance."""

    def __init__(self, accounts: Sequence[Paced]) -> None:
        self._accounts = accounts

    def assigned(self, assigned: int, partitions: int | None) -> None:
        for paced in self._accounts:
            qps = qps_share(paced.qps, assigned, partitions)
            paced.limiter.set_ceiling(qps)
            paced.metrics.qps_share.set(qps)
            log.info(
                "QPS share recomputed",
                extra={"count": assigned, "state": f"account {paced.account}: {qps:.3f} qps by partitions"},
            )

    def poll(self, demand: Mapping[str, int]) -> None:
        for paced in self._accounts:
            paced.metrics.qps_demand_calls.set(demand.get(paced.account, 0))

    def close(self) -> None:
        pass


class _AccountShare:
    """One account's part of the demand share: who wants its calls, and the pace this replica applies."""

    def __init__(self, paced: Paced) -> None:
        self.paced = paced
        self.table = DemandTable(EXPIRY_SECONDS)
        self.rising = RisingShare(floor_qps(paced.qps, 2), RISE_SECONDS)
        self.partition_share = paced.qps
        self.by_demand: bool | None = None


class DemandShare:
    def __init__(
        self,
        *,
        member: str,
        topic: str,
        producer: Producer,
        reader: Consumer,
        accounts: Sequence[Paced],
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._member = member
        self._topic = topic
        self._producer = producer
        self._reader = reader
        self._accounts = {paced.account: _AccountShare(paced) for paced in accounts}
        self._clock = clock
        self._wall = wall
        self._reading = False
        self._look_again = 0.0
        self._next_announce = 0.0
        self._announced = 0
        self._delivery_failures = 0
        self._quiet_until = 0.0

    def assigned(self, assigned: int, partitions: int | None) -> None:
        for share in self._accounts.values():
            share.partition_share = qps_share(share.paced.qps, assigned, partitions)

    def poll(self, demand: Mapping[str, int]) -> None:
        now = self._clock()
        if not self._reading and now >= self._look_again:
            self._start_reading()
        self._read()
        wanted = sum(demand.values())
        if now >= self._next_announce or (wanted and not self._announced and now >= self._next_announce - 0.9):
            self._announce(demand, now)
        self._producer.poll(0)
        self._apply(now)
        for account, share in self._accounts.items():
            share.paced.metrics.qps_demand_calls.set(demand.get(account, 0))

    def close(self) -> None:
        """Says this replica is gone (a tombstone), so the others take its share at once."""
        try:
            self._producer.produce(self._topic, key=self._member.encode(), value=None)
            self._producer.flush(1.0)
        except (KafkaException, BufferError) as error:
            log.warning("could not announce leaving the demand topic: %s", error)
        self._reader.close()

    # ---- the topic ------------------------------------------------------------------------------------------

    def _start_reading(self) -> None:
        """Assigns every partition of the demand topic from the announcements that may still be live."""
        self._look_again = self._clock() + RETRY_TOPIC_SECONDS
        try:
            metadata = self._reader.list_topics(self._topic, timeout=METADATA_TIMEOUT)
            topic = metadata.topics.get(self._topic)
            if topic is None or topic.error is not None or not topic.partitions:
                raise KafkaException(topic.error if topic is not None else "no such topic")  # noqa: TRY301
            since = int((self._wall() - EXPIRY_SECONDS - 1.0) * 1000)
            wanted = [TopicPartition(self._topic, number, since) for number in topic.partitions]
            starts = self._reader.offsets_for_times(wanted, timeout=METADATA_TIMEOUT)
        except KafkaException as error:
            log.warning(
                "demand topic %s not readable (%s): sharing the QPS by partitions; looking again in %.0f s",
                self._topic,
                error,
                RETRY_TOPIC_SECONDS,
            )
            return
        self._reader.assign([TopicPartition(self._topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_END)
                             for tp in starts])  # fmt: skip
        self._reading = True

    def _read(self) -> None:
        if not self._reading:
            # Not assigned yet (the topic was not readable): still served, so that its logs and errors (every
            # reconnect during an outage) do not pile up in a queue nobody reads.
            self._reader.poll(0)
            return
        while True:
            try:
                messages = self._reader.consume(500, timeout=0)
            except KafkaException as error:
                self._warn(f"reading the demand topic failed: {error}")
                return
            for message in messages:
                self._heard(message)
            if len(messages) < 500:
                return

    def _heard(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                self._warn(f"demand topic: {error}")
            return
        key = message.key()
        if key is None:
            return
        member = key.decode(errors="replace")
        value = message.value()
        if value is None:
            for share in self._accounts.values():
                share.table.gone(member)
            return
        try:
            calls = _announced_calls(json.loads(value))
        except (ValueError, KeyError, TypeError, AttributeError):
            self._warn(f"demand topic: an announcement that is not ours, from {member!r}, ignored")
            return
        # Expiry counts from when this replica heard it, on its own clock: replicas' clocks need not agree.
        heard_at = self._clock()
        for account, share in self._accounts.items():
            if account in calls:
                share.table.heard(Demand(member, calls[account], heard_at))

    def _warn(self, message: str) -> None:
        """At most one warning a minute: a broken demand topic shows on every turn of the loop."""
        now = self._clock()
        if now >= self._quiet_until:
            self._quiet_until = now + 60.0
            log.warning(message)

    def _announce(self, demand: Mapping[str, int], now: float) -> None:
        document = {
            "member": self._member,
            "calls": demand.get(DEFAULT_ACCOUNT, sum(demand.values())),  # what replicas of one account read
            "accounts": dict(demand),
            "at": self._wall(),
            "account_qps": {account: share.paced.qps for account, share in self._accounts.items()},
        }
        try:
            self._producer.produce(
                self._topic, key=self._member.encode(), value=json.dumps(document).encode(), on_delivery=self._delivered
            )
        except (KafkaException, BufferError) as error:
            log.warning("could not announce demand: %s", error)
        self._next_announce = now + ANNOUNCE_SECONDS
        self._announced = sum(demand.values())

    def _delivered(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self._delivery_failures += 1
            if self._delivery_failures in (1, 10) or self._delivery_failures % 600 == 0:
                log.warning("demand announcement not delivered (%d so far): %s", self._delivery_failures, error)

    # ---- the pace ---------------------------------------------------------------------------------------------

    def _apply(self, now: float) -> None:
        rotation = int(self._wall() // ROTATE_SECONDS)
        for share in self._accounts.values():
            self._pace(share, now, rotation)

    def _pace(self, share: _AccountShare, now: float, rotation: int) -> None:
        paced = share.paced
        live = share.table.live(now)
        by_demand = self._reading and self._member in live
        qps = demand_shares(paced.qps, live, rotation=rotation)[self._member] if by_demand else share.partition_share
        if by_demand != share.by_demand:
            share.by_demand = by_demand
            log.info(
                "QPS shared by %s",
                "demand" if by_demand else "partitions",
                extra={"count": len(live), "state": f"account {paced.account}: {qps:.3f} qps"},
            )
        if self._reading:
            pace = share.rising.update(qps, now)
        else:  # no demand topic to read: today's partition share at once, as a replica without this mechanism
            if share.rising.applied != qps:
                share.rising = RisingShare(qps, RISE_SECONDS)
            pace = qps
        if pace != paced.limiter.ceiling:
            paced.limiter.set_ceiling(pace)
        paced.metrics.qps_share.set(pace)
        paced.metrics.qps_share_members.set(len(live) if by_demand else 0)


def _announced_calls(document: dict[str, object]) -> dict[str, int]:
    """Calls by account in an announcement; one without accounts (a replica of one account) is the default's."""
    accounts = document.get("accounts")
    if isinstance(accounts, dict):
        return {str(account): max(0, int(calls)) for account, calls in accounts.items()}
    return {DEFAULT_ACCOUNT: max(0, int(document["calls"]))}  # type: ignore[call-overload]
