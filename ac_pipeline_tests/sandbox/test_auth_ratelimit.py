"""The Api-Token check and the 5-requests-per-second sliding window."""

from __future__ import annotations

import time

import httpx
import pytest

from ac_pipeline.sandbox import SandboxServer, ratelimit
from ac_pipeline.sandbox.ratelimit import SlidingWindow, format_retry_after
from ac_pipeline_tests.sandbox.helpers import Api, MakeSandbox


def raw_client(sb: SandboxServer, key: str | None = None) -> httpx.Client:
    headers = {"Api-Token": key} if key is not None else {}
    return httpx.Client(base_url=f"{sb.url}/api/3", headers=headers, timeout=10.0)


def test_wrong_or_missing_key_is_403_and_changes_nothing(sandbox: SandboxServer, api: Api) -> None:
    for key in ("wrong-key", None):
        with raw_client(sandbox, key) as client:
            response = client.post("/contacts", json={"contact": {"email": "x@example.com"}})
        assert response.status_code == 403
        assert set(response.json()) == {"message"}
        assert sandbox.api_key not in response.text
        assert all(sandbox.api_key not in value for value in response.headers.values())
        assert response.headers["RateLimit-Limit"] == "5"
    assert api.get("/contacts").json()["meta"]["total"] == "0"


def test_403s_do_not_use_the_budget(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(speed=2.0)  # 5 requests per 0.5 s
    with raw_client(sb, "wrong") as bad, raw_client(sb, sb.api_key) as good:
        assert [bad.get("/lists").status_code for _ in range(8)] == [403] * 8
        assert [good.get("/lists").status_code for _ in range(5)] == [200] * 5


def test_a_burst_gets_five_through_then_429_with_headers(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(speed=2.0)  # window 0.5 s: a burst of 12 fast requests fits well inside it
    with raw_client(sb, sb.api_key) as client:
        responses = [client.get("/lists") for _ in range(12)]
        statuses = [r.status_code for r in responses]
        assert statuses == [200] * 5 + [429] * 7
        assert [r.headers["RateLimit-Remaining"] for r in responses[:5]] == ["4", "3", "2", "1", "0"]
        for rejected in responses[5:]:
            assert rejected.headers["RateLimit-Limit"] == "5" and rejected.headers["RateLimit-Remaining"] == "0"
            assert 0 < float(rejected.headers["Retry-After"]) <= 0.5
            assert "." in rejected.headers["Retry-After"]  # fractional when sped up

        # A write rejected by the limit changes nothing.
        assert client.post("/contacts", json={"contact": {"email": "late@example.com"}}).status_code == 429
        time.sleep(float(responses[-1].headers["Retry-After"]) + 0.05)
        after = client.get("/contacts", params={"email": "late@example.com"})
        assert after.status_code == 200 and after.json()["meta"]["total"] == "0"
        assert sb.admin.requests()["by_status"]["429"] == 8


def test_retry_after_is_whole_seconds_at_speed_one(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(speed=1.0)
    with raw_client(sb, sb.api_key) as client:
        statuses = [client.get("/groups") for _ in range(6)]
    assert [r.status_code for r in statuses] == [200] * 5 + [429]
    assert statuses[-1].headers["Retry-After"] == "1"


def test_sliding_window_has_no_burst_beyond_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(ratelimit.time, "monotonic", lambda: now[0])
    window = SlidingWindow(limit=5, window=1.0)
    accepted = []
    for step in range(30):  # one attempt every 0.1 s for 3 s
        now[0] = 100.0 + step * 0.1
        if window.acquire().accepted:
            accepted.append(round(now[0] - 100.0, 1))
    assert accepted == [0.0, 0.1, 0.2, 0.3, 0.4, 1.0, 1.1, 1.2, 1.3, 1.4, 2.0, 2.1, 2.2, 2.3, 2.4]
    for start in accepted:  # at most 5 in any 1 s span
        assert sum(start <= t < start + 1.0 for t in accepted) <= 5
    now[0] = 102.45
    refused = window.acquire()
    assert not refused.accepted and refused.retry_after == pytest.approx(0.55)


def test_format_retry_after() -> None:
    assert format_retry_after(0.2, speed=1) == "1"
    assert format_retry_after(1.2, speed=1) == "2"
    assert format_retry_after(0.0114, speed=100) == "0.012"
    assert format_retry_after(0.0, speed=100) == "0.001"
