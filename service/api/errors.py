"""What can go wrong with a call, as classes a caller can act on.

Each is raised where it is known (the response classifier, the transport) and handled in one place: the
client's retry loop handles the transient and rate classes, the quota gate the quota class, and the pipeline
the fatal class and exhausted retries.
"""

from __future__ import annotations

__all__ = [
    "ApiError",
    "BatchRejected",
    "CallAbandoned",
    "FatalApiError",
    "PaymentRequired",
    "QuotaExhausted",
    "RateLimited",
    "RetriesExhausted",
    "TransientApiError",
]


class ApiError(Exception):
    """A whole call failed. ``code`` is the system code, ``http_NNN``, or a transport failure name."""

    def __init__(self, code: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retry_after = retry_after


class TransientApiError(ApiError):
    """Worth retrying after a backoff: 5xx, timeouts, resets, busy, gateway and publisher errors."""


class RateLimited(TransientApiError):
    """10043/10044: over the QPS limit; slow down and retry."""


class QuotaExhausted(ApiError):
    """10040/10010: no calls left until the daily reset (or until someone pays)."""


class PaymentRequired(QuotaExhausted):
    """10010: a paid call pack ran out. No reset brings it back; someone has to top it up."""


class FatalApiError(ApiError):
    """Wrong keys, signature, clock, permissions or a disabled account: no retry can fix it."""


class BatchRejected(ApiError):
    """The API refused the request as a whole (3016, 3050-3053, 5001): split it to find the offending item."""


class RetriesExhausted(ApiError):
    """Transient failures outlasted the retry budget; ``last`` is the final one."""

    def __init__(self, last: ApiError, attempts: int) -> None:
        super().__init__("retries_exhausted", f"after {attempts} attempts, last {last.code}: {last.message}")
        self.last = last
        self.attempts = attempts


class CallAbandoned(Exception):
    """The service is shutting down; the call was not (or not fully) made and its items stay undecided."""
