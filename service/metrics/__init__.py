"""Every metric imgsweep exposes, in one package. Names follow Prometheus conventions; labels are bounded.

Label values that are known in advance are pre-initialised to zero, so a dashboard's ``rate()`` and an alert's
``increase()`` see a series before the first event of its kind; anything outside a known set is folded into
``other`` (``labels.py``). ``Metrics`` (``service.py``) holds them all on one registry, with its parts: each
account's series (``AccountMetrics``), what is read, committed and answered by the account of its partition
(``reading.py``), the budget (``budget.py``), delivery (``delivery.py``) and the brake and
pauses (``control.py``).
"""

from service.metrics.control import ControlMetrics
from service.metrics.labels import API_CODES, BRAKE_SERIES, HELD_UNTIL_RESET, IMAGE_REASONS
from service.metrics.reading import SHARED
from service.metrics.service import AccountMetrics, Metrics

__all__ = [
    "API_CODES",
    "BRAKE_SERIES",
    "HELD_UNTIL_RESET",
    "IMAGE_REASONS",
    "SHARED",
    "AccountMetrics",
    "ControlMetrics",
    "Metrics",
]
