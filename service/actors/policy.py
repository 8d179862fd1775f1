"""Restart policy as data, and the sliding window that enforces its intensity limit."""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


class RestartMode(enum.StrEnum):
    NEVER = "never"
    ON_FAILURE = "on-failure"
    ALWAYS = "always"


@dataclass(frozen=True, kw_only=True)
class RestartPolicy:
    """At most ``max_restarts`` restarts in ``window_s`` seconds; the next failure gives up.

    The delay before the n-th restart in the window is ``backoff_initial_s * 2**(n-1)``,
    capped at ``backoff_max_s``.
    """

    mode: RestartMode = RestartMode.ON_FAILURE
    max_restarts: int = 5
    window_s: float = 60.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0

    def should_restart(self, *, failed: bool) -> bool:
        if self.mode is RestartMode.ALWAYS:
            return True
        return self.mode is RestartMode.ON_FAILURE and failed


class RestartTracker:
    """Failure times in a sliding window. ``record_failure`` answers the delay before the next
    restart, or ``None`` when the intensity limit is exceeded (give up)."""

    def __init__(self, policy: RestartPolicy, clock: Callable[[], float] | None = None) -> None:
        self.policy = policy
        self._clock = clock or time.monotonic
        self._failures: deque[float] = deque()
        self.restarts = 0

    def _prune(self, now: float) -> None:
        while self._failures and now - self._failures[0] > self.policy.window_s:
            self._failures.popleft()

    def record_failure(self) -> float | None:
        now = self._clock()
        self._prune(now)
        self._failures.append(now)
        if len(self._failures) > self.policy.max_restarts:
            return None
        exponent = len(self._failures) - 1
        return float(min(self.policy.backoff_initial_s * (2**exponent), self.policy.backoff_max_s))

    def record_restart(self) -> None:
        self.restarts += 1

    def reset(self) -> None:
        """A deliberate start by a person clears the failure history (not the restart count)."""
        self._failures.clear()
