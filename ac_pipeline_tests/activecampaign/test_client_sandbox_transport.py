"""The client against the real sandbox over 127.0.0.1: the rate limit, retries, and the stats the client
keeps of what it sent.

The sandbox and the client's limits to match are described in client_sandbox_helpers.py.
"""

from __future__ import annotations

import time

import pytest

from ac_pipeline.activecampaign import ActiveCampaignClient, NotFoundError, RateLimits, RetriesExhausted
from ac_pipeline.sandbox import SandboxServer
from ac_pipeline_tests.activecampaign.client_sandbox_helpers import (
    SANDBOX_LIMITS,
    SPEED,
    assert_no_key,
    connect,
    new_list,
)

# -- rate limit ------------------------------------------------------------------------------------------


def test_burst_at_matching_limits_sees_no_429(client: ActiveCampaignClient, sb: SandboxServer) -> None:
    n = 150
    started = time.monotonic()
    for _ in range(n):
        client.request("GET", "lists", params={"limit": 1})
    elapsed = time.monotonic() - started
    interval = 1.2 / SANDBOX_LIMITS.requests_per_second
    assert elapsed >= (n - 1) * interval * 0.95  # the limiter did space them
    assert elapsed < 15  # generous sanity bound
    assert client.stats.rate_limited == 0
    assert sb.admin.requests()["by_status"] == {"200": n}


def test_limits_higher_than_the_server_get_429s_but_no_retries(sb: SandboxServer) -> None:
    n = 80
    with connect(sb, limits=RateLimits().scaled(SPEED * 10), max_retries=0) as client:
        for _ in range(n):
            assert client.request("GET", "lists", params={"limit": 1})["lists"] == []
        stats = client.stats
    server = sb.admin.requests()
    assert stats.rate_limited > 0 and stats.retries == 0
    assert server["by_status"]["200"] == n
    assert server["by_status"]["429"] == stats.rate_limited == stats.responses_by_status[429]
    assert stats.requests == n + stats.rate_limited


def test_threads_share_one_budget(client: ActiveCampaignClient, sb: SandboxServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda i: client.sync_contact(f"t{i}@example.com"), range(60)))
    assert len({r["id"] for r in results}) == 60
    stats = client.stats
    assert stats.requests == 60 + stats.rate_limited and stats.retries == 0
    answered = sb.admin.requests()["by_status"]
    assert sum(count for status, count in answered.items() if status != "429") == 60
    assert answered.get("429", 0) == stats.rate_limited


# -- retries ---------------------------------------------------------------------------------------------


def test_5xx_and_dropped_connections_are_retried(sb: SandboxServer) -> None:
    sb.admin.set_faults("/api/3/*:500=0.1,503=0.1,drop=0.1")
    with connect(sb, max_retries=8) as client:
        vip = new_list(client)
        for i in range(40):
            contact = client.sync_contact(f"r{i}@example.com")
            client.set_list_status(contact["id"], vip["id"], 1)
        stats = client.stats
    assert stats.retries > 0 and stats.transport_errors > 0
    assert stats.responses_by_status.get(500, 0) + stats.responses_by_status.get(503, 0) > 0
    sb.admin.set_faults("")
    assert len(sb.admin.members(vip["id"])) == 40


def test_retries_exhausted_names_the_call(sb: SandboxServer) -> None:
    sb.admin.set_faults("/api/3/lists:503=1")
    with connect(sb, max_retries=2) as client:
        with pytest.raises(RetriesExhausted) as caught:
            client.request("GET", "lists")
        assert client.stats.retries == 2
    error = caught.value
    assert error.attempts == 3 and "GET lists" in str(error) and "HTTP 503" in str(error)
    assert sb.admin.requests()["by_status"] == {"503": 3}
    assert_no_key(error, vars(error))


def test_injected_429s_do_not_use_retries(sb: SandboxServer) -> None:
    sb.admin.set_faults("/api/3/*:429=0.3")
    with connect(sb, max_retries=0) as client:
        for _ in range(30):
            client.request("GET", "tags")
        stats = client.stats
    assert stats.rate_limited > 0 and stats.retries == 0


# -- stats -----------------------------------------------------------------------------------------------


def test_stats_match_what_the_server_saw(client: ActiveCampaignClient, sb: SandboxServer) -> None:
    vip = new_list(client)
    ann = client.sync_contact("ann@example.com")
    client.set_list_status(ann["id"], vip["id"], 1)
    client.contact_lists(ann["id"])
    client.contact_lists(ann["id"])
    with pytest.raises(NotFoundError):
        client.get_list(424242)
    stats = client.stats
    server = sb.admin.requests()
    assert stats.requests == server["total"] == 6
    assert stats.requests_by_endpoint == {
        "POST lists": 1,
        "POST contact/sync": 1,
        "POST contactLists": 1,
        "GET contacts/{id}/contactLists": 2,
        "GET lists/{id}": 1,
    }
    assert stats.responses_by_status == {int(k): v for k, v in server["by_status"].items()}
    assert stats.as_metadata()["requests"] == 6
    assert_no_key(stats, stats.as_metadata(), client)
