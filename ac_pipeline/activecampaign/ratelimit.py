"""Client-side rate limiting: stay inside the account's budget instead of collecting 429s.

ActiveCampaign counts requests in a sliding window with no burst allowance (5 in any second), so a token
bucket with a capacity above 1 would burst into 429s. A sliding window of send times is the same rule the
server applies, is exact, and is a few lines: that is why this is hand-written rather than a library.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["BulkKind", "RateLimitTimeout", "RateLimiter", "RateLimits", "SlidingWindow"]

BulkKind = Literal["multi", "single"]
"""Which bulk-import budget a request draws on: several contacts, or exactly one."""


@dataclass(frozen=True)
class RateLimits:
    """An account's limits, as documented by ActiveCampaign (the defaults) or as the sandbox is configured.

    `safety_margin` widens every window by that fraction (0.05: a second becomes 1.05 s), so that requests
    which travel at different speeds never reach the server one too many in its window.
    """

    requests_per_second: float = 5.0
    bulk_imports_per_minute: int = 100
    single_contact_imports_per_minute: int = 20
    safety_margin: float = 0.05

    def __post_init__(self) -> None:
        if self.requests_per_second <= 0:
            raise ValueError(f"requests_per_second must be positive, got {self.requests_per_second}")
        if self.bulk_imports_per_minute < 1 or self.single_contact_imports_per_minute < 1:
            raise ValueError("bulk_imports_per_minute and single_contact_imports_per_minute must be at least 1")
        if not 0 <= self.safety_margin < 1:
            raise ValueError(f"safety_margin is a fraction in [0, 1), got {self.safety_margin}")

    def request_window(self) -> tuple[int, float]:
        """(at most this many requests, in any window of this many seconds), before the safety margin."""
        if self.requests_per_second >= 1:
            # 2.5/s becomes 2 per second: never more than the server allows in any one-second window.
            return math.floor(self.requests_per_second), 1.0
        return 1, 1.0 / self.requests_per_second


class SlidingWindow:
    """At most `limit` events in any `seconds`-long window. Not thread-safe: `RateLimiter` holds the lock."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self._times: deque[float] = deque()

    def delay(self, now: float) -> float:
        """Seconds until one more event fits (0 if it fits now)."""
        while self._times and self._times[0] <= now - self.seconds:
            self._times.popleft()
        if len(self._times) < self.limit:
            return 0.0
        return self._times[0] + self.seconds - now

    def record(self, now: float) -> None:
        self._times.append(now)


class RateLimitTimeout(Exception):
    """Waiting for the rate limit would pass the caller's deadline. The client turns it into RetriesExhausted."""

    def __init__(self, waited: float, needed: float) -> None:
        super().__init__(f"waited {waited:.1f}s for the rate limit and would need {needed:.1f}s more")
        self.waited = waited
        self.needed = needed


class RateLimiter:
    """One account's budget, shared by every request (and every thread) of one client.

    `acquire` blocks until a request fits in all windows that apply to it; `pause` makes every request wait
    after the server answered 429 (or bulk import said "Rate limit exceeded."), whatever the windows say.
    """

    def __init__(
        self,
        limits: RateLimits,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        widen = 1.0 + limits.safety_margin
        count, seconds = limits.request_window()
        self._requests = SlidingWindow(count, seconds * widen)
        self._bulk: dict[BulkKind, SlidingWindow] = {
            "multi": SlidingWindow(limits.bulk_imports_per_minute, 60.0 * widen),
            "single": SlidingWindow(limits.single_contact_imports_per_minute, 60.0 * widen),
        }
        self._paused_until = 0.0
        self._bulk_paused_until = 0.0

    def acquire(self, bulk: BulkKind | None = None, *, deadline: float = math.inf) -> float:
        """Wait until one more request (of that bulk kind, if given) is allowed; return the seconds waited.

        Raises RateLimitTimeout instead of sleeping past `deadline` (a value of `clock`).
        """
        start = self._clock()
        while True:
            with self._lock:
                now = self._clock()
                delay = self._delay(now, bulk)
                if delay <= 0:
                    self._requests.record(now)
                    if bulk is not None:
                        self._bulk[bulk].record(now)
                    return now - start
            if now + delay > deadline:
                raise RateLimitTimeout(waited=now - start, needed=delay)
            self._sleep(delay)

    def pause(self, seconds: float, *, bulk_only: bool = False) -> None:
        """Hold back every request (or only bulk imports) for `seconds` from now, as the server asked."""
        with self._lock:
            until = self._clock() + max(0.0, seconds)
            if bulk_only:
                self._bulk_paused_until = max(self._bulk_paused_until, until)
            else:
                self._paused_until = max(self._paused_until, until)

    def _delay(self, now: float, bulk: BulkKind | None) -> float:
        delays = [self._paused_until - now, self._requests.delay(now)]
        if bulk is not None:
            delays += [self._bulk_paused_until - now, self._bulk[bulk].delay(now)]
        return max(delays)
