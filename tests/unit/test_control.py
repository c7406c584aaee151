"""The brake and the pauses without a broker: the sliding hour, the control table, the gate step, the replica's
view of an in-memory control topic, the lane's demand, the metric's bounded series, the commands' answers."""

from __future__ import annotations

import argparse
import contextlib
import io
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC
from datetime import time as clock_time
from typing import Any

import pytest
from confluent_kafka import KafkaError, TopicPartition
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from service.api.models import BatchResult, DeleteItem
from service.api.quota import QuotaGate
from service.api.rate_limit import RateLimiter
from service.control import Brake, ControlTable, Kind, State, Stop, Target, UnknownRecord
from service.control import cli as control_cli
from service.control.replica import ReplicaControls
from service.health import HealthState
from service.internal_topics import DEMAND_TOPIC_CONFIG, control_topic, create_command, internal_topics
from service.metrics import BRAKE_SERIES, Metrics
from service.metrics.labels import ACCOUNT_STOPS
from service.pipeline.batcher import Batcher, ReadyBatch
from service.pipeline.halt import Halt
from service.pipeline.lane import AccountLane, LaneShared
from service.pipeline.pending import PendingEvent
from service.pipeline.steps.abstract import MessageRejected
from service.pipeline.steps.batch import BatchStep
from service.pipeline.steps.call import AccountCalls, Workers
from service.pipeline.steps.gate import NO_CONTROLS, GateStep
from service.settings import ConfigError, Settings, load_settings
from tests.support.calls import HeldExecutor
from tests.unit.test_steps import delist, ledger_with

# ---- the brake: a sliding hour per collection --------------------------------------------------------------


def test_the_brake_counts_a_sliding_hour_per_collection() -> None:
    brake = Brake(100)
    brake.count("shoes", 60, now=0.0)
    brake.count("shoes", 40, now=1800.0)
    brake.count("bags", 90, now=1800.0)
    assert brake.in_hour("shoes", 1800.0) == 100
    assert brake.would_exceed("shoes", 1, 1800.0), "101 in the hour"
    assert not brake.would_exceed("bags", 10, 1800.0), "another collection counts apart: 100 exactly is allowed"
    assert brake.would_exceed("bags", 11, 1800.0)
    assert brake.in_hour("shoes", 3600.0) == 40, "the first 60 left the hour after 3600 s"
    assert not brake.would_exceed("shoes", 60, 3600.0)
    assert brake.busiest(3600.0) == 90
    assert brake.in_hour("shoes", 5400.0) == 0
    assert brake.busiest(5400.0) == 0


def test_resuming_a_brake_starts_its_hour_again() -> None:
    brake = Brake(100)
    brake.count("shoes", 100, now=0.0)
    assert brake.would_exceed("shoes", 1, 10.0)
    brake.reset("shoes")
    assert brake.in_hour("shoes", 10.0) == 0
    assert not brake.would_exceed("shoes", 100, 10.0), "another full limit before it trips again"


def test_a_limit_of_zero_is_no_brake() -> None:
    brake = Brake(0)
    brake.count("shoes", 10**9, now=0.0)
    assert not brake.enabled
    assert not brake.would_exceed("shoes", 10**9, 0.0)
    assert brake.busiest(0.0) == 0


@given(st.lists(st.tuples(st.floats(0, 10_000), st.integers(1, 200)), max_size=60), st.floats(0, 20_000))
def test_the_count_is_what_was_handed_in_the_hour_before_now(handed: list[tuple[float, int]], query: float) -> None:
    brake = Brake(1_000_000)
    handed.sort()
    now = max([query, *(at for at, _ in handed)])
    for at, images in handed:
        brake.count("c", images, at)
    assert brake.in_hour("c", now) == sum(images for at, images in handed if at > now - 3600)


# ---- what a control record says, and the table of stops -----------------------------------------------------


def test_control_records_round_trip_and_foreign_ones_are_refused() -> None:
    stop = Stop(State.PAUSED, "alice@ops", "2026-12-07T01:00:00+00:00", "catalog incident")
    assert Stop.decode(stop.encode()) == stop
    assert Target.parse("collection:shoes:men") == Target(Kind.COLLECTION, "shoes:men")
    assert Target(Kind.ACCOUNT, "shop").key == "account:shop"
    for key in ("shoes", "product:shoes", "collection:"):
        with pytest.raises(UnknownRecord):
            Target.parse(key)
    for value in (b"not json", b'{"state": "gone", "by": "x", "at": "y"}', b'{"state": "paused"}', b"[]"):
        with pytest.raises(UnknownRecord):
            Stop.decode(value)


def _stop(state: State = State.PAUSED, by: str = "ops") -> Stop:
    return Stop(state, by, "2026-12-07T01:00:00+00:00")


def test_the_table_holds_a_collection_or_every_collection_of_an_account() -> None:
    table = ControlTable()
    table.heard(Target(Kind.COLLECTION, "shoes"), _stop())
    table.heard(Target(Kind.ACCOUNT, "shop"), _stop())
    assert table.holds("other", "shoes")
    assert table.holds("shop", "bags")
    assert not table.holds("other", "bags")
    before = table.heard(Target(Kind.ACCOUNT, "shop"), None)
    assert before == _stop()
    assert not table.holds("shop", "bags")
    assert list(table.stops()) == [Target(Kind.COLLECTION, "shoes")]


def test_a_brake_tripped_here_holds_until_its_record_comes_back_and_is_then_lifted_by_a_tombstone() -> None:
    table, shoes = ControlTable(), Target(Kind.COLLECTION, "shoes")
    table.heard(shoes, _stop())
    table.heard(shoes, None)  # an older pause and resume, read while catching up
    table.tripped("shoes", _stop(State.BRAKED, "replica-1"))
    table.heard(shoes, None)  # an older tombstone: it does not lift a trip the topic has not shown yet
    assert table.holds("a", "shoes")
    assert shoes in table.unconfirmed()
    table.heard(shoes, _stop(State.BRAKED, "replica-1"))
    assert not table.unconfirmed()
    before = table.heard(shoes, None)  # the operator's resume
    assert before is not None
    assert before.state is State.BRAKED
    assert not table.holds("a", "shoes")


# ---- the gate step between the batch step and the call step -------------------------------------------------


class Controls:
    """The replica's controls, as a test sets them."""

    def __init__(self, *, held: set[str] = frozenset(), brake: Brake | None = None) -> None:  # type: ignore[assignment]
        self.held = set(held)
        self.brake = brake or Brake(0)
        self.now = 0.0

    def holds(self, account: str, collection: str) -> bool:
        return collection in self.held or account in self.held

    def account_paused(self, account: str) -> bool:
        return account in self.held

    def admit(self, collection: str, images: int) -> bool:
        if self.brake.would_exceed(collection, images, self.now):
            self.held.add(collection)
            return False
        return True

    def counted(self, collection: str, images: int) -> None:
        self.brake.count(collection, images, self.now)

    def poll(self) -> None:
        pass

    def close(self) -> None:
        pass


class Calls:
    """The call step: takes every batch, or refuses while ``full``."""

    def __init__(self) -> None:
        self.started: list[ReadyBatch[PendingEvent]] = []
        self.full = False

    def accepting(self) -> bool:
        return not self.full

    def submit(self, ready: ReadyBatch[PendingEvent]) -> None:
        if self.full:
            raise MessageRejected
        self.started.append(ready)

    def poll(self) -> None:
        pass

    def close(self) -> None:
        pass

    def join(self, deadline: float) -> None:
        pass

    def terminate(self) -> None:
        pass


def _ready(collection: str, images: int) -> ReadyBatch[PendingEvent]:
    batcher: Batcher[PendingEvent] = Batcher(max_items=1000, max_bytes=5_000_000, linger_seconds=0)
    for n in range(images):
        batcher.add(collection, DeleteItem(f"p{n}", f"{n}.jpg"), None, 0.0)  # type: ignore[arg-type]
    ready = batcher.take(1.0)
    assert ready is not None
    return ready


def test_the_gate_holds_stopped_collections_and_counts_what_goes() -> None:
    controls, calls = Controls(held={"bags"}, brake=Brake(25)), Calls()
    gate = GateStep(account="shop", controls=controls, calls=calls)
    assert gate.holds("bags")
    assert not gate.holds("shoes")
    with pytest.raises(MessageRejected):
        gate.submit(_ready("bags", 5))
    gate.submit(_ready("shoes", 20))
    assert controls.brake.in_hour("shoes", 0.0) == 20, "counted when the call took it"
    calls.full = True
    with pytest.raises(MessageRejected):
        gate.submit(_ready("shoes", 5))
    assert controls.brake.in_hour("shoes", 0.0) == 20, "a batch the call step refused is not counted"
    calls.full = False
    with pytest.raises(MessageRejected):
        gate.submit(_ready("shoes", 6))
    assert gate.holds("shoes"), "26 would exceed 25: the brake tripped"
    assert [len(ready.batch.items) for ready in calls.started] == [20]


def _batch_step(controls: Controls, calls: Calls, *, max_items: int = 10) -> tuple[BatchStep, Callable[[], None]]:
    now = [0.0]
    step = BatchStep(
        calls=GateStep(account="shop", controls=controls, calls=calls),
        batcher=Batcher(max_items=max_items, max_bytes=5_000_000, linger_seconds=1.0),
        planner=None,
        quota=lambda: pytest.fail("no budget: never asked"),
        metrics=Metrics().account("shop"),
        clock=lambda: now[0],
    )

    def later() -> None:
        now[0] += 2.0

    return step, later


def _delist(number: int, collection: str, images: int) -> PendingEvent:
    return delist(number, collection=collection, images=images)


def test_a_held_collections_batches_stay_and_keep_growing_while_others_go() -> None:
    controls, calls = Controls(held={"bags"}), Calls()
    step, later = _batch_step(controls, calls)
    step.submit(_delist(0, "bags", 3))
    step.submit(_delist(1, "shoes", 2))
    later()
    assert step.seconds_until_due(2.0) == 0.0
    step.poll()
    assert [ready.batch.collection for ready in calls.started] == ["shoes"], "bags is older, and held"
    assert step.pending_items() == 3
    assert step.sendable_items() == 0
    assert step.seconds_until_due(2.0) is None, "nothing may go: the loop does not spin for a held batch"
    step.submit(_delist(2, "bags", 2))
    controls.held.clear()
    step.poll()
    assert [len(ready.batch.items) for ready in calls.started] == [2, 5], "bags went whole once resumed"


def test_the_brake_lets_a_collection_go_up_to_its_limit_and_no_further() -> None:
    controls, calls = Controls(brake=Brake(25)), Calls()
    step, later = _batch_step(controls, calls)
    for number in range(8):
        step.submit(_delist(number, "shoes", 5))
    step.submit(_delist(9, "bags", 5))
    later()
    step.poll()
    sent = Counter(ready.batch.collection for ready in calls.started for _ in ready.batch.items)
    assert sent == {"shoes": 20, "bags": 5}, "two full batches of 10; a third would make 30"
    assert controls.holds("shop", "shoes")
    assert step.pending_items() == 20


def test_no_controls_hold_nothing() -> None:
    assert not NO_CONTROLS.holds("a", "c")
    assert NO_CONTROLS.admit("c", 10**9)
    assert not NO_CONTROLS.account_paused("a")


# ---- the replica's view of the control topic ----------------------------------------------------------------


class Message:
    def __init__(self, offset: int, key: bytes, value: bytes | None) -> None:
        self._offset, self._key, self._value = offset, key, value

    def error(self) -> None:
        return None

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def offset(self) -> int:
        return self._offset


class ControlLog:
    """The one-partition control topic: a producer appends (delivered at ``poll``), a reader reads in order."""

    def __init__(self) -> None:
        self.records: list[Message] = []
        self.read = 0
        self.undelivered: list[tuple[Message, Any]] = []
        self.refuse = False
        self.closed = False

    def produce(self, topic: str, *, key: bytes, value: bytes | None, on_delivery: Any = None) -> None:
        self.undelivered.append((Message(-1, key, value), on_delivery))

    def poll(self, timeout: float) -> int:
        pending, self.undelivered = self.undelivered, []
        for message, delivered in pending:
            if self.refuse:
                delivered("refused", None)
                continue
            self.append(message.key(), message.value())
            if delivered is not None:
                delivered(None, None)
        return len(pending)

    def flush(self, timeout: float) -> int:
        self.poll(0)
        return 0

    def append(self, key: bytes, value: bytes | None) -> None:
        self.records.append(Message(len(self.records), key, value))

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        batch = self.records[self.read : self.read + num_messages]
        self.read += len(batch)
        return batch

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition("control", 0, self.read if self.read else -1001)]

    def close(self) -> None:
        self.closed = True


def _replica(
    log: ControlLog, *, limit: int = 0, end: int | None = None
) -> tuple[ReplicaControls, Metrics, list[float]]:
    metrics, now = Metrics(), [0.0]
    controls = ReplicaControls(
        member="replica-1",
        topic="control",
        reader=log,  # type: ignore[arg-type]
        end=len(log.records) if end is None else end,
        producer=log,  # type: ignore[arg-type]
        brake=Brake(limit),
        metrics=metrics.control,
        clock=lambda: now[0],
    )
    return controls, metrics, now


def _gauge(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_no_call_starts_until_the_topic_is_read_to_where_it_ended_at_start() -> None:
    log = ControlLog()
    log.append(b"collection:shoes", _stop().encode())
    log.append(b"collection:bags", _stop().encode())
    log.append(b"collection:bags", None)
    controls, metrics, _ = _replica(log)
    assert controls.holds("shop", "hats"), "nothing goes before the pauses in force are known"
    assert _gauge(metrics, "imgsweep_control_caught_up") == 0
    controls.poll()
    assert _gauge(metrics, "imgsweep_control_caught_up") == 1
    assert controls.holds("shop", "shoes")
    assert not controls.holds("shop", "bags")
    assert not controls.holds("shop", "hats")
    assert _gauge(metrics, "imgsweep_paused", kind="collection") == 1


class EndOfPartition:
    """librdkafka's partition EOF: the reader reached the end of the topic."""

    def error(self) -> KafkaError:
        return KafkaError(KafkaError._PARTITION_EOF)


def test_the_end_of_the_topic_counts_as_read_even_if_its_last_offsets_were_compacted_away() -> None:
    log = ControlLog()
    log.append(b"collection:shoes", _stop().encode())
    controls, _, _ = _replica(log, end=5)  # the high watermark: offsets 1 to 4 removed by compaction
    controls.poll()
    assert controls.holds("shop", "bags"), "position 1 of 5"
    log.records.append(EndOfPartition())  # type: ignore[arg-type]
    controls.poll()
    assert not controls.holds("shop", "bags")
    assert controls.holds("shop", "shoes")


def test_an_empty_topic_is_read_at_once_and_pauses_are_followed() -> None:
    log = ControlLog()
    controls, metrics, _ = _replica(log)
    assert not controls.holds("shop", "shoes")
    log.append(b"account:shop", _stop().encode())
    controls.poll()
    assert controls.account_paused("shop")
    assert controls.holds("shop", "shoes")
    assert _gauge(metrics, "imgsweep_paused", kind="account") == 1
    log.append(b"account:shop", None)
    log.append(b"something else", b"{}")  # not imgsweep's: ignored
    controls.poll()
    assert not controls.holds("shop", "shoes")
    assert _gauge(metrics, "imgsweep_paused", kind="account") == 0


def test_a_tripped_brake_stops_here_at_once_is_written_for_every_replica_and_a_resume_starts_its_hour_again() -> None:
    log = ControlLog()
    controls, metrics, now = _replica(log, limit=100)
    assert controls.admit("shoes", 100)
    controls.counted("shoes", 100)
    now[0] = 60.0
    assert not controls.admit("shoes", 1), "101 in the hour"
    assert controls.holds("shop", "shoes"), "at once, before the topic says so"
    assert _gauge(metrics, "imgsweep_brake_tripped", collection="shoes") == 1
    assert _gauge(metrics, "imgsweep_brake_trips_total") == 1
    controls.poll()  # delivered, and read back
    assert [(m.key(), Stop.decode(m.value() or b"").state) for m in log.records] == [(b"collection:shoes", "braked")]
    controls.poll()
    assert len(log.records) == 1, "written once"
    log.append(b"collection:shoes", None)  # imgsweep brake resume --collection shoes
    controls.poll()
    assert not controls.holds("shop", "shoes")
    assert _gauge(metrics, "imgsweep_brake_tripped", collection="shoes") is None, "its series is gone"
    assert controls.admit("shoes", 100), "its hour started again"


def test_a_trip_the_broker_refused_is_written_again() -> None:
    log = ControlLog()
    controls, _, _ = _replica(log, limit=10)
    log.refuse = True
    assert not controls.admit("shoes", 11)
    controls.poll()
    assert not log.records
    log.refuse = False
    controls.poll()  # sent again; delivered at the producer's next poll
    controls.poll()
    assert [m.key() for m in log.records] == [b"collection:shoes"]
    assert controls.holds("shop", "shoes")


def test_each_account_says_whether_its_deletions_are_paused_or_braked() -> None:
    """``imgsweep_account_stopped{account, why}``: what excuses an account's stall alerts. A paused account, a paused
    collection of it and a braked collection of it each mark the account holding them; another account stays 0; a
    collection of no account and an account imgsweep does not have mark nothing (no new series)."""
    log = ControlLog()
    metrics = Metrics(accounts=["shop", "outlet", "idle"])
    routes = {"shoes": "shop", "bags": "outlet", "hats": "outlet"}
    controls = ReplicaControls(
        member="replica-1", topic="control", reader=log, end=0, producer=log,  # type: ignore[arg-type]
        brake=Brake(100), metrics=metrics.control, account_of=routes.get, clock=lambda: 0.0,
    )  # fmt: skip

    def stopped() -> dict[tuple[str, str], float | None]:
        return {
            (account, why): _gauge(metrics, "imgsweep_account_stopped", account=account, why=why)
            for account in ("shop", "outlet", "idle", "nobody")
            for why in ("paused", "braked")
        }

    nothing = {(a, w): 0.0 for a in ("shop", "outlet", "idle") for w in ("paused", "braked")}
    assert stopped() == {**nothing, ("nobody", "paused"): None, ("nobody", "braked"): None}
    log.append(b"account:shop", _stop().encode())
    log.append(b"collection:hats", _stop().encode())
    log.append(b"collection:unowned", _stop().encode())
    log.append(b"account:nobody", _stop().encode())
    controls.poll()
    assert stopped() == {
        **nothing, ("shop", "paused"): 1.0, ("outlet", "paused"): 1.0, ("nobody", "paused"): None,
        ("nobody", "braked"): None,
    }  # fmt: skip
    assert not controls.admit("bags", 101), "over the brake's 100"
    assert _gauge(metrics, "imgsweep_account_stopped", account="outlet", why="braked") == 1, "at once, on the trip"
    log.append(b"account:shop", None)
    log.append(b"collection:hats", None)
    controls.poll()
    assert _gauge(metrics, "imgsweep_account_stopped", account="shop", why="paused") == 0
    assert _gauge(metrics, "imgsweep_account_stopped", account="outlet", why="paused") == 0
    assert _gauge(metrics, "imgsweep_account_stopped", account="outlet", why="braked") == 1
    log.append(b"collection:bags", None)  # imgsweep brake resume --collection bags
    controls.poll()
    assert _gauge(metrics, "imgsweep_account_stopped", account="outlet", why="braked") == 0


def test_the_tripped_metric_has_a_bounded_number_of_series() -> None:
    metrics = Metrics(CollectorRegistry())
    assert _gauge(metrics, "imgsweep_brake_tripped", collection="other") == 0, "always there, for alerts and panels"
    metrics.control.brakes_tripped(f"c{n:03}" for n in range(BRAKE_SERIES + 5))
    assert _gauge(metrics, "imgsweep_brake_tripped", collection="other") == 5
    assert _gauge(metrics, "imgsweep_brake_tripped", collection="c000") == 1
    metrics.control.brakes_tripped(["c001"])
    series = [s for f in metrics.registry.collect() if f.name == "imgsweep_brake_tripped" for s in f.samples]
    assert sorted((s.labels["collection"], s.value) for s in series) == [("c001", 1.0), ("other", 0.0)]


# ---- the lane: a paused account asks for no QPS -------------------------------------------------------------


def test_a_paused_accounts_demand_is_zero() -> None:
    lane_args = _lane_parts(ledger_with())
    controls = Controls()
    lane = AccountLane(lane_args[0], LaneShared(**{**lane_args[1], "controls": controls}))
    lane.submit(_delist(0, "shoes", 5))
    assert lane.demand(200) == 1
    controls.held.add("default")
    assert lane.paused()
    assert lane.demand(200) == 0
    controls.held = {"shoes"}
    assert not lane.paused()
    assert lane.demand(200) == 0, "the only images waiting are a held collection's"


def _lane_parts(ledger: Any) -> tuple[Any, dict[str, Any]]:
    settings = Settings(api={"daily_calls": -1})  # type: ignore[arg-type]
    (account,) = settings.api_accounts()
    metrics = Metrics()
    calls = AccountCalls(account, lambda batch: BatchResult(items=()), QuotaGate(UTC, clock_time(0, 0)), RateLimiter(2))
    shared = {
        "batch": settings.batch,
        "workers": Workers(HeldExecutor(), threading.Event(), threading.Event(), Halt(HealthState(), metrics)),
        "ledger": ledger,
        "metrics": metrics,
        "share_fraction": lambda: 1.0,
    }
    return calls, shared


# ---- the commands' answers ----------------------------------------------------------------------------------


@pytest.fixture
def topic(monkeypatch: pytest.MonkeyPatch) -> ControlTable:
    """The control topic as the commands see it: its table, and what they write to it."""
    table = ControlTable()
    written: list[tuple[Target, Stop | None]] = []
    monkeypatch.setattr(control_cli, "_current", lambda settings: table)
    monkeypatch.setattr(control_cli, "_write", lambda settings, target, stop: written.append((target, stop)))
    table.written = written  # type: ignore[attr-defined]
    return table


def _command(*args: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    control_cli.add_control_commands(commands, settings=Settings)
    parsed = parser.parse_args(args)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = parsed.handler(parsed)
    return code, out.getvalue(), err.getvalue()


def test_pause_and_resume_write_a_stop_and_a_tombstone(topic: ControlTable) -> None:
    written: list[tuple[Target, Stop | None]] = topic.written  # type: ignore[attr-defined]
    code, out, _ = _command("pause", "--collection", "shoes", "--reason", "bad feed")
    assert code == 0
    assert out.startswith("collection shoes paused on catalog.imgsweep.control")
    ((target, stop),) = written
    assert target == Target(Kind.COLLECTION, "shoes")
    assert stop is not None
    assert (stop.state, stop.reason) == (State.PAUSED, "bad feed")
    topic.heard(target, stop)
    assert _command("pause", "--collection", "shoes")[1].startswith("collection shoes is paused already")
    code, out, _ = _command("resume", "--collection", "shoes")
    assert (code, written[-1]) == (0, (target, None))
    assert out.startswith("collection shoes resumed")
    topic.heard(target, None)
    assert _command("resume", "--account", "shop") == (0, "account shop is not paused: nothing to do\n", "")


def test_a_brake_is_released_only_by_brake_resume(topic: ControlTable) -> None:
    written: list[tuple[Target, Stop | None]] = topic.written  # type: ignore[attr-defined]
    shoes = Target(Kind.COLLECTION, "shoes")
    topic.heard(shoes, _stop(State.BRAKED, "replica-1"))
    topic.heard(Target(Kind.ACCOUNT, "shop"), _stop())
    code, out, _ = _command("brake", "status")
    assert code == 0
    assert out.splitlines()[0] == "1 collection(s) braked: shoes"
    code, _, err = _command("resume", "--collection", "shoes")
    assert code == 2
    assert err.count("\n") == 1
    assert "imgsweep brake resume --collection shoes" in err
    assert not written
    code, out, _ = _command("brake", "resume", "--collection", "shoes")
    assert (code, written) == (0, [(shoes, None)])
    assert "its hour starts again" in out
    code, _, err = _command("brake", "resume", "--collection", "bags")
    assert code == 0
    topic.heard(Target(Kind.COLLECTION, "bags"), _stop())
    assert _command("brake", "resume", "--collection", "bags")[0] == 2, "paused, not braked"


def test_a_topic_that_cannot_be_written_is_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(settings: Settings, target: Target, stop: Stop | None) -> None:
        raise ConfigError("IMGSWEEP_KAFKA__CONTROL_TOPIC: control topic 'x': not written: broker down")

    monkeypatch.setattr(control_cli, "_current", lambda settings: ControlTable())
    monkeypatch.setattr(control_cli, "_write", refuse)
    code, out, err = _command("pause", "--account", "shop")
    assert (code, out) == (2, "")
    assert err == "imgsweep pause: IMGSWEEP_KAFKA__CONTROL_TOPIC: control topic 'x': not written: broker down\n"


# ---- the settings -------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("settings_from_the_test_only")
def test_the_brake_and_the_control_topic_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert (settings.brake.max_images_per_hour, settings.kafka.control_topic) == (20_000, "catalog.imgsweep.control")
    monkeypatch.setenv("IMGSWEEP_BRAKE__MAX_IMAGES_PER_HOUR", "0")
    assert load_settings().brake.max_images_per_hour == 0, "0: no brake"
    monkeypatch.setenv("IMGSWEEP_BRAKE__MAX_IMAGES_PER_HOUR", "-1")
    with pytest.raises(ConfigError, match="IMGSWEEP_BRAKE__MAX_IMAGES_PER_HOUR"):
        load_settings()
    monkeypatch.delenv("IMGSWEEP_BRAKE__MAX_IMAGES_PER_HOUR")
    monkeypatch.setenv("IMGSWEEP_DRY_RUN", "true")
    assert load_settings().kafka.control_topic == "catalog.imgsweep.control.dry-run", "a dry run never brakes live ones"
    monkeypatch.setenv("IMGSWEEP_KAFKA__CONTROL_TOPIC", "catalog.product-delisted")
    with pytest.raises(ConfigError, match="control_topic, budget_topic and collections_topic five more"):
        load_settings()


@pytest.mark.usefixtures("settings_from_the_test_only")
def test_the_control_topic_is_an_internal_topic_made_or_named_with_the_configs_imgsweep_gives_it() -> None:
    """What `run` makes when missing and what the probe names where it may not make it: the same topic, the same
    configs, so an operator's command and imgsweep's own creation agree (the demand topic likewise)."""
    settings = load_settings()
    topics = {topic.variable: topic for topic in internal_topics(settings, 3)}
    control = topics["IMGSWEEP_KAFKA__CONTROL_TOPIC"]
    assert control == control_topic(settings)
    assert (control.name, control.partitions, control.required) == ("catalog.imgsweep.control", 1, True)
    assert create_command(control, "kafka:9092") == (
        "kafka-topics.sh --bootstrap-server kafka:9092 --create --topic catalog.imgsweep.control --partitions 1 "
        "--config cleanup.policy=compact --config segment.ms=3600000 --config min.cleanable.dirty.ratio=0.1"
    )
    demand = topics["IMGSWEEP_KAFKA__DEMAND_TOPIC"]
    assert (demand.partitions, demand.required, demand.config) == (1, False, DEMAND_TOPIC_CONFIG)
    assert demand.config["segment.ms"] == "600000"


def test_the_account_stopped_metric_says_why_in_the_control_topics_words() -> None:
    assert tuple(State) == ACCOUNT_STOPS
