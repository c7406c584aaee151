"""The collections topic (decision 0022): the partition mapping, the origin header's round trip, and the pipeline
behind the router: outcomes name the user's record, and one account's waiting events stop only its partitions."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.pipeline.collections_topic import (
    ORIGIN_HEADER,
    CollectionPartitions,
    RecordOrigin,
    origin_header,
    split_origin,
)
from service.pipeline.outcomes import outcome_id_for
from service.pipeline.pending import SourceRecord
from service.pipeline.poison import PoisonMarks
from tests.support.kafka import FakeConsumer, FakeMessage
from tests.unit.test_processor import TOPIC, TWO_ACCOUNTS, Rig, delisted, message

collections = st.text(min_size=1, max_size=40)


@given(st.integers(1, 64), st.integers(1, 12), collections)
def test_a_collection_always_lands_on_one_partition_of_its_own_account(inputs: int, accounts: int, name: str) -> None:
    partitions = CollectionPartitions(CollectionPartitions.sized(inputs, accounts), accounts)
    assert partitions.partitions >= inputs
    assert partitions.partitions % accounts == 0
    for account in range(accounts):
        partition = partitions.partition_of(name, account)
        assert 0 <= partition < partitions.partitions
        assert partitions.account_of(partition) == account
        assert partition == partitions.partition_of(name, account)  # stable


def test_accounts_own_disjoint_partitions_and_collections_spread_over_them() -> None:
    partitions = CollectionPartitions(CollectionPartitions.sized(6, 2), 2)
    assert partitions.partitions == 6
    owned = [{p for p in range(6) if partitions.account_of(p) == account} for account in range(2)]
    assert owned == [{0, 2, 4}, {1, 3, 5}]
    used = {partitions.partition_of(f"collection-{n}", 0) for n in range(100)}
    assert used == owned[0], "100 collections of one account use all its partitions"


def test_a_topic_made_by_hand_with_too_few_partitions_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one partition per account"):
        CollectionPartitions(2, 3)
    odd = CollectionPartitions(7, 3)  # the 7th partition is never written
    assert {odd.partition_of(f"c{n}", a) for n in range(50) for a in range(3)} <= set(range(6))
    assert {odd.unroutable(p) for p in range(20)} <= set(range(6))


@given(
    st.from_regex(r"[A-Za-z0-9._-]{1,40}", fullmatch=True),
    st.integers(0, 10_000),
    st.integers(0, 2**62),
    st.none() | st.integers(1, 2**45),
    st.integers(0, 5),
)
def test_the_origin_header_round_trips(
    topic: str, partition: int, offset: int, timestamp: int | None, failures: int
) -> None:
    origin = RecordOrigin(topic, partition, offset, timestamp, failures)
    users = [("traceparent", b"00-abc"), ("x", None)]
    found, rest = split_origin([users[0], origin_header(origin), users[1]])
    assert found == origin
    assert rest == users, "the user's headers come back as they were, in order"


@pytest.mark.parametrize(
    "value", [b"", b"1:2:3", b"1:2::t", b"x:2::0:t", b"-1:2::0:t", b"1:2::-1:t", b"1:2::0:", b"\xff:1::0:t", None]
)
def test_an_unreadable_origin_is_none_and_dropped(value: bytes | None) -> None:
    assert split_origin([(ORIGIN_HEADER, value)]) == (None, [])


def forwarded(partition: int, offset: int, value: bytes, origin: RecordOrigin) -> FakeMessage:
    return FakeMessage(TOPIC, partition, offset, value, headers=[origin_header(origin)])


def test_outcomes_and_dead_letters_name_the_users_record_not_the_collections_topics() -> None:
    rig = Rig(kafka={"repartition": True})
    origin = RecordOrigin("catalog.product-delisted", 7, 1234, 1_700_000_000_000)
    rig.feed(forwarded(0, 5, delisted("a", "c1"), origin), forwarded(1, 9, b"{not json", origin))
    rig.executor.resolve("c1")
    rig.step()
    (outcome,) = rig.outcomes()
    assert outcome["source"] == {"topic": "catalog.product-delisted", "partition": 7, "offset": 1234}
    assert outcome["outcome_id"] == outcome_id_for("a", topic="catalog.product-delisted", partition=7, offset=1234)
    (headers,) = rig.dead_letters()
    assert (headers["imgsweep_source_partition"], headers["imgsweep_source_offset"]) == (b"7", b"1234")
    assert ORIGIN_HEADER not in headers
    assert rig.consumer.committed_offset(0) == 6, "the collections topic's own offsets are committed"


def two_accounts(*, repartition: bool) -> Rig:
    """Account number ``i`` (its place in ``api_accounts()``) owns the collections topic's partitions ``p % 2 == i``;
    shoes waits for its quota, with 5 events on its partition; rest has 6 on the other."""
    rig = Rig(
        consumer=FakeConsumer(TOPIC), accounts=TWO_ACCOUNTS, api={"workers": 8},
        kafka={"repartition": repartition, "max_pending_events": 3},
    )  # fmt: skip
    shoes = [account.name for account in rig.settings.api_accounts()].index("shoes")
    rig.quotas["shoes"].exhausted()
    rig.feed(*(message(shoes, offset, delisted(f"s{offset}", "shoes")) for offset in range(5)))
    rig.feed(*(message(1 - shoes, offset, delisted(f"r{offset}", f"hats{offset}")) for offset in range(6)))
    for _ in range(6):
        for batch, _future in list(rig.executor.calls):
            if batch.collection.startswith("hats"):
                rig.executor.resolve(batch.collection)
        rig.step()
    return rig


def test_an_account_waiting_for_its_quota_pauses_only_its_own_partitions() -> None:
    rig = two_accounts(repartition=True)
    shoes = [account.name for account in rig.settings.api_accounts()].index("shoes")
    assert rig.consumer.paused == {shoes}, "the waiting account's partition only"
    assert sorted(o["event_id"] for o in rig.outcomes()) == [f"r{n}" for n in range(6)]
    assert rig.consumer.committed_offset(1 - shoes) == 6, "the healthy account's partition is committed to its end"
    assert rig.consumer.committed_offset(shoes) is None, "nothing of the waiting account is committed past"
    assert not any(o["event_id"].startswith("s") for o in rig.outcomes()), "its events are not failed"


def test_without_the_router_the_waiting_account_holds_the_others_back() -> None:
    """What the router fixes (issue 21 point 2): the shared backlog is full of the waiting account's events."""
    rig = two_accounts(repartition=False)
    assert len(rig.outcomes()) < 6


DEAD: list[object] = []
"""Blocks of processes that died inside them, kept so that no ``finally`` runs."""


def test_a_record_that_stopped_the_router_counts_towards_the_pipelines_two_tries(tmp_path: Path) -> None:
    """The router forwards unread a record that killed it once, saying so in the origin: the pipeline then tries it
    once more at most, so such a record stops the process twice in all, as without the router (decision 0018)."""
    marks = PoisonMarks(tmp_path, group="g")
    origin = RecordOrigin("catalog.product-delisted", 0, 7, None, failures=1)
    record = SourceRecord("collections", 3, 41, None, b"{}", [], None, origin=origin)
    assert marks.failures(record) == 1
    assert not marks.condemned(record)
    block = marks.handling(record)
    block.__enter__()  # the process is killed inside: the block is never left
    DEAD.append(block)
    again = PoisonMarks(tmp_path, group="g")  # the next process
    assert again.failures(record) == 1 + 1
    assert again.condemned(record)
