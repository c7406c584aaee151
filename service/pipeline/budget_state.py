"""The budget topic: each account's budget day, kept across restarts and shared by replicas (issue 20, point 2).

Every replica (a *member*: its static group instance id, else its process id) writes, per account, two kinds of
record to one compacted partition (``IMGSWEEP_KAFKA__BUDGET_TOPIC``):

- ``<account>/<member>/spend``: the day (the reset that ends it), the calls it started and the calls it claims
  (``service.budget.shared``). With a daily cap (a pack's spending limit) a call starts only once its claim is read
  back granted; without one the record follows the calls, about once a second.
- ``<account>/<member>/state``: its planner's state (the arrival curve, the target's counts), every
  ``STATE_SECONDS`` and on shutdown, so that a restart with the same member id paces as if it had not stopped.
- ``<account>/<member>/need``: its need, the calls the rest of its day would take at each wait of a ladder
  (``service.budget.demand``), about once a minute; every member's share of the spendable calls is its need over
  every live member's (docs/decisions/0023). A need older than ``NEED_EXPIRY_SECONDS`` (by the writer's wall clock
  against the reader's) is a dead member's; on shutdown a member writes an empty need, so the others take its part
  at once.

On start the whole partition is read once (``restore``, blocking, before the pipeline runs): every member's
records of today are counted, and this member's own count and state come back. Then the loop reads on
(``poll``, never blocking: ``consume`` with no wait), so each account's *spent today* counts every replica, those
gone too: nothing is tombstoned on shutdown, and a dead member's calls count until the reset. Records are kept
uncompacted for longer than a day (``min.compaction.lag.ms``), so every replica resolves the day's claims from the
same records in the same order.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from service.budget.demand import NEED_EXPIRY_SECONDS
from service.budget.shared import AccountDay, Lease, SpendRecord
from service.kafka_clients import watermarks
from service.metrics import Metrics

__all__ = ["STATE_SECONDS", "AccountSpend", "BudgetBoard"]

log = logging.getLogger(__name__)

PARTITION: Final = 0
"""Every record goes to one partition: one order of every member's claims, the same for every reader."""
SPEND_SECONDS: Final = 1.0
"""Without a cap, a member's calls are written at most this often (its last second is the margin of a SIGKILL)."""
STATE_SECONDS: Final = 300.0
"""A member's planner state is written this often (and on shutdown): a SIGKILL loses at most this much learning."""
RESTORE_TIMEOUT_SECONDS: Final = 60.0
GAUGE_SECONDS: Final = 1.0


@dataclass(slots=True)
class _Own:
    """What this member last wrote and left (restored on start)."""

    state: dict[str, object] | None = None
    state_day: int | None = None
    written_spent: int = -1
    spend_written_at: float = -math.inf
    state_due: float = 0.0


class AccountSpend:
    """One account's records as this member writes and reads them: ``service.budget.shared.SharedSpend``."""

    def __init__(self, board: BudgetBoard, account: str, lease: Lease, today: Callable[[], int]) -> None:
        self.account = account
        self._board = board
        self._lease = lease
        self._today = today
        self.days = AccountDay(lease.cap)
        self._own = _Own()
        self._day: int | None = None
        self._state: Callable[[], dict[str, object]] | None = None
        """The planner's state, as of when it is read (the last one told)."""
        self._claimed_at: float | None = None
        self._needs: dict[str, tuple[int, float, list[float]]] = {}
        """The other members' latest needs: (day, written at on the writer's wall clock, calls by wait)."""

    # ---- what the planner's wrapper asks (SharedSpend) --------------------------------------------------------

    def others(self) -> int:
        self._board.poll()
        day = self._roll()
        return self.days.total(day) - self.days.counted(day, self._lease.member)

    def may_start(self, started: int) -> bool:
        self._board.poll()
        day = self._roll()
        if self._lease.may_start(self.days, day, started):
            return True
        record = self._lease.claim(self.days, day, started)
        if record is not None:
            self._claimed_at = self._board.clock()
            self._board.write_spend(self.account, record, failed=self._lease.lost)
        return False

    def started(self, started: int, state: Callable[[], dict[str, object]]) -> None:
        day, now, own = self._roll(), self._board.clock(), self._own
        self._state = state
        if started > own.written_spent and now - own.spend_written_at >= SPEND_SECONDS:
            counted = self.days.counted(day, self._lease.member)
            if started > counted or not self._lease.limited:  # with a cap, granted claims already count them
                self._board.write_spend(self.account, SpendRecord(self._lease.member, day, started, started))
            own.written_spent, own.spend_written_at = started, now
        if now >= own.state_due:
            self.save(state())

    def restored(self) -> tuple[int, dict[str, object] | None, bool]:
        day = self._roll()
        return self.days.counted(day, self._lease.member), self._own.state, self._own.state_day == day

    def need(self, calls: Sequence[float]) -> None:
        self._board.write_need(self.account, self._roll(), list(calls))

    def needs(self) -> list[Sequence[float]]:
        self._board.poll()
        day, now = self._roll(), self._board.wall()
        return [calls for when, at, calls in self._needs.values() if when == day and now - at <= NEED_EXPIRY_SECONDS]

    # ---- the board's side ------------------------------------------------------------------------------------------

    def save_last(self) -> None:
        """On shutdown: the planner's state now, if a planner ever told it, and an empty need (no share kept)."""
        if self._state is not None:
            self.save(self._state())
        self._board.write_need(self.account, self._roll(), [])

    def save(self, state: dict[str, object]) -> None:
        """Writes this member's planner state (every ``STATE_SECONDS``, and on shutdown)."""
        self._own.state_due = self._board.clock() + STATE_SECONDS
        self._board.write_state(self.account, self._roll(), state)

    def heard_spend(self, record: SpendRecord) -> float | None:
        """A spend record read; returns how long this member's claim took to come back, if it answers one."""
        self.days.heard(record)
        if record.member != self._lease.member or not self._lease.waiting:
            return None
        self._lease.read_back(record)
        if self._lease.waiting or self._claimed_at is None:
            return None
        waited, self._claimed_at = self._board.clock() - self._claimed_at, None
        return waited

    def heard_need(self, member: str, day: int, at: float, calls: list[float]) -> None:
        """Another member's need (an empty one: it shut down)."""
        if member == self._lease.member:
            return
        if calls:
            self._needs[member] = (day, at, calls)
        else:
            self._needs.pop(member, None)

    def heard_state(self, day: int, state: dict[str, object]) -> None:
        """This member's own state, read back on start: the latest wins."""
        self._own.state, self._own.state_day = state, day

    def gauges(self, metrics: Metrics) -> None:
        day = self._roll()
        series = metrics.account(self.account)
        series.budget_account_spent.set(self.days.total(day))
        series.budget_members.set(self.days.members(day))

    def _roll(self) -> int:
        """Today's id; a new day forgets the records of the days before."""
        day = self._today()
        if day != self._day:
            self._day = day
            self.days.forget_before(day)
        return day


class BudgetBoard:
    """The budget topic for every account of this replica: one producer, one reader, polled from the loop."""

    def __init__(
        self,
        *,
        topic: str,
        member: str,
        producer: Producer,
        reader: Consumer,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.topic = topic
        self.member = member
        self._producer = producer
        self._reader = reader
        self._metrics = metrics
        self.clock = clock
        self.wall = wall
        self._accounts: dict[str, AccountSpend] = {}
        self._restoring = True
        self._gauges_at = -math.inf
        self._quiet_until = -math.inf

    def account(self, name: str, cap: float, today: Callable[[], int]) -> AccountSpend:
        """The account's records (``cap``: its calls a day at most, ``math.inf`` without a spending limit)."""
        spend = AccountSpend(self, name, Lease(self.member, cap), today)
        self._accounts[name] = spend
        return spend

    # ---- start, every turn, shutdown ---------------------------------------------------------------------------

    def restore(self, timeout: float = RESTORE_TIMEOUT_SECONDS) -> int:
        """Reads the partition from its start to its end now (blocks, at start); returns the records read. What
        could not be read in ``timeout`` is read by ``poll`` later (a restart then counts less, for a while)."""
        started = self.clock()
        where = TopicPartition(self.topic, PARTITION)
        low, high = self._ends(where, started + timeout)
        self._reader.assign([TopicPartition(self.topic, PARTITION, OFFSET_BEGINNING)])
        records = 0
        while high > low and self.clock() - started < timeout:
            records += self._read(1000, 0.2)
            (position,) = self._reader.position([where])
            if position.offset >= high:
                break
        self._restoring = False
        seconds = self.clock() - started
        self._metrics.budget_state_restore_seconds.set(seconds)
        self._metrics.budget_state_restored_records.set(records)
        for spend in self._accounts.values():
            spend.gauges(self._metrics)
        log.info(
            "budget state restored", extra={"count": records, "wait_seconds": round(seconds, 3), "topic": self.topic}
        )
        return records

    def _ends(self, where: TopicPartition, deadline: float) -> tuple[int, int]:
        """The partition's first and next offsets now (``watermarks``: asked again while a topic just made has no
        leader); still unreadable at ``deadline``, (0, 0): nothing is read at start, ``poll`` reads the records as
        they come."""
        try:
            return watermarks(self._reader, where, deadline=deadline, clock=self.clock, sleep=time.sleep)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            log.warning(
                "budget topic %s not readable at start (%s): its records are read as they come", self.topic, error.str()
            )
            return 0, 0

    def poll(self) -> None:
        """Reads what the other members (and this one) wrote since; serves the producer's delivery reports. Never
        blocks."""
        self._read(500, 0)
        self._producer.poll(0)
        now = self.clock()
        if now - self._gauges_at >= GAUGE_SECONDS:
            self._gauges_at = now
            for spend in self._accounts.values():
                spend.gauges(self._metrics)

    def close(self) -> None:
        """On shutdown: each account's last planner state, flushed for up to 5 s; no tombstone, as the calls
        spent still count until the reset."""
        for spend in self._accounts.values():
            spend.save_last()
        left = self._producer.flush(5.0)
        if left:
            log.warning("budget state: %d records not written at shutdown", left)
        self._reader.close()

    # ---- records -----------------------------------------------------------------------------------------------

    def write_spend(self, account: str, record: SpendRecord, *, failed: Callable[[], None] | None = None) -> None:
        value = {"kind": "spend", "account": account, "member": record.member, "day": record.day,
                 "spent": record.spent, "claimed": record.claimed, "at": self.wall()}  # fmt: skip
        self._write(f"{account}/{record.member}/spend", value, failed)

    def write_need(self, account: str, day: int, calls: list[float]) -> None:
        value = {"kind": "need", "account": account, "member": self.member, "day": day,
                 "calls": [round(need, 3) for need in calls], "at": self.wall()}  # fmt: skip
        self._write(f"{account}/{self.member}/need", value, None)

    def write_state(self, account: str, day: int, state: dict[str, object]) -> None:
        value = {"kind": "state", "account": account, "member": self.member, "day": day, "state": state,
                 "at": self.wall()}  # fmt: skip
        self._write(f"{account}/{self.member}/state", value, None)

    def _write(self, key: str, value: dict[str, Any], failed: Callable[[], None] | None) -> None:
        def delivered(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                self._metrics.budget_state_write_failures.inc()
                self._warn(f"budget state not written: {error}")
                if failed is not None:
                    failed()

        try:
            self._producer.produce(
                self.topic, key=key.encode(), value=json.dumps(value).encode(), partition=PARTITION,
                on_delivery=delivered,
            )  # fmt: skip
        except (KafkaException, BufferError) as error:
            delivered(KafkaError(KafkaError._MSG_TIMED_OUT, str(error)), None)  # type: ignore[arg-type]

    def _read(self, batch: int, timeout: float) -> int:
        count = 0
        while True:
            try:
                messages = self._reader.consume(batch, timeout=timeout)
            except KafkaException as error:
                self._warn(f"reading the budget topic failed: {error}")
                return count
            for message in messages:
                problem = message.error()
                if problem is None:
                    count += 1
                    self._heard(message.value())
                elif problem.code() != KafkaError._PARTITION_EOF:
                    self._warn(f"budget topic: {problem}")
            if len(messages) < batch:
                return count

    def _heard(self, raw: bytes | None) -> None:
        if raw is None:
            return
        try:
            value = json.loads(raw)
            spend = self._accounts.get(str(value["account"]))
            if spend is None:  # an account this replica does not serve
                return
            if value["kind"] == "spend":
                record = SpendRecord(str(value["member"]), int(value["day"]), int(value["spent"]),
                                     int(value["claimed"]))  # fmt: skip
                waited = spend.heard_spend(record)
                if waited is not None:
                    self._metrics.budget_claim_seconds.observe(waited)
            elif value["kind"] == "need":
                calls = [float(need) for need in value["calls"]]
                spend.heard_need(str(value["member"]), int(value["day"]), float(value["at"]), calls)
            elif value["kind"] == "state" and self._restoring and value["member"] == self.member:
                spend.heard_state(int(value["day"]), dict(value["state"]))
        except (ValueError, KeyError, TypeError) as error:
            self._warn(f"budget topic: a record that is not ours, ignored ({error})")

    def _warn(self, message: str) -> None:
        """At most one warning a minute: a broken topic shows on every turn of the loop."""
        now = self.clock()
        if now >= self._quiet_until:
            self._quiet_until = now + 60.0
            log.warning(message)
