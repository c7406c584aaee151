"""Per-partition commit watermarks: an offset is committable only when everything before it is finished.

"Finished" means the broker acknowledged every record the event produced (its outcome, and its dead-letter
copy if it has one). Events complete out of order (different collections, different calls), so each
partition keeps its offsets in arrival order and the watermark only moves over a finished prefix.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["PartitionOffsets"]

_UNPUBLISHED = -1


class PartitionOffsets:
    def __init__(self) -> None:
        # offset -> acknowledgements still awaited; _UNPUBLISHED until the event's records are produced.
        self._open: OrderedDict[int, int] = OrderedDict()
        self._committable: int | None = None
        self._unacknowledged = 0
        """Records produced and not yet acknowledged, over every offset (the outputs' backlog)."""

    def track(self, offset: int) -> None:
        """An event was consumed at ``offset``; offsets arrive in increasing order within a partition."""
        if self._open and offset <= next(reversed(self._open)):
            raise ValueError(f"offset {offset} arrived out of order")
        self._open[offset] = _UNPUBLISHED

    def published(self, offset: int, records: int) -> None:
        """The event's records (outcome, dead letter) were handed to the producer."""
        if self._open.get(offset) != _UNPUBLISHED:
            raise ValueError(f"offset {offset} is not awaiting publication")
        self._open[offset] = records
        self._unacknowledged += records
        self._advance()

    def acknowledged(self, offset: int) -> None:
        """The broker acknowledged one of the event's records."""
        remaining = self._open.get(offset)
        if remaining is None or remaining <= 0:
            raise ValueError(f"offset {offset} has no acknowledgement outstanding")
        self._open[offset] = remaining - 1
        self._unacknowledged -= 1
        self._advance()

    def _advance(self) -> None:
        while self._open:
            offset, remaining = next(iter(self._open.items()))
            if remaining != 0:
                return
            self._open.popitem(last=False)
            self._committable = offset + 1

    def committable(self) -> int | None:
        """The offset to commit (next to read, Kafka's convention), or None if nothing finished yet."""
        return self._committable

    def low_watermark(self) -> int | None:
        """Where a new owner must start: the first unfinished offset, else the committable one (None if neither)."""
        if self._open:
            return next(iter(self._open))
        return self._committable

    def finished_above_watermark(self) -> list[int]:
        """Offsets whose records are all acknowledged but that an unfinished offset below holds back."""
        return [offset for offset, remaining in self._open.items() if remaining == 0]

    def outstanding(self) -> int:
        return len(self._open)

    def unacknowledged(self) -> int:
        """Records produced for this partition's events that the broker has not acknowledged yet."""
        return self._unacknowledged
