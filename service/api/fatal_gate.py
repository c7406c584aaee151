"""An account's fatal state: a fatal answer (keys, signature, clock, permission, endpoint) stops that account's
calls, and a probe call re-checks it with a growing backoff until an answer is not fatal.

A fatal answer cannot be fixed by retrying the call at once, but it can be fixed outside the service: a key
rotated, a clock set, an endpoint corrected, a permission granted. Halting the whole replica on it (as before
decision 0020) stopped every account and needed a restart that Kubernetes never made. Here, as the quota gate
does for a spent paid pack (10010), the account is held and one call goes as a probe after ``first_probe_seconds``,
then after twice as long each time it is still fatal, up to ``max_probe_seconds``. The first answer that is not
fatal resumes the account. Only the probe's answer moves the backoff: calls started before the halt may still
answer, fatal or not, and say nothing about the fix. Pure state over an injectable clock; not thread-safe (the
poll loop alone uses it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["FATAL_PROBE_MAX_SECONDS", "FATAL_PROBE_SECONDS", "FatalGate", "FatalState"]

log = logging.getLogger(__name__)

FATAL_PROBE_SECONDS = 60.0
"""Default wait before the first probe after a fatal answer."""
FATAL_PROBE_MAX_SECONDS = 900.0
"""Default longest wait between probes (15 minutes)."""
MAX_MESSAGE_CHARS = 200
"""The API's message is cut to this length where it is reported (readiness, logs)."""


@dataclass(frozen=True, slots=True)
class FatalState:
    code: str
    """The fatal answer's code (``10045``, ``http_401``...)."""
    message: str
    probes: int
    """Probes answered fatal since the account halted."""
    next_probe_in_seconds: float
    """Until the next probe may go; 0 while one is due or under way."""

    def reason(self) -> str:
        return f"API error {self.code}: {self.message}"


class FatalGate:
    def __init__(
        self,
        *,
        first_probe_seconds: float = FATAL_PROBE_SECONDS,
        max_probe_seconds: float = FATAL_PROBE_MAX_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._first = first_probe_seconds
        self._max = max(max_probe_seconds, first_probe_seconds)
        self._clock = clock
        self._code: str | None = None
        self._message = ""
        self._backoff = first_probe_seconds
        self._probe_at = 0.0
        self._probing = False
        self._probes = 0

    @property
    def halted(self) -> bool:
        return self._code is not None

    def holding(self) -> bool:
        """Whether no call may start: halted, and the probe is not yet due or is under way."""
        return self._code is not None and (self._probing or self._clock() < self._probe_at)

    def starting(self) -> bool:
        """A call starts; True if it is the probe (the account is halted), which then holds every other call."""
        if self._code is None:
            return False
        self._probing = True
        return True

    def fatal(self, code: str, message: str, *, probe: bool) -> None:
        """A call answered fatal. The first one halts the account; a probe's pushes the next probe further out."""
        message = message[:MAX_MESSAGE_CHARS]
        if self._code is None:
            self._code, self._message, self._backoff, self._probes = code, message, self._first, 0
            self._probe_at = self._clock() + self._backoff
            return
        if not probe:
            return  # a call started before the halt: says nothing about a fix
        self._code, self._message, self._probing = code, message, False
        self._probes += 1
        self._backoff = min(self._backoff * 2, self._max)
        self._probe_at = self._clock() + self._backoff

    def answered(self, *, probe: bool) -> bool:
        """A call's answer was not fatal; True if it was the probe and the account resumes."""
        if not probe or self._code is None:
            return False
        self._code, self._message, self._probing, self._probes = None, "", False, 0
        return True

    def abandoned(self, *, probe: bool) -> None:
        """A call ended without an answer (shutdown): a probe that did not happen is due again."""
        if probe:
            self._probing = False

    def state(self) -> FatalState | None:
        if self._code is None:
            return None
        wait = 0.0 if self._probing else max(0.0, self._probe_at - self._clock())
        return FatalState(self._code, self._message, self._probes, wait)
