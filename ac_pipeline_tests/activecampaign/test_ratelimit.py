"""The limiter alone, on a fake clock: exact and instant."""

from __future__ import annotations

import threading
import time

import pytest

from ac_pipeline.activecampaign.ratelimit import RateLimiter, RateLimits, RateLimitTimeout, SlidingWindow


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_sliding_window_allows_limit_then_waits_for_oldest() -> None:
    window = SlidingWindow(limit=2, seconds=1.0)
    assert window.delay(0.0) == 0
    window.record(0.0)
    window.record(0.3)
    assert window.delay(0.5) == pytest.approx(0.5)
    assert window.delay(1.0) == 0  # the event at 0.0 has left the window


def test_requests_never_exceed_limit_in_any_window() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimits(requests_per_second=5, safety_margin=0.0), clock=clock, sleep=clock.sleep)
    times = []
    for _ in range(23):
        limiter.acquire()
        times.append(clock.now)
    for start in times:
        assert sum(1 for t in times if start <= t < start + 1.0) <= 5
    assert times[-1] == pytest.approx(4.0)  # 23 requests at 5/s: the last goes out after 4 full windows


def test_safety_margin_widens_the_window() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimits(requests_per_second=5, safety_margin=0.1), clock=clock, sleep=clock.sleep)
    for _ in range(6):
        limiter.acquire()
    assert clock.now == pytest.approx(1.1)


def test_fractional_rates() -> None:
    assert RateLimits(requests_per_second=2.5).request_window() == (2, 1.0)
    assert RateLimits(requests_per_second=0.5).request_window() == (1, 2.0)


def test_bulk_windows_are_separate_and_also_count_as_requests() -> None:
    clock = FakeClock()
    limits = RateLimits(requests_per_second=100, bulk_imports_per_minute=3, single_contact_imports_per_minute=1,
                        safety_margin=0.0)
    limiter = RateLimiter(limits, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        limiter.acquire("multi")
    limiter.acquire("single")
    assert clock.now == 0.0
    limiter.acquire()  # a plain request is not held back by the bulk budget
    assert clock.now == 0.0
    limiter.acquire("multi")
    assert clock.now == pytest.approx(60.0)
    limiter.acquire("single")
    assert clock.now == pytest.approx(60.0)


def test_pause_holds_back_everything_and_bulk_only_pause_only_bulk() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimits(requests_per_second=100), clock=clock, sleep=clock.sleep)
    limiter.pause(0.25)
    assert limiter.acquire() == pytest.approx(0.25)
    limiter.pause(5.0, bulk_only=True)
    assert limiter.acquire() == 0.0
    assert limiter.acquire("multi") == pytest.approx(5.0)


def test_deadline_raises_instead_of_sleeping() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimits(requests_per_second=1, safety_margin=0.0), clock=clock, sleep=clock.sleep)
    limiter.acquire()
    with pytest.raises(RateLimitTimeout):
        limiter.acquire(deadline=0.5)
    assert clock.sleeps == []


def test_shared_between_threads() -> None:
    limiter = RateLimiter(RateLimits(requests_per_second=50, safety_margin=0.0))
    sent: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(15):
            limiter.acquire()
            with lock:
                sent.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(sent) == 60
    sent.sort()
    for start in sent:
        assert sum(1 for t in sent if start <= t < start + 1.0) <= 50
    assert sent[-1] - sent[0] >= 0.9  # 60 requests at 50/s need at least a second


def test_invalid_limits() -> None:
    with pytest.raises(ValueError):
        RateLimits(requests_per_second=0)
    with pytest.raises(ValueError):
        RateLimits(bulk_imports_per_minute=0)
