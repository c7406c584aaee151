"""The garbage collector's thresholds (decision 0025): a batch's objects, alive until its commit, stay young."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from service.collector import COLLECTOR_THRESHOLDS, tune_collector

BATCH_OBJECTS = 40_000
"""About what one consume batch of 500 events makes and keeps until its commit (decoded events, their items,
outcomes): objects that are alive at once, so that each counts towards the next collection."""


@pytest.fixture
def thresholds() -> Iterator[None]:
    """The test's own collector state: enabled, counts at zero, the thresholds put back afterwards."""
    saved, enabled = gc.get_threshold(), gc.isenabled()
    gc.enable()
    gc.collect()
    yield
    gc.set_threshold(*saved)
    if not enabled:
        gc.disable()


def _oldest_generation_holds(thing: object) -> bool:
    return any(candidate is thing for candidate in gc.get_objects(generation=2))


class _Item:
    """An object the collector tracks (a dict of ints alone is not tracked, and would not count)."""

    def __init__(self, offset: int) -> None:
        self.offset = offset


def _alive_through_a_batch() -> tuple[_Item, list[_Item]]:
    """The batch's first object, and the rest of the batch made after it (alive together, as in the pipeline)."""
    gc.collect()  # the generations' counts start at zero
    first = _Item(0)
    assert gc.is_tracked(first)
    rest = [_Item(n) for n in range(1, BATCH_OBJECTS)]
    return first, rest


@pytest.mark.usefixtures("thresholds")
def test_tune_collector_sets_the_thresholds() -> None:
    gc.set_threshold(700, 10, 10)
    tune_collector()
    assert gc.get_threshold() == COLLECTOR_THRESHOLDS


@pytest.mark.usefixtures("thresholds")
def test_a_batchs_objects_are_not_promoted_to_the_oldest_generation() -> None:
    """With CPython's defaults (700, 10, 10) a batch's first objects reach generation 2 before the batch is
    even made (a generation-1 collection every 7,000 objects); every full collection then walks them."""
    tune_collector()
    first, rest = _alive_through_a_batch()
    assert not _oldest_generation_holds(first)
    del first, rest


@pytest.mark.usefixtures("thresholds")
def test_with_cpythons_defaults_they_are() -> None:
    """The test above can fail: the same batch under the default thresholds."""
    gc.set_threshold(700, 10, 10)
    first, rest = _alive_through_a_batch()
    assert _oldest_generation_holds(first)
    del first, rest
