"""Client-side rate limiting: stay inside the account's budget instead of collecting 429s.

ActiveCampaign counts requests in a sliding window with no burst allowance (5 in any second), so a token
bucket with a capacity above 1 would burst into 429s. This limiter spaces requests evenly instead: at most one
every 1/rate seconds, a bucket of capacity 1. That never puts more than `rate` requests in any window of one
second, and keeps working when the server's window is shorter (the sandbox shrinks its windows by its speed:
5 requests per 10 ms at speed 100) as long as the rates match. At full load it sends exactly as much as a sliding
window would; it only gives up sending a handful of requests at once when idle, which a sync does not need.

Bulk import's budgets are per minute, a window some hundred times longer than the jitter of a request's
trip, so they are kept as sliding windows (at most N in any minute): a sync of a few hundred batches
may then use a whole minute's allowance at the pace of the per-second budget instead of one every
0.6 s, and still never has more than N in any minute.
It is a few lines, so it is hand-written rather than a library (pyrate-limiter, aiolimiter).
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

__all__ = ["BulkKind", "RateLimitTimeout", "RateLimiter", "RateLimits", "Spacing", "Window"]

# Bulk import's documented allowance per minute: several contacts a request, or one.
BULK_IMPORTS_PER_WINDOW = 100
SINGLE_CONTACT_IMPORTS_PER_WINDOW = 20

BulkKind = Literal["multi", "single"]
"""Which bulk-import budget a request draws on: several contacts, or exactly one."""


@dataclass(frozen=True)
class RateLimits:
    """An account's limits, as documented by ActiveCampaign (the defaults) or as the sandbox is configured.

    `safety_margin` stretches every interval by that fraction (0.05: 200 ms becomes 210 ms), so that requests
    which travel at different speeds never reach the server one too many in its window.
    """

    requests_per_second: float = 5.0
    bulk_imports_per_minute: float = 100
    single_contact_imports_per_minute: float = 20
    safety_margin: float = 0.05

    def __post_init__(self) -> None:
        for name in ("requests_per_second", "bulk_imports_per_minute", "single_contact_imports_per_minute"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.safety_margin < 1:
            raise ValueError(f"safety_margin is a fraction in [0, 1), got {self.safety_margin}")

    def scaled(self, speed: float) -> RateLimits:
        """The limits of a sandbox running `speed` times faster than real time."""
        return replace(
            self,
            requests_per_second=self.requests_per_second * speed,
            bulk_imports_per_minute=self.bulk_imports_per_minute * speed,
            single_contact_imports_per_minute=self.single_contact_imports_per_minute * speed,
        )


class Spacing:
    """At most one event every `interval` seconds. Not thread-safe: `RateLimiter` holds the lock."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last = -math.inf

    def delay(self, now: float) -> float:
        """Seconds until the next event is allowed (0 if it is allowed now)."""
        return max(0.0, self._last + self.interval - now)

    def record(self, now: float) -> None:
        self._last = now


class Window:
    """At most `limit` events in any `seconds`. Not thread-safe: `RateLimiter` holds the lock."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self._events: list[float] = []  # sorted

    def delay(self, now: float) -> float:
        expired = bisect.bisect_right(self._events, now - self.seconds)
        del self._events[:expired]
        return 0.0 if len(self._events) < self.limit else self._events[0] + self.seconds - now

    def record(self, now: float) -> None:
        bisect.insort(self._events, now)

    def forget(self, then: float) -> bool:
        """Stop counting the event at `then`; False if it was no longer counted."""
        index = bisect.bisect_left(self._events, then)
        if index < len(self._events) and self._events[index] == then:
            del self._events[index]
            return True
        return False

    def move(self, then: float, now: float) -> None:
        """Count an event at `now` instead of `then` (if it is still counted)."""
        if self.forget(then):
            self.record(now)


class RateLimitTimeout(Exception):
    """Waiting for the rate limit would pass the caller's deadline. The client turns it into RetriesExhausted."""

    def __init__(self, waited: float, needed: float) -> None:
        super().__init__(f"waited {waited:.1f}s for the rate limit and would need {needed:.1f}s more")
        self.waited = waited
        self.needed = needed


class RateLimiter:
    """One account's budget, shared by every request (and every thread) of one client.

    `acquire` blocks until every budget that applies to a request allows it; `pause` holds requests back after
    the server answered 429 (or bulk import said "Rate limit exceeded."), whatever our own count says.
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
        stretch = 1.0 + limits.safety_margin
        self._requests = Spacing(stretch / limits.requests_per_second)
        # The documented counts per window, over a window that shrinks as the rate grows: 100 imports in
        # 60 s for a real account, 100 in 3 s for a sandbox at speed 20 (as the sandbox counts them). A
        # minute is long beside a request's jitter, so a fifth of the spacing's margin is enough.
        window_stretch = 1.0 + limits.safety_margin / 5
        budgets: tuple[tuple[BulkKind, int, float], ...] = (
            ("multi", BULK_IMPORTS_PER_WINDOW, limits.bulk_imports_per_minute),
            ("single", SINGLE_CONTACT_IMPORTS_PER_WINDOW, limits.single_contact_imports_per_minute),
        )
        self._bulk: dict[BulkKind, Window] = {
            kind: Window(count, window_stretch * 60.0 * count / per_minute) for kind, count, per_minute in budgets
        }
        self._paused_until = 0.0
        self._bulk_paused_until = 0.0
        self._sent = threading.local()  # when this thread's last bulk request was let go

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
                        self._sent.at = now
                    return now - start
            if now + delay > deadline:
                raise RateLimitTimeout(waited=now - start, needed=delay)
            self._sleep(delay)

    def answered(self, bulk: BulkKind) -> None:
        """The bulk request this thread last acquired has been answered: count it from now on.

        The server counts a request when it arrives, which may be well after we let it go (threads, a
        busy machine). Counting it from its answer, which comes after its arrival, keeps our window
        from freeing a slot before the server's does.
        """
        self._settle_sent(bulk, counted=True)

    def refused(self, bulk: BulkKind) -> None:
        """The bulk request this thread last acquired was turned away before it counted (429: the per-second
        budget was full): give its slot back.

        The server counts an import when it accepts it; a request refused at the door imported nothing and
        will be sent again. Keeping its slot would make every throttled import cost two slots of the window,
        and a large sync would wait a whole extra window for the slots its 429s wasted (issue 12, item 2).
        Should a real account count it all the same, it answers "Rate limit exceeded." and the client pauses.
        """
        self._settle_sent(bulk, counted=False)

    def _settle_sent(self, bulk: BulkKind, *, counted: bool) -> None:
        """This thread's last bulk request has its answer: count it from now on, or not at all."""
        sent_at = getattr(self._sent, "at", None)
        if sent_at is None:
            return
        with self._lock:
            if counted:
                self._bulk[bulk].move(sent_at, self._clock())
            else:
                self._bulk[bulk].forget(sent_at)
        self._sent.at = None

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
