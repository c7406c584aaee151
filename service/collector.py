"""How often Python's cyclic garbage collector runs in the service's process (decision 0025).

With CPython's default thresholds (700, 10, 10) a flat-out drain ran a full (generation 2) collection about
1.4 times a second, 60-130 ms each, 1.3-1.6 s of a 13-16 s run. An event's objects live from its read to its
commit (100-250 ms and more), far longer than the ~7,000 allocations between two generation-1 collections, so
nearly every one was promoted to generation 2, and CPython collects generation 2 once the objects promoted since
its last full collection exceed a quarter of those it holds (``Modules/gcmodule.c``, ``gc_collect_generations``).
A collection holds the GIL throughout, so the transaction's commit thread, back from librdkafka, waited for it:
every commit over 40 ms in the instrumented runs overlapped a full collection, none of the others did.

Collecting generation 0 every 10,000 net allocations (and generation 1 every 20 of those) lets an event's objects
die young instead: 1-2 full collections a run instead of 17-20, the longest pause 64 ms (159 ms before) on a
machine at load 3, about a fifth of the time spent collecting. The cost: cyclic garbage (a call's httpx request and
response, about 54 objects) waits longer to be freed.
"""

from __future__ import annotations

import gc
from typing import Final

__all__ = ["COLLECTOR_THRESHOLDS", "tune_collector"]

COLLECTOR_THRESHOLDS: Final = (10_000, 20, 10)
"""``gc.set_threshold``'s: net allocations between generation-0 collections, generation-0 collections between
generation-1 ones, generation-1 collections between full ones (CPython's defaults: 700, 10, 10)."""


def tune_collector() -> None:
    """Sets ``COLLECTOR_THRESHOLDS`` for the whole process (every thread's allocations count alike)."""
    gc.set_threshold(*COLLECTOR_THRESHOLDS)
