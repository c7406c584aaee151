"""replay-dlq's pure parts: which dead letters a run replays, passes over or leaves, and its default group."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import cast

import pytest
from confluent_kafka import Consumer, TopicPartition

from service.cli import main
from service.replay import ReplayFilter, _commit, _Progress, default_group

AT = datetime(2026, 11, 27, 12, tzinfo=UTC)


def letter(
    error_class: str = "item_failed", at: str | None = "2026-11-27T12:00:00+00:00"
) -> list[tuple[str, bytes | None]]:
    headers: list[tuple[str, bytes | None]] = [("trace", b"1"), ("imgsweep_error_class", error_class.encode())]
    if at is not None:
        headers.append(("imgsweep_dead_lettered_at", at.encode()))
    return headers


def test_without_filters_every_dead_letter_is_replayed() -> None:
    assert ReplayFilter().verdict(letter()) == "replay"
    assert ReplayFilter().verdict([]) == "replay"


def test_other_error_classes_are_passed_over() -> None:
    selection = ReplayFilter(error_classes=frozenset({"retries_exhausted", "item_failed"}))
    assert selection.verdict(letter("item_failed")) == "replay"
    assert selection.verdict(letter("invalid_json")) == "pass"
    assert selection.verdict(letter("")) == "pass"


def test_a_time_window_passes_over_older_letters_and_stops_at_later_ones() -> None:
    selection = ReplayFilter(since=AT, until=datetime(2026, 11, 27, 13, tzinfo=UTC))
    assert selection.verdict(letter(at="2026-11-27T11:59:59+00:00")) == "pass"
    assert selection.verdict(letter(at="2026-11-27T12:00:00+00:00")) == "replay"
    assert selection.verdict(letter(at="2026-11-27T20:59:59+08:00")) == "replay"
    assert selection.verdict(letter(at="2026-11-27T13:00:00+00:00")) == "stop"
    assert selection.verdict(letter(at=None)) == "pass"
    assert selection.verdict(letter(at="yesterday")) == "pass"
    assert selection.verdict(letter(at="2026-11-27T12:30:00")) == "pass"  # no zone: cannot be placed


def test_the_time_window_comes_before_the_class() -> None:
    selection = ReplayFilter(error_classes=frozenset({"retries_exhausted"}), until=AT)
    assert selection.verdict(letter("item_failed", at="2026-11-27T12:00:01+00:00")) == "stop"
    assert selection.verdict(letter("item_failed", at="2026-11-27T11:00:00+00:00")) == "pass"


def test_the_default_group_follows_the_service_group_and_the_classes_chosen() -> None:
    assert default_group("imgsweep", frozenset()) == "imgsweep.replay-dlq"
    assert default_group("imgsweep", frozenset({"retries_exhausted"})) == "imgsweep.replay-dlq.retries_exhausted"
    assert (
        default_group("shop-a", frozenset({"retries_exhausted", "item_failed"}))
        == "shop-a.replay-dlq.item_failed+retries_exhausted"
    )


class CommitRecorder:
    """Stands in for the consumer's commit: what was committed, in order."""

    def __init__(self) -> None:
        self.commits: list[tuple[list[tuple[int, int]], bool]] = []

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.commits.append(([(tp.partition, tp.offset) for tp in offsets], asynchronous))


def test_the_position_passes_what_is_read_and_acknowledged_but_never_a_copy_in_flight_or_refused() -> None:
    consumer = CommitRecorder()
    progress = {0: _Progress(read_up_to=10, end=20, committed=10, started_at=10), 1: _Progress(5, 9, -1, -1)}
    commit = partial(_commit, cast("Consumer", consumer), "dlq", progress)

    commit(asynchronous=True)
    assert consumer.commits == [([(1, 5)], True)]  # a group with no position yet gets its start
    progress[0].read_up_to = 13  # 10 passed over, 11 and 12 replayed, not acknowledged yet
    progress[0].inflight.update({11, 12})
    commit(asynchronous=True)
    assert consumer.commits[-1] == ([(0, 11)], True)
    progress[0].inflight.discard(12)  # acknowledged, but 11 is still in flight
    commit(asynchronous=True)
    assert len(consumer.commits) == 2
    progress[0].inflight.discard(11)
    progress[0].refused.add(11)  # the broker refused the copy of 11: the next run starts there
    commit(asynchronous=True)
    assert len(consumer.commits) == 2
    commit(asynchronous=False)  # the last commit again, synchronously, from where the run started
    assert consumer.commits[-1] == ([(0, 11), (1, 5)], False)


def test_replay_refuses_to_run_in_dry_run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A dry run's dead letters (its .dry-run topic) must not be put on the live input topic."""
    monkeypatch.setenv("IMGSWEEP_DRY_RUN", "true")
    assert main(["replay-dlq"]) == 2
    assert "IMGSWEEP_DRY_RUN" in capsys.readouterr().err
