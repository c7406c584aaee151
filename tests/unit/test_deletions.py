"""The memory of deletions (service.pipeline.deletions): pure, on a clock the test moves."""

from __future__ import annotations

import gc
import json
import tracemalloc
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.pipeline.deletions import DeletionMemory

DAY_MS = 86_400_000


class Wall:
    def __init__(self) -> None:
        self.ms = 1_800_000_000_000

    def __call__(self) -> int:
        return self.ms


def memory(wall: Wall, *, days: float = 7, products: int = 1_000) -> DeletionMemory:
    return DeletionMemory(window_seconds=days * 86_400, max_products=products, wall_ms=wall)


def test_a_deletion_is_told_once_to_its_relist_with_a_tombstone_for_the_changelog() -> None:
    wall = Wall()
    remembered = memory(wall)
    first = remembered.deleted(3, "shoes", "p1", ["a.jpg"])
    second = remembered.deleted(3, "shoes", "p1", ["b.jpg"])
    assert (first.partition, first.key) == (3, b'["shoes","p1"]')
    assert json.loads(second.value or b"") == {"at": wall.ms, "images": ["a.jpg", "b.jpg"]}
    assert len(remembered) == 1
    images, tombstone = remembered.take(3, ("shoes", "p1"))
    assert images == ["a.jpg", "b.jpg"]
    assert tombstone is not None
    assert (tombstone.partition, tombstone.key, tombstone.value) == (3, b'["shoes","p1"]', None)
    assert remembered.take(3, ("shoes", "p1")) == ([], None), "told once"
    assert len(remembered) == 0


def test_past_the_window_nothing_is_told_and_the_entry_goes() -> None:
    wall = Wall()
    remembered = memory(wall, days=7)
    remembered.deleted(0, "shoes", "p1", ["a.jpg"])
    wall.ms += 7 * DAY_MS + 1
    images, tombstone = remembered.take(0, ("shoes", "p1"))
    assert images == []
    assert tombstone is not None, "the changelog forgets it too"


def test_a_relist_on_another_partition_finds_nothing() -> None:
    remembered = memory(Wall())
    remembered.deleted(0, "shoes", "p1", ["a.jpg"])
    assert remembered.take(1, ("shoes", "p1")) == ([], None)


def test_restore_replays_the_changelog_keeping_the_last_record_and_dropping_tombstones_and_old_ones() -> None:
    wall = Wall()
    source = memory(wall)
    changelog = [source.deleted(2, "shoes", "p1", ["a.jpg"])]
    changelog.append(source.deleted(2, "shoes", "p2", ["b.jpg"]))
    changelog.append(source.take(2, ("shoes", "p2"))[1])  # type: ignore[arg-type]
    changelog.append(source.deleted(2, "hats", "p3", ["c.jpg"]))
    old = {"at": wall.ms - 8 * DAY_MS, "images": ["z.jpg"]}
    records: list[tuple[bytes | None, bytes | None]] = [(r.key, r.value) for r in changelog if r is not None]
    records += [(b'["shoes","old"]', json.dumps(old).encode()), (b"not json", b"{}"), (None, b"{}")]
    restored = memory(wall)
    assert restored.restore(2, records) == 2
    assert restored.take(2, ("shoes", "p1"))[0] == ["a.jpg"]
    assert restored.take(2, ("shoes", "p2"))[0] == []
    assert restored.take(2, ("hats", "p3"))[0] == ["c.jpg"]
    assert restored.take(2, ("shoes", "old"))[0] == []


def test_restore_over_what_is_remembered_applies_tombstones_and_newer_records() -> None:
    """Answers kept through a lost partition: their changes go over the memory read back from the changelog."""
    wall = Wall()
    remembered = memory(wall)
    remembered.deleted(1, "shoes", "p1", ["a.jpg"])
    remembered.deleted(1, "shoes", "p2", ["b.jpg"])
    kept = memory(wall)
    kept.deleted(1, "shoes", "p1", ["a.jpg"])
    tombstone = kept.take(1, ("shoes", "p1"))[1]
    newer = kept.deleted(1, "shoes", "p2", ["c.jpg"])
    assert tombstone is not None
    assert remembered.restore(1, [(tombstone.key, tombstone.value), (newer.key, newer.value)]) == 1
    assert remembered.take(1, ("shoes", "p1")) == ([], None), "forgotten by the tombstone"
    assert remembered.take(1, ("shoes", "p2"))[0] == ["c.jpg"]


def test_forgetting_a_partition_frees_its_products() -> None:
    remembered = memory(Wall())
    for n in range(5):
        remembered.deleted(n % 2, "shoes", f"p{n}", ["a.jpg"])
    remembered.forget([0])
    assert len(remembered) == 2
    assert remembered.take(1, ("shoes", "p1"))[0] == ["a.jpg"]


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 50)), max_size=300), st.integers(1, 20))
def test_the_memory_never_holds_more_products_than_its_bound(deletions: list[tuple[int, int]], bound: int) -> None:
    remembered = DeletionMemory(window_seconds=86_400, max_products=bound, wall_ms=Wall())
    for partition, product in deletions:
        remembered.deleted(partition, "c", f"p{product}", ["i"])
        assert len(remembered) <= bound
        assert remembered.take(partition, ("c", f"p{product}"))[0] == ["i"], "the newest is never the one dropped"
        remembered.deleted(partition, "c", f"p{product}", ["i"])


@pytest.mark.parametrize(("images", "ceiling"), [(1, 300), (4, 360)])
def test_a_product_costs_at_most_its_ceiling_of_bytes(images: int, ceiling: int) -> None:
    """The bound is sized in products (docs/performance.md, "Memory of deletions"): what one costs, measured with
    tracemalloc, ids of the sample stream's lengths, each a new string as a decoded event's are. 5,500 products:
    just past the map's doubling, where an entry costs the most (232 and 286 bytes). A dataclass holding a dict of
    image ids under tuple keys cost 635 and 833 bytes here."""
    products = 5_500
    remembered = DeletionMemory(window_seconds=86_400, max_products=2 * products, wall_ms=Wall())
    events = [
        json.dumps({"c": "apparel", "p": str(10**10 + n), "i": [f"{10**10 + n}-{i}.jpg" for i in range(images)]})
        for n in range(products)
    ]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for raw in events:
            event = json.loads(raw)
            remembered.deleted(0, event["c"], event["p"], event["i"])
        del event
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(remembered) == products
    assert used / products <= ceiling


def test_a_restore_applies_each_record_as_it_is_read_never_holding_more_than_the_bound() -> None:
    """A reader's stream: record n is read only once the n before it are remembered (at most the bound)."""
    wall = Wall()
    source = memory(wall, products=100)
    written = [source.deleted(0, "shoes", f"p{n}", [f"{n}.jpg"]) for n in range(100)]
    restored = memory(wall, products=30)
    seen: list[int] = []

    def stream() -> Iterator[tuple[bytes | None, bytes | None]]:
        for record in written:
            seen.append(len(restored))
            yield record.key, record.value

    assert restored.restore(0, stream()) == 30
    assert seen == [min(n, 30) for n in range(100)]
    assert restored.take(0, ("shoes", "p99"))[0] == ["99.jpg"], "the newest kept"
    assert restored.take(0, ("shoes", "p69"))[0] == [], "the oldest forgotten first"


_ids = st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=12)


@given(st.lists(st.tuples(_ids, _ids, st.lists(_ids, max_size=4)), max_size=8), st.booleans())
def test_a_restore_reads_any_json_form_of_a_record_as_deleted_wrote_it(
    products: list[tuple[str, str, list[str]]], spaced: bool
) -> None:
    """What ``deleted`` writes is read back by patterns, any other JSON form of it by a parser: the same memory."""
    wall = Wall()
    source = memory(wall)
    records: list[tuple[bytes | None, bytes | None]] = []
    for collection, product_id, images in products:
        record = source.deleted(1, collection, product_id, images)
        if spaced:  # as another writer might: spaces, \\u escapes
            key, value = json.dumps(json.loads(record.key)).encode(), json.dumps(json.loads(record.value or b""))
            records.append((key, value.encode()))
        else:
            records.append((record.key, record.value))
    restored = memory(wall)
    assert restored.restore(1, records) == len(source)
    for collection, product_id, _ in products:
        assert restored.take(1, (collection, product_id)) == source.take(1, (collection, product_id))


def test_an_image_id_holding_nul_is_refused() -> None:
    """Events refuse control characters; the memory joins ids with NUL, so one holding it would come back as two."""
    remembered = memory(Wall())
    with pytest.raises(ValueError, match="NUL"):
        remembered.deleted(0, "shoes", "p1", ["a\0b.jpg"])
    assert len(remembered) == 0
    record = (b'["shoes","p1"]', json.dumps({"at": Wall().ms, "images": ["a\0b.jpg"]}).encode())
    assert remembered.restore(0, [record]) == 0, "a changelog record holding one is skipped"


def test_a_record_another_writer_made_is_read_as_the_old_memory_read_it() -> None:
    """Duplicate ids told once, a time past what an int holds refused, spaces and escapes read."""
    wall = Wall()
    remembered = memory(wall)
    records: list[tuple[bytes | None, bytes | None]] = [
        (b'["shoes","p1"]', b'{"at":%d,"images":["a.jpg","a.jpg","b.jpg"]}' % wall.ms),
        (b'["shoes","p2"]', b'{"at":' + b"9" * 5000 + b',"images":["a.jpg"]}'),
        (b'[ "shoes", "p\\u0033" ]', b'{"images": ["c\\u002ejpg"], "at": %d}' % wall.ms),
    ]
    assert remembered.restore(0, records) == 2
    assert remembered.take(0, ("shoes", "p1"))[0] == ["a.jpg", "b.jpg"]
    assert remembered.take(0, ("shoes", "p3"))[0] == ["c.jpg"]
