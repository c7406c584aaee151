"""The brake on mass deletes: images of each collection handed to calls in a sliding hour, against a limit. Pure.

A catalog bug that delists everything is otherwise obeyed at full QPS: a paid pack at 2 QPS and 200 images a call
removes a 450,000-image collection in about 19 minutes. The batch step asks ``would_exceed`` before it hands a
batch to a call and ``count``s it once the call took it; a batch that would take its collection over the limit
is not handed out, and the collection's brake trips (``service.control.replica``). docs/decisions/0017.
"""

from __future__ import annotations

from collections import deque
from typing import Final

__all__ = ["HOUR", "Brake"]

HOUR: Final = 3600.0


class Brake:
    """Counts, per collection, the images handed to calls in the last hour (on a monotonic clock, in seconds)."""

    def __init__(self, max_images_per_hour: int, window: float = HOUR) -> None:
        """``max_images_per_hour`` 0: no brake (``would_exceed`` is always False; nothing is kept)."""
        self.limit = max_images_per_hour
        self._window = window
        self._handed: dict[str, deque[tuple[float, int]]] = {}
        self._totals: dict[str, int] = {}

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    def would_exceed(self, collection: str, images: int, now: float) -> bool:
        """Whether handing ``images`` more of ``collection`` to a call now takes it over the limit in the hour."""
        return self.enabled and self.in_hour(collection, now) + images > self.limit

    def count(self, collection: str, images: int, now: float) -> None:
        """``images`` of ``collection`` were handed to a call at ``now``."""
        if not self.enabled or images <= 0:
            return
        self._handed.setdefault(collection, deque()).append((now, images))
        self._totals[collection] = self._totals.get(collection, 0) + images

    def in_hour(self, collection: str, now: float) -> int:
        """Images of ``collection`` handed to calls in the hour up to ``now``."""
        handed = self._handed.get(collection)
        if handed is None:
            return 0
        while handed and handed[0][0] <= now - self._window:
            self._totals[collection] -= handed.popleft()[1]
        if not handed:
            del self._handed[collection], self._totals[collection]
            return 0
        return self._totals[collection]

    def busiest(self, now: float) -> int:
        """The most images any one collection had handed to calls in the hour up to ``now``."""
        return max((self.in_hour(collection, now) for collection in list(self._handed)), default=0)

    def reset(self, collection: str) -> None:
        """The collection's hour starts again (an operator resumed its brake): another full limit before it trips."""
        self._handed.pop(collection, None)
        self._totals.pop(collection, None)
