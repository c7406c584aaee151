"""The memory of deletions (service.pipeline.deletions): pure, on a clock the test moves."""

from __future__ import annotations

import json

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
