"""The client against the real sandbox over 127.0.0.1: every call, the error mapping, the rate limit, retries.

The sandbox runs 100 times faster than real time (its windows shrink by 100: 5 requests per 10 ms), so a
client with the documented limits scaled by 100 is the real setup, sped up. Its safety margin is wider than the
default: in a 10 ms window the scheduling jitter of a Python server on a busy 2-core machine weighs more than
network jitter does in the real one-second window, and the tests assert that no 429 happens at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from ac_pipeline.activecampaign import (
    ActiveCampaignClient,
    ActiveCampaignError,
    AuthError,
    BulkImportRejected,
    NotFoundError,
    RateLimits,
    RetriesExhausted,
    ValidationError,
)
from ac_pipeline.sandbox import SandboxServer

SPEED = 100.0
KEY = "sandbox-secret-key-5f2c9a"
SANDBOX_LIMITS = RateLimits(safety_margin=0.2).scaled(SPEED)


@pytest.fixture
def sb(make_sandbox: Callable[..., SandboxServer]) -> SandboxServer:
    return make_sandbox(api_key=KEY, speed=SPEED, seed=0)


def connect(sb: SandboxServer, **kwargs) -> ActiveCampaignClient:
    kwargs.setdefault("limits", SANDBOX_LIMITS)
    kwargs.setdefault("backoff_base", 0.01)
    kwargs.setdefault("backoff_max", 0.1)
    kwargs.setdefault("timeout", 10.0)
    kwargs.setdefault("seed", 0)
    return ActiveCampaignClient(sb.url, sb.api_key, **kwargs)


@pytest.fixture
def client(sb: SandboxServer) -> Iterator[ActiveCampaignClient]:
    with connect(sb) as ac:
        yield ac


def new_list(client: ActiveCampaignClient, name: str = "Audience: VIP") -> dict:
    return client.create_list(name, sender_url="https://shop.example", sender_reminder="You bought from us.")


def assert_no_key(*texts: object) -> None:
    for text in texts:
        assert KEY not in str(text)
        assert KEY not in repr(text)


# -- account, lists, groups ------------------------------------------------------------------------------


def test_check_connection(client: ActiveCampaignClient, sb: SandboxServer) -> None:
    info = client.check_connection()
    assert info["api_url"] == client.api_url
    assert info["lists_total"] == 0
    assert "Admin" in info["groups"]
    assert_no_key(info, client, client.stats)


def test_wrong_key_is_an_auth_error_that_does_not_repeat_the_key(sb: SandboxServer) -> None:
    wrong = "wrong-key-3141592653"
    with ActiveCampaignClient(sb.url, wrong, limits=SANDBOX_LIMITS) as bad:
        with pytest.raises(AuthError) as caught:
            bad.check_connection()
        assert "ACTIVECAMPAIGN_API_KEY" in str(caught.value)
        assert caught.value.status_code == 403
        assert bad.stats.retries == 0
        for text in (caught.value, repr(caught.value), vars(caught.value), bad, bad.stats):
            assert wrong not in str(text) and wrong not in repr(text)


def test_wrong_url_says_so(sb: SandboxServer) -> None:
    with ActiveCampaignClient(sb.url + "/not-the-api", sb.api_key, limits=SANDBOX_LIMITS, max_retries=0) as bad:
        with pytest.raises(ActiveCampaignError, match="ACTIVECAMPAIGN_API_URL"):
            bad.check_connection()


def test_lists_and_groups(client: ActiveCampaignClient) -> None:
    vip = new_list(client, "Audience: VIP")
    new_list(client, "Audience: VIP (old)")
    assert vip["name"] == "Audience: VIP" and vip["stringid"] == "audience-vip"
    assert client.find_list("Audience: VIP")["id"] == vip["id"]  # exact match among partial ones
    assert client.find_list("Audience") is None
    assert client.get_list(vip["id"])["name"] == "Audience: VIP"

    with pytest.raises(NotFoundError, match="No Result found for List with id 999999") as caught:
        client.get_list(999999)
    assert caught.value.status_code == 404

    admin = client.find_group("Admin")
    assert admin is not None and client.find_group("Nobody") is None
    assert [g["title"] for g in client.list_groups()] == ["Admin"]
    grant = client.grant_list_to_group(vip["id"], admin["id"])
    assert str(grant["list"]) == str(vip["id"]) and str(grant["group"]) == str(admin["id"])
    with pytest.raises(NotFoundError):
        client.grant_list_to_group(vip["id"], 999)


def test_create_list_missing_attribute_is_a_validation_error(client: ActiveCampaignClient) -> None:
    with pytest.raises(ValidationError) as caught:
        client.create_list("No sender", sender_url="", sender_reminder="x")
    assert caught.value.field == "sender_url"
    assert "ActiveCampaign rejected sender_url" in str(caught.value)


# -- fields, tags, contacts ------------------------------------------------------------------------------


def make_field(client: ActiveCampaignClient, title: str) -> dict:
    body = {"field": {"title": title, "type": "text", "perstag": title.upper().replace(" ", "_")}}
    return client.request("POST", "fields", json=body)["field"]


def test_fields_are_paginated(client: ActiveCampaignClient) -> None:
    for i in range(3):
        make_field(client, f"Field {i}")
    fields = client.list_fields()
    assert [f["title"] for f in fields] == ["Field 0", "Field 1", "Field 2"]
    assert all({"id", "title", "perstag"} <= f.keys() for f in fields)


def test_tags(client: ActiveCampaignClient) -> None:
    first = client.ensure_tags(["VIP", "Churn risk", "VIP"])
    assert set(first) == {"VIP", "Churn risk"}
    again = client.ensure_tags(["vip", "Churn risk", "New"])
    assert again["vip"] == first["VIP"] and again["Churn risk"] == first["Churn risk"]
    assert len(client.list_tags()) == 3
    assert client.create_tag("Other")["tag"] == "Other"


def test_contacts_memberships_and_tags(client: ActiveCampaignClient, sb: SandboxServer) -> None:
    vip = new_list(client)
    tier = make_field(client, "Tier")
    ann = client.sync_contact(
        "ann@example.com", first_name="Ann", last_name="Lee", phone="555", field_values={tier["id"]: "Gold"}
    )
    assert ann["email"] == "ann@example.com" and ann["firstName"] == "Ann"
    again = client.sync_contact("ann@example.com", last_name="Lee-Smith")
    assert again["id"] == ann["id"]
    assert client.find_contact("ann@example.com")["id"] == ann["id"]
    assert client.find_contact("nobody@example.com") is None

    assert str(client.set_list_status(ann["id"], vip["id"], 1)["status"]) == "1"
    assert sb.admin.members(vip["id"]) == ["ann@example.com"]
    memberships = client.contact_lists(ann["id"])
    assert [(m["list"], str(m["status"])) for m in memberships] == [(str(vip["id"]), "1")]
    client.set_list_status(ann["id"], vip["id"], 2)
    assert sb.admin.members(vip["id"]) == []
    with pytest.raises(ValueError):
        client.set_list_status(ann["id"], vip["id"], 3)

    tag_id = client.ensure_tags(["VIP"])["VIP"]
    contact_tag = client.add_contact_tag(ann["id"], tag_id)
    assert str(contact_tag["tag"]) == str(tag_id)
    with pytest.raises(NotFoundError):
        client.add_contact_tag(999999, tag_id)
    with pytest.raises(NotFoundError, match="No Result found"):
        client.contact_lists(999999)


def test_duplicate_contact_is_a_validation_error(client: ActiveCampaignClient) -> None:
    client.sync_contact("dup@example.com")
    with pytest.raises(ValidationError) as caught:
        client.request("POST", "/api/3/contacts", json={"contact": {"email": "dup@example.com"}})
    error = caught.value
    assert (error.status_code, error.code, error.field) == (422, "duplicate", "email")
    assert str(error) == "ActiveCampaign rejected email: Email address already exists in the system (code duplicate)"
    assert client.stats.retries == 0


def test_set_list_status_returns_what_activecampaign_stored(client: ActiveCampaignClient) -> None:
    vip = new_list(client)
    ann = client.sync_contact("ann@example.com")
    subscribed = client.set_list_status(ann["id"], vip["id"], 1)
    unsubscribed = client.set_list_status(ann["id"], vip["id"], 2)
    for stored, status in ((subscribed, "1"), (unsubscribed, "2")):
        assert (str(stored["list"]), str(stored["contact"]), str(stored["status"])) == (
            str(vip["id"]),
            str(ann["id"]),
            status,
        )
        assert stored["udate"]
    [membership] = client.contact_lists(ann["id"])
    assert membership["udate"] == unsubscribed["udate"]


def test_list_memberships_come_with_each_contacts_record(client: ActiveCampaignClient, sb: SandboxServer) -> None:
    vip, other = new_list(client), new_list(client, "Audience: Other")
    contacts = [client.sync_contact(f"{name}@example.com") for name in ("ann", "bob", "cy")]
    for person in contacts:
        client.set_list_status(person["id"], other["id"], 1)
        client.set_list_status(person["id"], vip["id"], 1)
    ann, bob, cy = contacts
    ours = client.set_list_status(bob["id"], vip["id"], 2)
    sb.admin.unsubscribe(cy["email"], vip["id"])  # the person's own unsubscribe

    unsubscribed = list(client.iter_list_memberships(vip["id"], 2))
    assert [contact["email"] for contact, _ in unsubscribed] == ["bob@example.com", "cy@example.com"]
    for contact, stored in unsubscribed:
        assert (str(stored["list"]), str(stored["contact"]), str(stored["status"])) == (
            str(vip["id"]),
            str(contact["id"]),
            "2",
        )
    assert unsubscribed[0][1]["udate"] == ours["udate"]  # the record of our unsubscribe, as it was answered
    active = list(client.iter_list_memberships(vip["id"], 1))
    assert [(contact["id"], str(stored["list"])) for contact, stored in active] == [(ann["id"], str(vip["id"]))]


def test_list_memberships_are_paged_by_id(client: ActiveCampaignClient) -> None:
    vip = new_list(client)
    info = client.wait_for_import(client.bulk_import(people(101, vip["id"])), poll_interval=0.01, timeout=20)
    assert info.done
    pairs = list(client.iter_list_memberships(vip["id"], 1))
    ids = [int(contact["id"]) for contact, _ in pairs]
    assert len(ids) == 101 and ids == sorted(ids) and len(set(ids)) == 101
    assert all(str(stored["contact"]) == contact["id"] and str(stored["status"]) == "1" for contact, stored in pairs)
    assert client.stats.requests_by_endpoint["GET contacts"] == 2  # 100, then 1


# -- bulk import -----------------------------------------------------------------------------------------


def people(n: int, list_id: str, start: int = 0) -> list[dict]:
    return [
        {"email": f"Person{i:04d}@Example.com", "first_name": f"P{i}", "subscribe": [{"listid": str(list_id)}]}
        for i in range(start, start + n)
    ]


def test_bulk_import_life_cycle_and_member_pagination(client: ActiveCampaignClient, sb: SandboxServer) -> None:
    vip = new_list(client)
    tier = make_field(client, "Tier")
    contacts = people(148, vip["id"])
    contacts[0]["fields"] = [{"id": int(tier["id"]), "value": "Gold"}]
    contacts[0]["tags"] = ["VIP"]
    contacts.append({"email": "Excluded@Example.com", "subscribe": [{"listid": str(vip["id"])}]})
    contacts.append({"email": "not-an-email", "subscribe": [{"listid": str(vip["id"])}]})
    sb.admin.exclude(["excluded@example.com"])

    batch_id = client.bulk_import(contacts)
    first = client.import_info(batch_id)
    assert not first.done and not first.failed
    info = client.wait_for_import(batch_id, poll_interval=0.01, timeout=20)
    assert info.done and not info.failed
    assert sorted(info.failure) == ["excluded@example.com", "not-an-email"]
    assert len(info.success) == 148

    members = list(client.iter_list_members(vip["id"]))
    assert len(members) == 148  # two pages: 100 + 48
    ids = [int(m["id"]) for m in members]
    assert ids == sorted(ids) and len(set(ids)) == 148
    assert client.stats.requests_by_endpoint["GET contacts"] == 2
    assert sorted(sb.admin.members(vip["id"])) == sorted(m["email"] for m in members)


def test_member_pagination_stops_on_a_full_last_page(client: ActiveCampaignClient) -> None:
    vip = new_list(client)
    info = client.wait_for_import(client.bulk_import(people(200, vip["id"])), poll_interval=0.01, timeout=20)
    assert info.done
    assert len(list(client.iter_list_members(vip["id"]))) == 200
    assert client.stats.requests_by_endpoint["GET contacts"] == 3  # 100, 100, then an empty page
    assert list(client.iter_list_members(vip["id"], status=2)) == []


def test_single_contact_import(client: ActiveCampaignClient) -> None:
    vip = new_list(client)
    info = client.wait_for_import(client.bulk_import(people(1, vip["id"])), poll_interval=0.01, timeout=20)
    assert info.done and len(info.success) == 1


def test_bulk_validation_rejection_maps_to_rows(client: ActiveCampaignClient) -> None:
    vip = new_list(client)
    contacts = people(5, vip["id"])
    contacts[3]["fields"] = [{"id": 4242, "value": "x"}]  # no such custom field
    with pytest.raises(BulkImportRejected) as caught:
        client.bulk_import(contacts)
    assert caught.value.failed_indexes == {3}
    assert "4242" in caught.value.failures[0].reason
    assert "nothing was queued" in str(caught.value)
    assert client.stats.retries == 0


def test_bulk_import_checks_size_before_sending(client: ActiveCampaignClient, sb: SandboxServer) -> None:
    with pytest.raises(ValueError, match="at most 250"):
        client.bulk_import(people(251, "1"))
    assert sb.admin.requests()["total"] == 0


def test_bulk_import_rate_limit_is_waited_out(sb: SandboxServer) -> None:
    # A client that believes bulk import allows 100 times more than it does: the sandbox answers
    # 400 "Rate limit exceeded.", and the client waits and resends without spending retries.
    limits = RateLimits(requests_per_second=500, bulk_imports_per_minute=1_000_000)
    with connect(sb, limits=limits, max_retries=0) as client:
        vip = new_list(client)
        batches = [client.bulk_import(people(2, vip["id"], start=2 * i)) for i in range(110)]
        stats = client.stats
    assert len(set(batches)) == 110
    assert stats.rate_limited >= 1 and stats.retries == 0
    by_status = sb.admin.requests()["by_path_status"]["POST /api/3/import/bulk_import"]
    # Mostly 400s from the bulk budget; a 429 from the request budget now and then is fine too.
    assert by_status["200"] == 110 and by_status["400"] + by_status.get("429", 0) == stats.rate_limited


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
