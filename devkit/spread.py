"""Collection names placed on chosen partitions of the collections topic, for tests that need work on every
replica: behind the router (decision 0022) a collection is one replica's, whichever input partition it came from."""

from __future__ import annotations

from service.pipeline.collections_topic import CollectionPartitions

__all__ = ["one_collection_per_partition"]


def one_collection_per_partition(partitions: int, prefix: str = "shop") -> list[str]:
    """``partitions`` collection names, the n-th on partition n of a collections topic of that many (one account)."""
    spread = CollectionPartitions(partitions, 1)
    found: dict[int, str] = {}
    n = 0
    while len(found) < partitions:
        found.setdefault(spread.partition_of(f"{prefix}{n}", 0), f"{prefix}{n}")
        n += 1
    return [found[p] for p in range(partitions)]
