"""The limiter alone, on a fake clock: exact and instant."""

from __future__ import annotations

import threading
import time

import pytest

from ac_pipeline.activecampaign.ratelimit import RateLimiter, RateLimits, RateLimitTimeout
from ac_pipeline_tests.activecampaign.fakes import FakeClock


def fake_limiter(**limits) -> tuple[RateLimiter, FakeClock]:
    clock = FakeClock()
    return RateLimiter(RateLimits(**limits), clock=clock, sleep=clock.sleep), clock


def test_requests_never_exceed_the_rate_in_any_second() -> None:
    limiter, clock = fake_limiter(requests_per_second=5, safety_margin=0.0)
    times = []
    for _ in range(23):
        limiter.acquire()
        times.append(clock.now)
    for start in times:
        assert sum(1 for t in times if start <= t < start + 1.0 - 1e-9) <= 5
    assert times[-1] == pytest.approx(22 * 0.2)  # evenly spaced: no burst


def test_safety_margin_stretches_the_interval() -> None:
    limiter, clock = fake_limiter(requests_per_second=5, safety_margin=0.1)
    for _ in range(6):
        limiter.acquire()
    assert clock.now == pytest.approx(5 * 0.22)


def test_scaled_limits_match_a_faster_sandbox() -> None:
    scaled = RateLimits().scaled(100)
    assert (scaled.requests_per_second, scaled.bulk_imports_per_minute) == (500, 10_000)
    assert scaled.single_contact_imports_per_minute == 2_000


def test_bulk_budgets_are_sliding_windows_and_also_count_as_requests() -> None:
    limiter, clock = fake_limiter(
        requests_per_second=100, bulk_imports_per_minute=100, single_contact_imports_per_minute=20, safety_margin=0.0
    )
    for _ in range(100):  # a minute's allowance goes out at the pace of the per-second budget
        limiter.acquire("multi")
    assert clock.now == pytest.approx(0.99)
    limiter.acquire()  # a plain request is not held back by the bulk budgets
    assert clock.now == pytest.approx(1.0)
    limiter.acquire("multi")  # the 101st waits until the first leaves the minute
    assert clock.now == pytest.approx(60.0)
    for _ in range(20):
        limiter.acquire("single")
    start = clock.now
    limiter.acquire("single")  # 20 single-contact imports in any minute
    assert clock.now == pytest.approx(start - 0.2 + 60.0, abs=0.02)


def test_a_refused_bulk_request_gives_its_slot_back() -> None:
    # A 429 turns a request away before the server counts it as an import: it must not take a slot of the
    # window too, or every throttled import costs two and a large sync waits a whole extra window.
    limiter, clock = fake_limiter(requests_per_second=100, bulk_imports_per_minute=100, safety_margin=0.0)
    for i in range(100):
        limiter.acquire("multi")
        if i % 10 == 0:  # ten of them answered 429, and sent again
            limiter.refused("multi")
            limiter.acquire("multi")
    assert clock.now == pytest.approx(1.09)  # 110 attempts, 100 imports: all inside the first minute
    limiter.acquire("multi")  # the 101st import waits for the first accepted one to leave the minute
    assert clock.now == pytest.approx(60.01)


def test_refused_only_gives_back_this_threads_last_unanswered_slot() -> None:
    limiter, clock = fake_limiter(requests_per_second=100, bulk_imports_per_minute=100, safety_margin=0.0)
    for _ in range(100):
        limiter.acquire("multi")
        limiter.answered("multi")  # answered: counted, and nothing is left for refused to give back
        limiter.refused("multi")
    elsewhere = threading.Thread(target=limiter.refused, args=("multi",))  # another thread has no slot to give
    elsewhere.start()
    elsewhere.join()
    limiter.acquire("multi")  # all 100 slots still held: the 101st waits for the first to leave the minute
    assert clock.now == pytest.approx(60.0)


def test_bulk_windows_shrink_with_the_speed() -> None:
    limiter, clock = fake_limiter(**vars(RateLimits(safety_margin=0.0).scaled(20)))
    for _ in range(101):
        limiter.acquire("multi")
    assert clock.now == pytest.approx(3.0)  # a sandbox at speed 20 allows 100 imports in any 3 s


def test_pause_holds_back_everything_and_bulk_only_pause_only_bulk() -> None:
    limiter, _ = fake_limiter(requests_per_second=1000, safety_margin=0.0)
    limiter.pause(0.25)
    assert limiter.acquire() == pytest.approx(0.25)
    limiter.pause(5.0, bulk_only=True)
    assert limiter.acquire() == pytest.approx(0.001)
    assert limiter.acquire("multi") == pytest.approx(5.0 - 0.001)


def test_deadline_raises_instead_of_sleeping() -> None:
    limiter, clock = fake_limiter(requests_per_second=1, safety_margin=0.0)
    limiter.acquire()
    with pytest.raises(RateLimitTimeout):
        limiter.acquire(deadline=0.5)
    assert clock.sleeps == []


def test_shared_between_threads() -> None:
    limiter = RateLimiter(RateLimits(requests_per_second=100, safety_margin=0.0))
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
        assert sum(1 for t in sent if start <= t < start + 0.1) <= 11  # 100/s: about 10 per 100 ms
    assert sent[-1] - sent[0] >= 0.55  # 60 requests at 100/s need 0.59 s


def test_invalid_limits() -> None:
    with pytest.raises(ValueError):
        RateLimits(requests_per_second=0)
    with pytest.raises(ValueError):
        RateLimits(bulk_imports_per_minute=0)
    with pytest.raises(ValueError):
        RateLimits(safety_margin=1.5)
