"""Answers in hand for lost partitions (``service.pipeline.kept``), wired, with exactly-once's stand-ins.

A loss (a Kafka outage past the session timeout) aborts the open transaction; when the same partitions come back
with the group's committed position unmoved, the answers it carried are produced again without calling the API;
when another owner committed meanwhile, they are discarded and that owner's work stands.
"""

from __future__ import annotations

import json

from service.pipeline.kept import LostAnswers
from tests.support.kafka import FakeMessage
from tests.unit.test_transaction import TOPIC, Rig, delisted


def relisted(event_id: str, collection: str, image: str) -> bytes:
    document = {
        "type": "com.example.product.relisted",
        "event_id": event_id,
        "collection_name": collection,
        "product_id": "p",
        "image_ids": [image],
    }
    return json.dumps(document).encode()


def read_again(rig: Rig, *values: tuple[int, int, bytes]) -> None:
    """The consumer reads from the committed offsets again: the same records come back."""
    rig.feed(*values)


def answered_then_lost(rig: Rig, *partitions: int) -> int:
    """Both events answered, their outcomes in the open transaction, then the partitions lost; returns the calls."""
    rig.feed((0, 0, delisted("a", "c1")), (1, 0, delisted("b", "c2")))
    calls = len(rig.executor.calls)
    rig.executor.resolve("c1")
    rig.executor.resolve("c2")
    rig.pipeline._turn()  # both outcomes (and the memory's changes) in the open transaction, not committed
    assert rig.committed_outcomes() == []
    rig.consumer.lose(*partitions)
    rig.pipeline._commit.commit()  # the transaction is aborted: nothing of the lost partitions commits
    assert "a" not in rig.committed_outcomes()
    return calls


def deletions(rig: Rig) -> list[bytes | None]:
    """The memory of deletions' changes a read_committed reader of its changelog sees."""
    return [value for topic, value, _ in rig.producer.committed if topic == rig.settings.kafka.deletions_topic]


def test_answers_in_hand_are_used_again_when_the_same_partitions_come_back_unmoved() -> None:
    rig = Rig()
    calls = answered_then_lost(rig, 0, 1)
    assert calls == 2
    rig.consumer.assign(0, 1)  # the cluster is back: the same partitions, nobody committed them meanwhile
    read_again(rig, (0, 0, delisted("a", "c1")), (1, 0, delisted("b", "c2")))
    assert rig.executor.calls == [], "no call made again"
    rig.step()
    assert sorted(rig.committed_outcomes()) == ["a", "b"], "each once"
    assert rig.consumer.position(0) == (1, "")
    assert rig.consumer.position(1) == (1, "")
    assert rig.metrics.events_skipped.labels("already_done")._value.get() == 2
    assert len(deletions(rig)) == 2, "the memory's changes are written again"
    # The memory of deletions has them back: a relist of a product deleted before the loss gets its outcome.
    rig.feed((0, 1, relisted("r", "c1", "a")))
    rig.step()
    topic = rig.settings.kafka.outcome_topic
    outcomes = [json.loads(value or b"") for name, value, _ in rig.producer.committed if name == topic]
    relist = [outcome for outcome in outcomes if outcome["event_id"] == "r"]
    assert [outcome["status"] for outcome in relist] == ["re_add_required"]
    assert [image["image_id"] for image in relist[0]["images"]] == ["a"]


def test_answers_are_discarded_when_another_owner_committed_the_partition_meanwhile() -> None:
    rig = Rig()
    answered_then_lost(rig, 0, 1)
    rig.consumer.commits.append({0: (1, "")})  # another replica did offset 0 and committed it
    rig.consumer.assign(0, 1)
    rig.feed((0, 1, delisted("c", "c3")), (1, 0, delisted("b", "c2")))  # partition 0 resumes after its commit
    assert [batch.collection for batch, _ in rig.executor.calls] == ["c3"], "b's answer was kept, a's not needed"
    rig.executor.resolve("c3")
    rig.step()
    assert sorted(rig.committed_outcomes()) == ["b", "c"], "a's outcome is the other owner's"
    assert rig.consumer.position(0) == (2, "")


def test_answers_of_a_partition_committed_since_the_loss_are_discarded_even_at_the_same_offset() -> None:
    rig = Rig()
    answered_then_lost(rig, 0)
    rig.consumer.commits.append({0: (0, "1")})  # another owner committed, its metadata naming an offset done
    rig.consumer.assign(0)
    rig.feed((0, 0, delisted("a", "c1")))
    assert [batch.collection for batch, _ in rig.executor.calls] == ["c1"], "the kept answer is not used"


def test_answers_are_kept_within_their_bound_and_dropped_after_a_while() -> None:
    rig = Rig()
    now = [0.0]
    keeper = rig.pipeline._rebalance._kept
    assert isinstance(keeper, LostAnswers)
    keeper._clock = lambda: now[0]
    keeper._max_bytes = 1  # nothing fits
    answered_then_lost(rig, 0, 1)
    assert keeper.partitions == frozenset(), "over the bound: not kept"

    rig = Rig()
    keeper = rig.pipeline._rebalance._kept
    assert isinstance(keeper, LostAnswers)
    keeper._clock = lambda: now[0]
    answered_then_lost(rig, 0, 1)
    assert keeper.partitions == {0, 1}
    now[0] += keeper._keep_seconds + 1
    rig.consumer.assign(0, 1)
    assert keeper.partitions == frozenset()
    read_again(rig, (0, 0, delisted("a", "c1")))
    assert [batch.collection for batch, _ in rig.executor.calls] == ["c1"], "dropped: called again"


def test_a_relists_outcome_among_the_answers_keeps_the_partition_from_being_recalled() -> None:
    rig = Rig()
    rig.feed((0, 0, delisted("a", "c1")))
    rig.executor.resolve("c1")
    rig.step()  # a committed: its deletion remembered
    rig.feed((0, 1, relisted("r", "c1", "a")))  # its outcome (re_add_required) in the open transaction
    rig.consumer.lose(0)
    keeper = rig.pipeline._rebalance._kept
    assert isinstance(keeper, LostAnswers)
    assert keeper.partitions == frozenset(), "the relist is read again, in order, to cancel what it must"


def test_kept_offsets_are_produced_in_order_with_the_records_read_after_them() -> None:
    rig = Rig()
    answered_then_lost(rig, 0, 1)
    rig.consumer.assign(0, 1)
    rig.consumer.queue.append(FakeMessage(TOPIC, 0, 0, delisted("a", "c1")))
    rig.feed((0, 1, delisted("d", "c4")))
    assert [batch.collection for batch, _ in rig.executor.calls] == ["c4"]
    rig.step()
    assert rig.committed_outcomes() == ["a"]
    assert rig.consumer.position(0) == (1, ""), "d holds the watermark until its call is answered"
    rig.executor.resolve("c4")
    rig.step()
    assert rig.committed_outcomes() == ["a", "d"]
    assert rig.consumer.position(0) == (2, "")


def test_answers_recalled_and_not_yet_read_again_are_kept_through_a_second_loss() -> None:
    rig = Rig()
    answered_then_lost(rig, 0, 1)
    rig.consumer.assign(0, 1)
    rig.pipeline._turn()  # the memory's changes go into the transaction; nothing read again yet
    rig.consumer.lose(0, 1)  # the outage goes on: lost again
    rig.pipeline._commit.commit()
    rig.consumer.assign(0, 1)
    read_again(rig, (0, 0, delisted("a", "c1")), (1, 0, delisted("b", "c2")))
    assert rig.executor.calls == [], "no call made again"
    rig.step()
    assert sorted(rig.committed_outcomes()) == ["a", "b"]
    assert len(deletions(rig)) == 2
