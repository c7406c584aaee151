"""The pauses and brakes this replica obeys: the control topic followed from the poll loop, and its own brake.

Read from the topic's beginning at start (``open_controls``, before the loop runs) and followed on every turn
(``poll``, never blocks), so every replica obeys a pause or a tripped brake within about a second of its record.
No call starts until the topic is read up to where it ended at start: a replica that restarts during an incident
does not delete what an operator paused. A brake this replica trips stops the collection here at once and is
written to the topic, so every replica stops it; a resume's tombstone of a brake resets the collection's hour on
every replica that reads it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from service.control.brake import Brake
from service.control.state import ControlTable, Kind, State, Stop, Target, UnknownRecord
from service.control.topic import ensure_topic, heard, open_reader
from service.kafka_clients import control_producer_config
from service.metrics import ControlMetrics, Metrics
from service.pipeline.steps.route import Routes
from service.settings import Settings

__all__ = ["ReplicaControls", "open_controls", "replica_name"]

log = logging.getLogger(__name__)

GAUGE_SECONDS: Final = 1.0
"""How often the brake's busiest-collection gauge is recomputed."""


def replica_name(settings: Settings) -> str:
    return settings.kafka.group_instance_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def open_controls(settings: Settings, metrics: Metrics) -> ReplicaControls:
    """Makes the control topic if it is missing and starts reading it from its beginning. Blocks up to ~20 s;
    ConfigError if the topic can be neither made nor read."""
    if ensure_topic(settings):
        log.info("control topic %s created (1 partition, compacted)", settings.kafka.control_topic)
    reader, end = open_reader(settings)
    return ReplicaControls(
        member=replica_name(settings),
        topic=settings.kafka.control_topic,
        reader=reader,
        end=end,
        producer=Producer(control_producer_config(settings)),
        brake=Brake(settings.brake.max_images_per_hour),
        metrics=metrics.control,
        account_of=Routes((account.name, account.collections) for account in settings.api_accounts()).account_of,
    )


class ReplicaControls:
    """``service.pipeline.steps.gate.Controls`` over the control topic."""

    def __init__(
        self,
        *,
        member: str,
        topic: str,
        reader: Consumer,
        end: int,
        producer: Producer,
        brake: Brake,
        metrics: ControlMetrics,
        account_of: Callable[[str], str | None] = lambda _collection: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``reader``: assigned to the topic's beginning; ``end``: its end at start (read up to it before any
        call starts); ``account_of``: which account holds a collection (``imgsweep_account_stopped``)."""
        self._member = member
        self._topic = topic
        self._reader = reader
        self._end = end
        self._caught_up = end <= 0
        self._at_end = False
        self._producer = producer
        self._brake = brake
        self._metrics = metrics
        self._account_of = account_of
        self._clock = clock
        self._table = ControlTable()
        self._written: dict[Target, Stop] = {}
        """Trips sent to the topic (under way or delivered), not to be sent again; a refused one leaves."""
        self._gauges_due = 0.0
        self._quiet_until = 0.0
        metrics.brake_limit_images.set(brake.limit)
        if self._caught_up:
            self._obeying()

    # ---- what the gate asks --------------------------------------------------------------------------------

    def holds(self, account: str, collection: str) -> bool:
        return not self._caught_up or self._table.holds(account, collection)

    def account_paused(self, account: str) -> bool:
        return self._table.stop_of(Target(Kind.ACCOUNT, account)) is not None

    def admit(self, collection: str, images: int) -> bool:
        now = self._clock()
        if not self._brake.would_exceed(collection, images, now):
            return True
        in_hour = self._brake.in_hour(collection, now)
        stop = Stop(
            State.BRAKED,
            self._member,
            datetime.now(UTC).isoformat(timespec="seconds"),
            f"{in_hour} images handed to calls in the last hour, {images} more would exceed "
            f"IMGSWEEP_BRAKE__MAX_IMAGES_PER_HOUR={self._brake.limit}",
        )
        self._table.tripped(collection, stop)
        self._metrics.brake_trips.inc()
        log.critical(
            "brake tripped: the deletions of collection %s stop on every replica until an operator checks the "
            "catalog and runs `imgsweep brake resume --collection %s`",
            collection,
            collection,
            extra={"collection": collection, "count": in_hour},
        )
        self._send(Target(Kind.COLLECTION, collection), stop)
        self._update_gauges(now, force=True)
        return False

    def counted(self, collection: str, images: int) -> None:
        self._brake.count(collection, images, self._clock())

    # ---- the loop ------------------------------------------------------------------------------------------

    def poll(self) -> None:
        self._read()
        for target, stop in self._table.unconfirmed().items():
            if self._written.get(target) != stop:
                self._send(target, stop)
        self._producer.poll(0)
        self._update_gauges(self._clock())

    def close(self) -> None:
        """Delivers a trip not yet written (up to 2 s); stops reading."""
        self._producer.flush(2.0)
        self._reader.close()

    # ---- the topic -----------------------------------------------------------------------------------------

    def _read(self) -> None:
        while True:
            try:
                messages = self._reader.consume(500, timeout=0)
            except KafkaException as error:
                self._warn(f"reading the control topic {self._topic} failed: {error}")
                return
            for message in messages:
                self._heard(message)
            if not self._caught_up and (self._at_end or self._position() >= self._end):
                self._caught_up = True
                self._obeying()
            if len(messages) < 500:
                return

    def _position(self) -> int:
        try:
            (position,) = self._reader.position([TopicPartition(self._topic, 0)])
        except KafkaException:
            return -1
        return int(position.offset)

    def _heard(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                self._at_end = True
            else:
                self._warn(f"control topic {self._topic}: {error}")
            return
        try:
            read = heard(self._table, message)
        except UnknownRecord as unknown:
            self._warn(f"control topic {self._topic}: a record that is not imgsweep's, ignored: {unknown}")
            return
        if read is None:
            return
        target, stop, before = read
        if stop is None and before is not None and before.state is State.BRAKED:
            self._brake.reset(target.name)  # the operator checked the catalog: the collection's hour starts again
        if self._caught_up and stop is not None:
            log.warning("%s stopped: %s", target, stop.describe(), extra={"state": str(stop.state)})
        elif self._caught_up and before is not None:
            log.warning("%s resumed: its deletions start again", target, extra={"state": before.describe()})
        self._update_gauges(self._clock(), force=True)

    def _obeying(self) -> None:
        stops = self._table.stops()
        log.info(
            "control topic %s read: %s",
            self._topic,
            "; ".join(f"{target} {stop.describe()}" for target, stop in stops.items()) or "nothing is stopped",
            extra={"count": len(stops)},
        )
        self._metrics.control_caught_up.set(1)

    def _send(self, target: Target, stop: Stop) -> None:
        def delivered(error: KafkaError | None, _message: Message) -> None:
            if error is not None:  # sent again on the next turn
                self._written.pop(target, None)
                self._warn(f"the tripped brake of {target} was not written to {self._topic}: {error}")

        try:
            self._producer.produce(self._topic, key=target.key.encode(), value=stop.encode(), on_delivery=delivered)
        except (KafkaException, BufferError) as error:
            self._warn(f"the tripped brake of {target} was not written to {self._topic}: {error}")
            return
        self._written[target] = stop

    def _warn(self, message: str) -> None:
        """At most one warning a minute: a broken control topic shows on every turn of the loop."""
        now = self._clock()
        if now >= self._quiet_until:
            self._quiet_until = now + 60.0
            log.warning(message)

    def _update_gauges(self, now: float, *, force: bool = False) -> None:
        if not force and now < self._gauges_due:
            return
        self._gauges_due = now + GAUGE_SECONDS
        stops = self._table.stops()
        metrics = self._metrics
        metrics.brakes_tripped(target.name for target, stop in stops.items() if stop.state is State.BRAKED)
        for kind in Kind:
            paused = sum(1 for target, stop in stops.items() if target.kind is kind and stop.state is State.PAUSED)
            metrics.paused.labels(kind).set(paused)
        metrics.accounts_stopped(self._accounts_stopped(stops))
        metrics.brake_busiest_images.set(self._brake.busiest(now))

    def _accounts_stopped(self, stops: dict[Target, Stop]) -> set[tuple[str, str]]:
        """(account, why) for each stop: an account's own, or that of the account holding a stopped collection."""
        stopped = set()
        for target, stop in stops.items():
            account = target.name if target.kind is Kind.ACCOUNT else self._account_of(target.name)
            if account is not None:
                stopped.add((account, str(stop.state)))
        return stopped
