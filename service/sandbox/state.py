"""Everything the sandbox remembers and decides: images, quota, the QPS window, faults and statistics.

No sockets and no sleeping: the HTTP layer asks :class:`SandboxState` what to do and does it. Every public
method takes the one lock, so the state is safe to share between the server's request threads; the helper
classes (:class:`QpsWindow`, :class:`DailyQuota`) are not locked themselves and live only under that lock.
Both clocks are injected: a monotonic one for the QPS window, a wall clock (epoch seconds) for the daily
reset at midnight China Standard Time and for the signature's clock-skew check.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.sandbox.protocol import (
    ABSENT_REASON,
    ITEM_ERROR_REASON,
    BusinessCode,
    BusinessResult,
    DeleteRequest,
    GatewayReply,
    ImageKey,
    RequestRejected,
    SystemCode,
    parse_delete_body,
)

__all__ = [
    "DEFAULT_QPS",
    "DEFAULT_QUOTA",
    "UNLIMITED",
    "CallPlan",
    "DailyQuota",
    "Faults",
    "QpsWindow",
    "QuotaStatus",
    "SandboxState",
    "SandboxStats",
    "TransportFault",
]

DEFAULT_QPS: Final = 2
DEFAULT_QUOTA: Final = 100_000
UNLIMITED: Final = -1
"""A quota of -1 never runs out, and ``remainTimes`` then says -1, as the real API does."""
CHINA_STANDARD_TIME_OFFSET: Final = 8 * 3600
_DAY: Final = 86_400
_QPS_WINDOW_SECONDS: Final = 1.0
NONCE_MEMORY_SECONDS: Final = 300.0
"""A nonce is remembered as long as its date could pass the five-minute skew check..."""
NONCE_MEMORY_SIZE: Final = 100_000
"""...but at most this many, so a long benchmark does not grow without bound."""

Rate = Annotated[float, Field(ge=0.0, le=1.0)]


class Faults(BaseModel):
    """The knobs a test turns: injected faults and the QPS limit, set at start-up and changed at runtime.

    Rates are per call (``item_error_rate`` per item). At most one transport fault hits a call
    (503, 500, hang and truncation are drawn together, so their rates must add up to at most 1), and at most
    one gateway fault (10020, 11010) among the calls that pass the QPS and quota checks.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    qps: int = Field(default=DEFAULT_QPS, ge=0, description="Calls admitted per sliding second; 0 = unlimited.")
    latency_ms: float = Field(default=0.0, ge=0.0, description="Added to every call to the endpoint.")
    latency_jitter_ms: float = Field(default=0.0, ge=0.0, description="Plus a uniform draw from [0, this].")
    http_503_rate: Rate = 0.0
    http_500_rate: Rate = 0.0
    hang_rate: Rate = 0.0
    hang_seconds: float = Field(default=60.0, ge=0.0)
    hang_then: Literal["drop", "answer"] = Field(
        default="drop",
        description="After hanging: close the connection unanswered (nothing applied), or process and answer late.",
    )
    truncate_rate: Rate = Field(
        default=0.0, description="Process the call, then send half the body under a larger Content-Length and close."
    )
    busy_rate: Rate = Field(default=0.0, description="Answer 10020 (system busy), not charged.")
    publisher_error_rate: Rate = Field(default=0.0, description="Answer 11010 (publisher error), not charged.")
    item_error_rate: Rate = Field(default=0.0, description="Per item: DELETE_IMAGE_ERROR; the image stays.")
    unknown_collection_1030: bool = Field(
        default=False, description="Answer result.code 1030 for a collection never seeded (else: all items absent)."
    )
    payment_required: bool = Field(
        default=False,
        description="Answer 10010 (payment required: the paid call pack ran out) to every call past the QPS check.",
    )

    @model_validator(mode="after")
    def _exclusive_rates(self) -> Faults:
        transport = self.http_503_rate + self.http_500_rate + self.hang_rate + self.truncate_rate
        if transport > 1.0:
            raise ValueError(
                f"http_503_rate + http_500_rate + hang_rate + truncate_rate must be at most 1 (got {transport})"
            )
        gateway = self.busy_rate + self.publisher_error_rate
        if gateway > 1.0:
            raise ValueError(f"busy_rate + publisher_error_rate must be at most 1 (got {gateway})")
        return self


class TransportFault(StrEnum):
    """What happens to a call on the wire; the value is its label in ``calls_by_code``."""

    NONE = "none"
    HTTP_503 = "http_503"
    HTTP_500 = "http_500"
    HANG = "hang"
    TRUNCATE = "truncated"


@dataclass(frozen=True, slots=True)
class CallPlan:
    """The faults drawn for one call before it is handled; the server carries them out."""

    latency_seconds: float = 0.0
    transport: TransportFault = TransportFault.NONE
    gateway_code: str | None = None
    hang_seconds: float = 0.0
    hang_then: Literal["drop", "answer"] = "drop"


@dataclass(frozen=True, slots=True)
class QuotaStatus:
    limit: int
    remaining: int
    resets_at: float
    """Epoch seconds of the next daily reset (midnight UTC+8)."""


@dataclass(frozen=True, slots=True)
class SandboxStats:
    """What the sandbox saw, for tests and benchmarks to assert on. Plain data, JSON-ready via ``asdict``."""

    calls_total: int
    calls_by_code: dict[str, int]
    """Every call to the endpoint under exactly one label: the system code answered, or ``http_NNN``,
    ``hang`` (dropped unanswered) or ``truncated``."""
    results_by_code: dict[str, int]
    """``result.code`` of the calls answered 10000."""
    calls_by_collection: dict[str, int]
    """Well-formed calls the interface handled (answered 10000), by the collection they named."""
    faults_injected: dict[str, int]
    items_deleted: int
    items_deleted_more_than_once: int
    """Images (collection, product, image) deleted, re-seeded and deleted again."""
    items_absent: int
    items_failed: int
    signature_failures: int
    """Calls refused by authentication: 10001, 10045, 10046, 10047."""
    nonces_reused: int
    """Authenticated calls whose ``x-jdcloud-nonce`` an earlier call already sent (a retry not re-signed).
    Counted, not refused: the contract does not say what the gateway answers to a replay."""
    max_observed_qps: int
    """Most calls that reached the rate limiter (valid signature) within any sliding second."""
    quota_limit: int
    quota_remaining: int
    images_stored: int


class QpsWindow:
    """A sliding one-second window of admitted calls; calls refused do not take a place in it."""

    def __init__(self) -> None:
        self._admitted: deque[float] = deque()
        self._arrivals: deque[float] = deque()
        self.max_observed = 0

    def admit(self, now: float, limit: int) -> bool:
        """Record an arrival at ``now``; whether it fits under ``limit`` calls per second (0 = unlimited)."""
        horizon = now - _QPS_WINDOW_SECONDS
        arrivals = self._arrivals
        while arrivals and arrivals[0] <= horizon:
            arrivals.popleft()
        arrivals.append(now)
        self.max_observed = max(self.max_observed, len(arrivals))
        admitted = self._admitted
        while admitted and admitted[0] <= horizon:
            admitted.popleft()
        if limit and len(admitted) >= limit:
            return False
        admitted.append(now)
        return True

    def reset_observed(self) -> None:
        self.max_observed = 0


class DailyQuota:
    """Calls left today; refilled to ``limit`` when the wall clock passes midnight UTC+8."""

    def __init__(self, limit: int, wall_now: float, utc_offset_seconds: int = CHINA_STANDARD_TIME_OFFSET) -> None:
        _check_limit(limit)
        self._offset = utc_offset_seconds
        self.limit = limit
        self.remaining = limit
        self._day = self._day_of(wall_now)

    def _day_of(self, wall_now: float) -> int:
        return int((wall_now + self._offset) // _DAY)

    def roll(self, wall_now: float) -> None:
        day = self._day_of(wall_now)
        if day != self._day:
            self._day = day
            self.remaining = self.limit

    @property
    def exhausted(self) -> bool:
        return self.limit != UNLIMITED and self.remaining <= 0

    @property
    def remain_times(self) -> int:
        return UNLIMITED if self.limit == UNLIMITED else self.remaining

    def charge(self) -> None:
        if self.limit != UNLIMITED:
            self.remaining -= 1

    def configure(self, *, limit: int | None, remaining: int | None, reset: bool) -> None:
        """A new ``limit`` starts a fresh allowance unless ``remaining`` is given; ``reset`` refills."""
        if limit is not None:
            _check_limit(limit)
            self.limit = limit
            self.remaining = limit
        if reset:
            self.remaining = self.limit
        if remaining is not None:
            if self.limit == UNLIMITED or not 0 <= remaining <= self.limit:
                raise ValueError(f"remaining must be between 0 and the limit ({self.limit}) of a limited quota")
            self.remaining = remaining

    def status(self) -> QuotaStatus:
        return QuotaStatus(self.limit, self.remain_times, float((self._day + 1) * _DAY - self._offset))


def _check_limit(limit: int) -> None:
    if limit < UNLIMITED:
        raise ValueError(f"quota limit must be -1 (unlimited) or at least 0 (got {limit})")


class SandboxState:
    """The sandbox's one account: its collections, quota, QPS window, faults and statistics."""

    def __init__(
        self,
        *,
        faults: Faults | None = None,
        quota_limit: int = DEFAULT_QUOTA,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._lock = threading.Lock()
        self._faults = faults or Faults()
        self._rng = rng or random.Random()
        self._clock = clock
        self.wall_clock = wall_clock
        self._quota = DailyQuota(quota_limit, wall_clock())
        self._qps = QpsWindow()
        self._collections: dict[str, set[ImageKey]] = {}
        self._nonces: dict[str, float] = {}
        self._reset_counters()

    def _reset_counters(self) -> None:
        self._calls: Counter[str] = Counter()
        self._results: Counter[str] = Counter()
        self._calls_by_collection: Counter[str] = Counter()
        self._injected: Counter[str] = Counter()
        self._deleted_before: dict[str, set[ImageKey]] = {}
        self._deleted_again: dict[str, set[ImageKey]] = {}
        self._items_deleted = 0
        self._items_absent = 0
        self._items_failed = 0
        self._signature_failures = 0
        self._nonces_reused = 0
        self._qps.reset_observed()

    # --- images ---------------------------------------------------------------------------------------------

    def seed_images(self, collection: str, items: Iterable[ImageKey]) -> int:
        """Add images (creating the collection, even with no items); returns how many were new."""
        with self._lock:
            stored = self._collections.setdefault(collection, set())
            before = len(stored)
            stored.update(items)
            return len(stored) - before

    def collection_images(self, collection: str) -> list[ImageKey] | None:
        """The images of a collection, sorted; None if it was never seeded."""
        with self._lock:
            stored = self._collections.get(collection)
            return None if stored is None else sorted(stored)

    def collection_size(self, collection: str) -> int | None:
        with self._lock:
            stored = self._collections.get(collection)
            return None if stored is None else len(stored)

    def collection_sizes(self) -> dict[str, int]:
        with self._lock:
            return {name: len(stored) for name, stored in sorted(self._collections.items())}

    # --- knobs ----------------------------------------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        with self._lock:
            return self._faults

    def update_faults(self, changes: Mapping[str, object]) -> Faults:
        """Apply a partial update; raises ``ValueError`` (pydantic's ``ValidationError``) naming the bad knob."""
        with self._lock:
            self._faults = Faults.model_validate({**self._faults.model_dump(), **changes})
            return self._faults

    def quota_status(self) -> QuotaStatus:
        with self._lock:
            self._quota.roll(self.wall_clock())
            return self._quota.status()

    def configure_quota(
        self, *, limit: int | None = None, remaining: int | None = None, reset: bool = False
    ) -> QuotaStatus:
        with self._lock:
            self._quota.roll(self.wall_clock())
            self._quota.configure(limit=limit, remaining=remaining, reset=reset)
            return self._quota.status()

    # --- calls ----------------------------------------------------------------------------------------------

    def plan_call(self) -> CallPlan:
        """Draw the faults of the next call to the endpoint (before authentication, as a network would)."""
        with self._lock:
            faults = self._faults
            rng = self._rng
            latency = faults.latency_ms
            if faults.latency_jitter_ms:
                latency += rng.uniform(0.0, faults.latency_jitter_ms)
            transport = TransportFault.NONE
            draw = rng.random()
            for fault, rate in (
                (TransportFault.HTTP_503, faults.http_503_rate),
                (TransportFault.HTTP_500, faults.http_500_rate),
                (TransportFault.HANG, faults.hang_rate),
                (TransportFault.TRUNCATE, faults.truncate_rate),
            ):
                if draw < rate:
                    transport = fault
                    break
                draw -= rate
            gateway_code = None
            draw = rng.random()
            if draw < faults.busy_rate:
                gateway_code = SystemCode.SYSTEM_BUSY
            elif draw < faults.busy_rate + faults.publisher_error_rate:
                gateway_code = SystemCode.PUBLISHER_ERROR
            if transport in {TransportFault.HTTP_503, TransportFault.HTTP_500, TransportFault.HANG}:
                self._injected[transport.value] += 1  # a truncation counts once the call is answered
            return CallPlan(latency / 1000.0, transport, gateway_code, faults.hang_seconds, faults.hang_then)

    def record_transport_failure(self, label: str) -> None:
        """Count a call that got no gateway answer: ``http_503``, ``http_413``, ``hang``..."""
        with self._lock:
            self._calls[label] += 1

    def record_auth_failure(self, code: str, reason: str = "") -> GatewayReply:
        """Count a call refused by authentication; the reply carries the quota left (-1 for an unknown key)."""
        with self._lock:
            self._calls[code] += 1
            self._signature_failures += 1
            remain = UNLIMITED if code == SystemCode.WRONG_APPKEY else self._quota.remain_times
            return GatewayReply(code, charge=False, remain_times=remain, detail=reason)

    def handle_delete(self, body: bytes, plan: CallPlan = CallPlan(), *, nonce: str | None = None) -> GatewayReply:
        """Answer an authenticated call: QPS, then quota, then injected gateway faults, then the business.

        Charged: every call answered 10000, business rejections (3016, 3050-3053, 5001, 1030) included, since
        the gateway bills whatever reaches the interface; a careless client pays for malformed calls.
        Not charged: 10043, 10010, 10040, 10020, 11010 (the gateway or publisher failed, nothing was done).
        """
        parsed: DeleteRequest | int
        try:
            parsed = parse_delete_body(body)
        except RequestRejected as rejected:
            parsed = rejected.code
        with self._lock:
            now = self._clock()
            if nonce is not None:
                self._remember_nonce(nonce, now)
            self._quota.roll(self.wall_clock())
            if not self._qps.admit(now, self._faults.qps):
                reply = GatewayReply(SystemCode.QPS_LIMIT, charge=False, remain_times=self._quota.remain_times)
            elif self._faults.payment_required:
                reply = GatewayReply(SystemCode.PAYMENT_REQUIRED, charge=False, remain_times=0)
            elif self._quota.exhausted:
                reply = GatewayReply(SystemCode.DAILY_LIMIT, charge=False, remain_times=self._quota.remain_times)
            elif plan.gateway_code is not None:
                self._injected[plan.gateway_code] += 1
                reply = GatewayReply(plan.gateway_code, charge=False, remain_times=self._quota.remain_times)
            else:
                self._quota.charge()
                result = BusinessResult(parsed) if isinstance(parsed, int) else self._delete(parsed)
                reply = GatewayReply(
                    SystemCode.SUCCESS, charge=True, remain_times=self._quota.remain_times, result=result
                )
                self._results[str(result.code)] += 1
                if not isinstance(parsed, int):
                    self._calls_by_collection[parsed.collection] += 1
            if plan.transport is TransportFault.TRUNCATE:
                self._injected[TransportFault.TRUNCATE.value] += 1
                self._calls[TransportFault.TRUNCATE.value] += 1
            else:
                self._calls[reply.code] += 1
            return reply

    def _remember_nonce(self, nonce: str, now: float) -> None:
        nonces = self._nonces
        if nonces.pop(nonce, None) is not None:
            self._nonces_reused += 1
        nonces[nonce] = now  # re-inserted last, so the dict stays in order of last sight
        # dicts keep insertion order: the oldest nonces come first
        while nonces:
            oldest, seen_at = next(iter(nonces.items()))
            if seen_at > now - NONCE_MEMORY_SECONDS and len(nonces) <= NONCE_MEMORY_SIZE:
                break
            del nonces[oldest]

    def _delete(self, request: DeleteRequest) -> BusinessResult:
        stored = self._collections.get(request.collection)
        if stored is None and self._faults.unknown_collection_1030:
            return BusinessResult(BusinessCode.NO_RELATIVE_COLLECTION)
        stored = stored if stored is not None else set()
        error_rate = self._faults.item_error_rate
        failing = {key for key in request.items if self._rng.random() < error_rate} if error_rate else set()
        successful = [key for key in request.items if key in stored and key not in failing]
        failed = [
            (key, ITEM_ERROR_REASON if key in failing else ABSENT_REASON)
            for key in request.items
            if key in failing or key not in stored
        ]
        stored.difference_update(successful)
        deleted_before = self._deleted_before.setdefault(request.collection, set())
        deleted_again = self._deleted_again.setdefault(request.collection, set())
        deleted_again.update(deleted_before.intersection(successful))
        deleted_before.update(successful)
        self._items_deleted += len(successful)
        self._items_failed += len(failing)
        self._items_absent += len(failed) - len(failing)
        if failing:
            self._injected["item_error"] += len(failing)
        return BusinessResult(BusinessCode.SUCCESS, successful, failed)

    # --- statistics -----------------------------------------------------------------------------------------

    def stats(self) -> SandboxStats:
        with self._lock:
            self._quota.roll(self.wall_clock())
            return SandboxStats(
                calls_total=sum(self._calls.values()),
                calls_by_code=dict(sorted(self._calls.items())),
                results_by_code=dict(sorted(self._results.items())),
                calls_by_collection=dict(sorted(self._calls_by_collection.items())),
                faults_injected=dict(sorted(self._injected.items())),
                items_deleted=self._items_deleted,
                items_deleted_more_than_once=sum(len(again) for again in self._deleted_again.values()),
                items_absent=self._items_absent,
                items_failed=self._items_failed,
                signature_failures=self._signature_failures,
                nonces_reused=self._nonces_reused,
                max_observed_qps=self._qps.max_observed,
                quota_limit=self._quota.limit,
                quota_remaining=self._quota.remain_times,
                images_stored=sum(len(stored) for stored in self._collections.values()),
            )

    def reset_stats(self) -> None:
        """Zero every counter (delete histories included); images, quota and faults are kept."""
        with self._lock:
            self._reset_counters()
