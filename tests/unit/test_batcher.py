"""Batching by collection: size, bytes and linger flushes, merging, fairness, discarding revoked work."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from service.api.client import encode_body
from service.api.models import DeleteBatch, DeleteItem
from service.pipeline.batcher import Batcher, ReadyBatch, body_overhead, item_bytes
from service.vocabulary import FlushReason


def items(n: int, product: str = "p") -> list[DeleteItem]:
    return [DeleteItem(product, f"{i}.jpg") for i in range(n)]


def test_a_backlog_of_3000_images_makes_exactly_15_full_calls() -> None:
    batcher: Batcher[str] = Batcher(max_items=200, max_bytes=5 * 1024 * 1024, linger_seconds=2)
    for n, item in enumerate(items(3000)):
        batcher.add("shop", item, f"event-{n // 30}", now=0)
    taken = []
    while (ready := batcher.take(now=0)) is not None:
        taken.append(ready)
    assert [len(r.batch.items) for r in taken] == [200] * 15
    assert {r.flush_reason for r in taken} == {FlushReason.SIZE}
    assert batcher.pending_items() == 0


def test_partial_batches_wait_for_linger_then_flush() -> None:
    batcher: Batcher[str] = Batcher(max_items=200, max_bytes=10_000_000, linger_seconds=2)
    for item in items(5):
        batcher.add("shop", item, "e", now=10)
    assert batcher.take(now=11) is None
    assert batcher.seconds_until_due(11) == 1
    ready = batcher.take(now=12)
    assert ready is not None
    assert ready.flush_reason is FlushReason.LINGER
    assert len(ready.batch.items) == 5


def test_a_lingered_batch_keeps_filling_until_taken() -> None:
    batcher: Batcher[str] = Batcher(max_items=200, max_bytes=10_000_000, linger_seconds=1)
    batcher.add("shop", DeleteItem("p", "1"), "e1", now=0)
    batcher.add("shop", DeleteItem("p", "2"), "e2", now=5)  # after the linger ran out, before a worker was free
    ready = batcher.take(now=5)
    assert ready is not None
    assert len(ready.batch.items) == 2


def test_collections_are_batched_apart_and_handed_out_oldest_first() -> None:
    batcher: Batcher[str] = Batcher(max_items=200, max_bytes=10_000_000, linger_seconds=1)
    batcher.add("b", DeleteItem("p", "1"), "e1", now=0)
    batcher.add("a", DeleteItem("p", "1"), "e2", now=0.5)
    batcher.add("b", DeleteItem("p", "2"), "e3", now=0.6)
    first, second = batcher.take(now=2), batcher.take(now=2)
    assert first is not None
    assert second is not None
    assert (first.batch.collection, len(first.batch.items)) == ("b", 2)
    assert (second.batch.collection, len(second.batch.items)) == ("a", 1)


def test_the_same_image_twice_is_one_item_with_two_waiters() -> None:
    batcher: Batcher[str] = Batcher(max_items=200, max_bytes=10_000_000, linger_seconds=0)
    batcher.add("shop", DeleteItem("p", "1"), "e1", now=0)
    batcher.add("shop", DeleteItem("p", "1"), "e2", now=0)
    ready = batcher.take(now=0)
    assert ready is not None
    assert ready.batch.items == (DeleteItem("p", "1"),)
    assert ready.waiters[DeleteItem("p", "1")] == ["e1", "e2"]


def test_the_byte_limit_cuts_a_batch_before_the_body_would_pass_it() -> None:
    big = [DeleteItem("p" * 100, f"{'x' * 200}-{i:03d}") for i in range(50)]
    limit = body_overhead("shop") + sum(item_bytes(item) for item in big[:10])
    batcher: Batcher[str] = Batcher(max_items=200, max_bytes=limit, linger_seconds=99)
    for item in big:
        batcher.add("shop", item, "e", now=0)
    sizes = []
    while (ready := batcher.take(now=0)) is not None:
        sizes.append(len(ready.batch.items))
        assert len(encode_body(ready.batch)) <= limit
        if ready.flush_reason is not FlushReason.BYTES:
            break
    assert sizes[:4] == [10, 10, 10, 10]


def test_discarding_revoked_waiters_drops_items_nobody_waits_for() -> None:
    batcher: Batcher[str] = Batcher(max_items=200, max_bytes=10_000_000, linger_seconds=0)
    batcher.add("shop", DeleteItem("p", "1"), "keep", now=0)
    batcher.add("shop", DeleteItem("p", "1"), "revoked", now=0)
    batcher.add("shop", DeleteItem("p", "2"), "revoked", now=0)
    batcher.add("other", DeleteItem("p", "3"), "revoked", now=0)
    assert batcher.discard_waiters(lambda waiter: waiter == "revoked") == 2
    assert batcher.pending_items() == 1
    ready = batcher.take(now=0)
    assert ready is not None
    assert ready.waiters == {DeleteItem("p", "1"): ["keep"]}
    assert batcher.take(now=0) is None


def test_draining_takes_everything() -> None:
    batcher: Batcher[str] = Batcher(max_items=200, max_bytes=10_000_000, linger_seconds=60)
    batcher.add("shop", DeleteItem("p", "1"), "e", now=0)
    assert batcher.take(now=0) is None
    ready = batcher.take(now=0, drain=True)
    assert ready is not None
    assert ready.flush_reason is FlushReason.SHUTDOWN


ids = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=40)  # any text, quotes too


@settings(max_examples=200, deadline=None)
@given(
    adds=st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), ids, ids), max_size=400),
    max_items=st.integers(1, 200),
    max_bytes=st.integers(2000, 20_000),
)
def test_every_item_goes_out_once_within_the_limits(
    adds: list[tuple[str, str, str]], max_items: int, max_bytes: int
) -> None:
    batcher: Batcher[int] = Batcher(max_items=max_items, max_bytes=max_bytes, linger_seconds=0)
    expected: dict[tuple[str, DeleteItem], set[int]] = {}
    for n, (collection, product, image) in enumerate(adds):
        item = DeleteItem(product, image)
        batcher.add(collection, item, n, now=0)
        expected.setdefault((collection, item), set()).add(n)
    seen: dict[tuple[str, DeleteItem], set[int]] = {}
    while (ready := batcher.take(now=0)) is not None:
        batch: DeleteBatch = ready.batch
        assert 1 <= len(batch.items) <= max_items
        body = encode_body(batch)
        assert len(body) <= max_bytes
        # The batcher's byte count is exact: the items' sizes (each with its comma) less the last comma.
        assert len(body) == body_overhead(batch.collection) + sum(item_bytes(i) for i in batch.items) - 1
        json.loads(body)
        for item in batch.items:
            seen.setdefault((batch.collection, item), set()).update(ready.waiters[item])
    assert seen == expected


# --- put_back: a batch taken when no call could start after all ----------------------------------------------------


def _snapshot(ready: ReadyBatch[Any]) -> tuple[object, ...]:
    return (
        ready.batch,
        list(ready.waiters.items()),
        list(ready.attempts.items()),
        ready.flush_reason,
        ready.created_at,
        ready.sequence,
    )


def test_a_full_batch_put_back_is_the_next_taken_as_it_was() -> None:
    batcher: Batcher[str] = Batcher(max_items=3, max_bytes=10_000_000, linger_seconds=60)
    batcher.add("shop", DeleteItem("p", "1"), "e1", now=0, attempt=2)
    batcher.add("shop", DeleteItem("p", "1"), "e2", now=0)
    batcher.add("shop", DeleteItem("p", "2"), "e3", now=0)
    batcher.add("shop", DeleteItem("p", "3"), "e3", now=0, attempt=3)
    batcher.add("other", DeleteItem("p", "9"), "e4", now=0)  # full later: must not jump ahead
    batcher.add("other", DeleteItem("p", "8"), "e4", now=0)
    batcher.add("other", DeleteItem("p", "7"), "e4", now=0)
    ready = batcher.take(now=0)
    assert ready is not None
    before = _snapshot(ready)
    assert batcher.pending_items() == 3

    batcher.put_back(ready)
    assert batcher.pending_items() == 6
    batcher.add("shop", DeleteItem("p", "4"), "e5", now=1)  # a full batch takes nothing more: a new one opens
    again = batcher.take(now=1)
    assert again is not None
    assert _snapshot(again) == before
    assert list(again.waiters) == [DeleteItem("p", "1"), DeleteItem("p", "2"), DeleteItem("p", "3")]
    assert again.waiters[DeleteItem("p", "1")] == ["e1", "e2"]
    assert again.attempts == {DeleteItem("p", "1"): 2, DeleteItem("p", "2"): 1, DeleteItem("p", "3"): 3}
    other = batcher.take(now=1)
    assert other is not None
    assert other.batch.collection == "other"
    assert batcher.pending_items() == 1
    assert batcher.take(now=1) is None  # the new "shop" batch lingers


def test_an_open_batch_put_back_keeps_filling() -> None:
    batcher: Batcher[str] = Batcher(max_items=4, max_bytes=10_000_000, linger_seconds=1)
    batcher.add("shop", DeleteItem("p", "1"), "e1", now=0)
    batcher.add("shop", DeleteItem("p", "2"), "e2", now=0)
    ready = batcher.take(now=2)
    assert ready is not None
    assert ready.flush_reason is FlushReason.LINGER
    batcher.put_back(ready)
    assert batcher.pending_items() == 2
    batcher.add("shop", DeleteItem("p", "3"), "e3", now=3)
    batcher.add("shop", DeleteItem("p", "1"), "e4", now=3, attempt=2)  # already in it: one more waiter
    assert batcher.pending_items() == 3
    again = batcher.take(now=3)
    assert again is not None
    assert again.flush_reason is FlushReason.LINGER
    assert again.batch.items == (DeleteItem("p", "1"), DeleteItem("p", "2"), DeleteItem("p", "3"))
    assert again.batch.batch_id == ready.batch.batch_id
    assert again.waiters[DeleteItem("p", "1")] == ["e1", "e4"]
    assert again.attempts[DeleteItem("p", "1")] == 2
    assert batcher.pending_items() == 0
    assert batcher.take(now=3) is None


def test_an_open_batch_put_back_fills_up_and_goes_out_full() -> None:
    batcher: Batcher[str] = Batcher(max_items=3, max_bytes=10_000_000, linger_seconds=1)
    batcher.add("shop", DeleteItem("p", "1"), "e", now=0)
    ready = batcher.take(now=0, drain=True)
    assert ready is not None
    assert ready.flush_reason is FlushReason.SHUTDOWN
    batcher.put_back(ready)
    assert batcher.take(now=0) is None  # not draining, not lingered long enough: it waits again
    assert batcher.seconds_until_due(0) == 1
    batcher.add("shop", DeleteItem("p", "2"), "e", now=0)
    batcher.add("shop", DeleteItem("p", "3"), "e", now=0)
    batcher.add("shop", DeleteItem("p", "4"), "e", now=0)
    full = batcher.take(now=0)
    assert full is not None
    assert (full.flush_reason, full.batch.batch_id) == (FlushReason.SIZE, ready.batch.batch_id)
    assert [item.image_id for item in full.batch.items] == ["1", "2", "3"]
    assert batcher.pending_items() == 1


def test_a_batch_put_back_after_its_collection_opened_another_stays_apart() -> None:
    batcher: Batcher[str] = Batcher(max_items=10, max_bytes=10_000_000, linger_seconds=1)
    batcher.add("shop", DeleteItem("p", "1"), "e", now=0)
    ready = batcher.take(now=1)
    assert ready is not None
    batcher.add("shop", DeleteItem("p", "2"), "e", now=1)  # opened while the first was out
    batcher.put_back(ready)
    batcher.add("shop", DeleteItem("p", "3"), "e", now=1)
    first, second = batcher.take(now=5), batcher.take(now=5)
    assert first is not None
    assert second is not None
    assert first.batch.items == (DeleteItem("p", "1"),)  # the older one first, unchanged
    assert second.batch.items == (DeleteItem("p", "2"), DeleteItem("p", "3"))
    assert batcher.pending_items() == 0


@settings(max_examples=100, deadline=None)
@given(
    adds=st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 30), st.integers(1, 3)), max_size=120),
    refusals=st.lists(st.booleans(), max_size=60),
    max_items=st.integers(1, 12),
)
def test_batches_put_back_go_out_the_same_and_in_the_same_order(
    adds: list[tuple[str, int, int]], refusals: list[bool], max_items: int
) -> None:
    """Two batchers fed alike; one has every other take refused and put back: both hand out the same calls."""
    plain: Batcher[int] = Batcher(max_items=max_items, max_bytes=10_000_000, linger_seconds=1)
    refused: Batcher[int] = Batcher(max_items=max_items, max_bytes=10_000_000, linger_seconds=1)
    for n, (collection, image, attempt) in enumerate(adds):
        for batcher in (plain, refused):
            batcher.add(collection, DeleteItem("p", str(image)), n, now=n / 10, attempt=attempt)
        if refusals and refusals[n % len(refusals)]:
            ready = refused.take(now=n / 10)
            if ready is not None:
                refused.put_back(ready)
        assert refused.pending_items() == plain.pending_items()
    now = len(adds) / 10 + 2
    while (expected := plain.take(now)) is not None:
        assert refused.pending_items() == plain.pending_items() + len(expected.batch.items)
        ready = refused.take(now)
        assert ready is not None
        assert _snapshot(ready)[:3] == _snapshot(expected)[:3]
        refused.put_back(ready)
        ready = refused.take(now)
        assert ready is not None
        assert _snapshot(ready) == _snapshot(expected)
    assert refused.take(now) is None
    assert refused.pending_items() == plain.pending_items() == 0
