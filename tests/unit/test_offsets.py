"""The commit watermark never passes an event whose records the broker has not acknowledged."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.pipeline.offsets import PartitionOffsets


def test_watermark_moves_only_over_a_finished_prefix() -> None:
    offsets = PartitionOffsets()
    for offset in (5, 6, 7):
        offsets.track(offset)
    offsets.published(6, 1)
    offsets.acknowledged(6)
    assert offsets.committable() is None  # 5 is not finished
    offsets.published(5, 2)  # outcome and dead-letter copy
    offsets.acknowledged(5)
    assert offsets.committable() is None
    offsets.acknowledged(5)
    assert offsets.committable() == 7  # 5 and 6 done: the next offset to read is 7
    offsets.published(7, 1)
    assert offsets.committable() == 7
    offsets.acknowledged(7)
    assert offsets.committable() == 8
    assert offsets.outstanding() == 0


def test_misuse_is_loud() -> None:
    offsets = PartitionOffsets()
    offsets.track(3)
    with pytest.raises(ValueError, match="out of order"):
        offsets.track(2)
    with pytest.raises(ValueError, match="no acknowledgement outstanding"):
        offsets.acknowledged(3)


@given(st.lists(st.integers(1, 3), min_size=1, max_size=60), st.randoms(use_true_random=False))
def test_committable_is_always_the_end_of_the_finished_prefix(records: list[int], rng: random.Random) -> None:
    offsets = PartitionOffsets()
    for offset in range(len(records)):
        offsets.track(offset * 2)  # gaps, as compaction or transactions leave them
    pending = [(offset, n) for offset, n in enumerate(records)]
    acks = [offset for offset, n in pending for _ in range(n)]
    for offset, n in pending:
        offsets.published(offset * 2, n)
    rng.shuffle(acks)
    remaining = dict(pending)
    for offset in acks:
        offsets.acknowledged(offset * 2)
        remaining[offset] -= 1
        prefix = 0
        while prefix < len(records) and remaining[prefix] == 0:
            prefix += 1
        expected = None if prefix == 0 else (prefix - 1) * 2 + 1
        assert offsets.committable() == expected
