"""Sliding-window rate limits: at most `limit` accepted events in any span of `window` seconds."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    """The outcome of asking for one slot: accepted or not, slots left, and seconds until one frees up."""

    accepted: bool
    remaining: int
    retry_after: float


class SlidingWindow:
    """No burst allowance: a rejected attempt takes no slot, an accepted one holds it for `window` seconds."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._accepted: deque[float] = deque()
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        while self._accepted and self._accepted[0] <= now - self.window:
            self._accepted.popleft()

    def acquire(self) -> Decision:
        with self._lock:
            now = time.monotonic()
            self._expire(now)
            if len(self._accepted) < self.limit:
                self._accepted.append(now)
                return Decision(True, self.limit - len(self._accepted), 0.0)
            return Decision(False, 0, self._accepted[0] + self.window - now)

    def remaining(self) -> int:
        with self._lock:
            self._expire(time.monotonic())
            return self.limit - len(self._accepted)

    def clear(self) -> None:
        with self._lock:
            self._accepted.clear()


def format_retry_after(seconds: float, speed: float) -> str:
    """Retry-After as the real service writes it (whole seconds) at speed 1; in milliseconds when sped up.

    Rounded up, so a client that waits exactly this long finds a free slot.
    """
    if speed == 1:
        return str(max(1, math.ceil(seconds)))
    return f"{max(0.001, math.ceil(seconds * 1000) / 1000):.3f}"
