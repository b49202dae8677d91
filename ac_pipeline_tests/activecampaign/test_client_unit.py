"""Client behaviour the sandbox cannot pin down exactly, on scripted answers (httpx.MockTransport) and a fake clock.

The end-to-end tests against the sandbox are in test_client_sandbox_*.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
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
from ac_pipeline_tests.activecampaign.fakes import FakeClock

KEY = "unit-secret-key-0123456789"
Handler = Callable[[httpx.Request], httpx.Response]


def scripted(*answers: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    """A handler giving these answers in turn (the last one forever), and the requests it saw."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers[min(len(seen), len(answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handler, seen


def make_client(handler: Handler, clock: FakeClock, **kwargs) -> ActiveCampaignClient:
    kwargs.setdefault("limits", RateLimits(requests_per_second=1000))
    return ActiveCampaignClient(
        "https://acme.api-us1.com/",
        KEY,
        seed=1,
        clock=clock,
        sleep=clock.sleep,
        transport=httpx.MockTransport(handler),
        **kwargs,
    )


def ok(body: dict | None = None, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=body if body is not None else {})


def test_request_sends_key_header_and_json_and_normalises_path() -> None:
    handler, seen = scripted(ok({"lists": [], "meta": {"total": "0"}}))
    clock = FakeClock()
    with make_client(handler, clock) as client:
        assert client.request("GET", "/api/3/lists", params={"limit": 1}) == {"lists": [], "meta": {"total": "0"}}
        client.request("post", "contacts", json={"contact": {"email": "a@x.io"}})
    assert str(seen[0].url) == "https://acme.api-us1.com/api/3/lists?limit=1"
    assert seen[0].headers["Api-Token"] == KEY
    assert seen[1].method == "POST"
    assert json.loads(seen[1].content) == {"contact": {"email": "a@x.io"}}
    assert seen[1].headers["Content-Type"] == "application/json"


def test_empty_body_is_empty_dict_and_html_is_a_clear_error() -> None:
    handler, _ = scripted(httpx.Response(200, content=b""), httpx.Response(200, text="<html>login</html>"))
    with make_client(handler, FakeClock()) as client:
        assert client.request("DELETE", "contactTags/3") == {}
        with pytest.raises(ActiveCampaignError, match="ACTIVECAMPAIGN_API_URL"):
            client.request("GET", "lists")


def test_429_honours_fractional_retry_after_without_using_a_retry() -> None:
    handler, seen = scripted(
        httpx.Response(429, headers={"Retry-After": "0.012"}),
        httpx.Response(429, headers={"Retry-After": "0.5"}),
        ok({"lists": []}),
    )
    clock = FakeClock()
    with make_client(handler, clock, max_retries=0) as client:
        client.request("GET", "lists")
        stats = client.stats
    assert len(seen) == 3
    assert clock.sleeps == [pytest.approx(0.012), pytest.approx(0.5)]
    assert (stats.retries, stats.rate_limited, stats.rate_limit_waits) == (0, 2, 2)
    assert stats.rate_limit_wait_seconds == pytest.approx(0.512)
    assert stats.responses_by_status == {429: 2, 200: 1}


def test_endless_429_gives_up_at_the_rate_limit_deadline() -> None:
    handler, _ = scripted(httpx.Response(429, headers={"Retry-After": "10"}))
    clock = FakeClock()
    with make_client(handler, clock, rate_limit_timeout=60.0) as client:
        with pytest.raises(RetriesExhausted, match="rate limit") as caught:
            client.request("GET", "lists")
    assert clock.now <= 60.0
    assert caught.value.method == "GET" and caught.value.path == "lists"


def test_5xx_and_dropped_connections_are_retried_with_jittered_backoff() -> None:
    handler, seen = scripted(
        httpx.Response(503),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadTimeout("timed out"),
        httpx.Response(500),
        ok({"contact": {"id": "1"}}),
    )
    clock = FakeClock()
    with make_client(handler, clock, backoff_base=0.5, backoff_max=3.0) as client:
        assert client.request("POST", "contact/sync", json={"contact": {"email": "a@x.io"}}) == {"contact": {"id": "1"}}
        stats = client.stats
    assert len(seen) == 5
    assert stats.retries == 4 and stats.transport_errors == 2 and stats.rate_limited == 0
    caps = [0.5, 1.0, 2.0, 3.0]
    assert len(clock.sleeps) == 4
    assert all(0 <= slept <= cap for slept, cap in zip(clock.sleeps, caps, strict=True))


def test_seeded_backoff_is_reproducible() -> None:
    def sleeps() -> list[float]:
        handler, _ = scripted(httpx.Response(503), httpx.Response(503), ok())
        clock = FakeClock()
        with make_client(handler, clock) as client:
            client.request("GET", "lists")
        return clock.sleeps

    assert sleeps() == sleeps()


def test_retries_exhausted_names_method_path_and_last_error() -> None:
    handler, seen = scripted(httpx.Response(502))
    with make_client(handler, FakeClock(), max_retries=3) as client:
        with pytest.raises(RetriesExhausted) as caught:
            client.request("GET", "contacts/7")
    assert len(seen) == 4
    message = str(caught.value)
    assert "GET contacts/7" in message and "HTTP 502" in message and "4 attempts" in message
    assert caught.value.attempts == 4


def test_connect_error_points_at_the_url() -> None:
    handler, _ = scripted(httpx.ConnectError("Name or service not known"))
    with make_client(handler, FakeClock(), max_retries=1) as client:
        with pytest.raises(RetriesExhausted, match="ACTIVECAMPAIGN_API_URL"):
            client.request("GET", "lists")


def test_other_httpx_errors_are_wrapped_without_the_request() -> None:
    handler, seen = scripted(httpx.UnsupportedProtocol("Request URL has an unsupported protocol 'ftp://'."))
    with make_client(handler, FakeClock()) as client, pytest.raises(ActiveCampaignError) as caught:
        client.request("GET", "lists")
    assert len(seen) == 1
    assert "UnsupportedProtocol" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__context__ is None


@pytest.mark.parametrize(
    ("response", "error", "text"),
    [
        (httpx.Response(403, json={"message": "No Result found"}), AuthError, "ACTIVECAMPAIGN_API_KEY"),
        (
            httpx.Response(404, json={"message": "No Result found for List with id 9"}),
            NotFoundError,
            "No Result found for List with id 9",
        ),
        (httpx.Response(400, json={}), ActiveCampaignError, "HTTP 400"),
    ],
)
def test_permanent_errors_are_not_retried(response: httpx.Response, error: type, text: str) -> None:
    handler, seen = scripted(response)
    with make_client(handler, FakeClock()) as client:
        with pytest.raises(error, match=text):
            client.request("GET", "lists/9")
    assert len(seen) == 1


def test_422_carries_code_title_and_field() -> None:
    body = {
        "errors": [
            {
                "title": "Email address already exists in the system",
                "detail": "",
                "code": "duplicate",
                "source": {"pointer": "/data/attributes/email"},
            }
        ]
    }
    handler, _ = scripted(httpx.Response(422, json=body))
    with make_client(handler, FakeClock()) as client:
        with pytest.raises(ValidationError) as caught:
            client.request("POST", "contacts", json={"contact": {"email": "a@x.io"}})
    assert str(caught.value) == (
        "ActiveCampaign rejected email: Email address already exists in the system (code duplicate)"
    )
    assert (caught.value.code, caught.value.field, caught.value.status_code) == ("duplicate", "email", 422)


def test_bulk_import_rate_limit_400_waits_and_resends_without_a_retry() -> None:
    limited = httpx.Response(
        400,
        json={
            "success": 0,
            "message": "Rate limit exceeded.",
            "failureReasons": ["Up to 100 imports may be requested per minute."],
        },
    )
    handler, seen = scripted(limited, limited, ok({"Success": 1, "queued_contacts": 2, "batchId": "b-1"}))
    clock = FakeClock()
    limits = RateLimits(requests_per_second=1000, bulk_imports_per_minute=100)
    with make_client(handler, clock, limits=limits, max_retries=0) as client:
        assert client.bulk_import([{"email": "a@x.io"}, {"email": "b@x.io"}]) == "b-1"
        stats = client.stats
    assert len(seen) == 3
    assert (stats.retries, stats.rate_limited) == (0, 2)
    # The server said no although our window had room: pause one slot (0.6 s), then twice that.
    assert clock.sleeps == [pytest.approx(0.6), pytest.approx(1.2)]


def test_bulk_import_validation_rejection_maps_failures_to_indexes() -> None:
    body = {
        "success": 0,
        "message": "JSON payload did not pass validation.",
        "failureReasons": [{"contact": 1, "failureReason": "Field' email' incorrect format"}],
    }
    handler, seen = scripted(httpx.Response(400, json=body))
    with make_client(handler, FakeClock()) as client:
        with pytest.raises(BulkImportRejected) as caught:
            client.bulk_import([{"email": "a@x.io"}, {"email": "nope"}])
    assert len(seen) == 1
    assert caught.value.failed_indexes == {1}
    assert caught.value.failures[0].reason == "Field' email' incorrect format"
    assert "#1" in str(caught.value)


def test_bulk_import_checks_size_before_sending() -> None:
    handler, seen = scripted(ok())
    with make_client(handler, FakeClock()) as client:
        with pytest.raises(ValueError, match="at most 250"):
            client.bulk_import([{"email": f"p{i}@x.io"} for i in range(251)])
        with pytest.raises(ValueError, match="400,000"):
            client.bulk_import([{"email": f"p{i}@x.io", "first_name": "x" * 2000} for i in range(200)])
        with pytest.raises(ValueError):
            client.bulk_import([])
    assert seen == []


def test_import_info_false_status_and_lowercased_failures() -> None:
    handler, _ = scripted(
        ok({"status": False}),
        ok({"status": "completed", "success": [12, "13"], "failure": ["Bad@X.io"]}),
    )
    with make_client(handler, FakeClock()) as client:
        first = client.import_info("b-1")
        assert (first.status, first.done, first.failed) == (None, False, False)
        second = client.import_info("b-1")
    assert second.done and not second.failed
    assert second.success == ["12", "13"] and second.failure == ["bad@x.io"]


def test_key_never_leaves_the_header() -> None:
    leaky = httpx.Response(403, json={"message": f"Invalid key {KEY}"})
    handler, _ = scripted(leaky)
    with make_client(handler, FakeClock(), max_retries=0) as client:
        with pytest.raises(AuthError) as caught:
            client.request("GET", "lists")
        texts = [
            repr(client),
            str(client.stats),
            repr(client.limits),
            str(caught.value),
            repr(caught.value),
            repr(vars(caught.value)),
        ]
    assert caught.value.__cause__ is None and caught.value.__context__ is None
    for text in texts:
        assert KEY not in text


def test_stats_group_requests_by_endpoint_template() -> None:
    handler, _ = scripted(ok({"contactLists": []}))
    with make_client(handler, FakeClock()) as client:
        client.contact_lists(5)
        client.contact_lists("6")
        client.request("GET", "/api/3/lists")
        assert client.stats.requests_by_endpoint == {"GET contacts/{id}/contactLists": 2, "GET lists": 1}
        assert client.stats.requests == 3
        assert client.stats.as_metadata()["requests"] == 3


def test_bad_configuration_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match="ACTIVECAMPAIGN_API_KEY"):
        ActiveCampaignClient("https://acme.api-us1.com", " ")
    with pytest.raises(ValueError, match="https://"):
        ActiveCampaignClient("acme.api-us1.com", KEY)


# -- list memberships, on answers shaped like the real API's ------------------------------------------------


def contact(contact_id: int) -> dict:
    return {"id": str(contact_id), "email": f"p{contact_id}@x.io", "contactLists": []}


def record(contact_id: int, list_id: int, status: int, udate: str = "2024-05-01T10:00:00-05:00") -> dict:
    """A side-loaded contactLists record, as GET contacts?include=contactLists answers it (ids as strings)."""
    return {
        "contact": str(contact_id),
        "list": str(list_id),
        "status": str(status),
        "udate": udate,
        "unsubreason": "",
        "campaign": None,
        "message": None,
        "unsubscribeAutomation": None,
        "ip4Unsub": "0",
        "sourceid": "0",
        "id": str(1000 * list_id + contact_id),
    }


def memberships_page(contact_ids: range, list_id: int, status: int) -> httpx.Response:
    """A page of members of `list_id`; each is also on list 99, whose record comes first."""
    records = [r for i in contact_ids for r in (record(i, 99, 1), record(i, list_id, status, f"udate-{i}"))]
    return ok({"contacts": [contact(i) for i in contact_ids], "contactLists": records, "meta": {"total": "101"}})


def test_iter_list_memberships_pairs_each_contact_with_its_record_for_the_list() -> None:
    handler, seen = scripted(memberships_page(range(1, 101), 7, 2), memberships_page(range(101, 102), 7, 2))
    with make_client(handler, FakeClock()) as client:
        pairs = list(client.iter_list_memberships(7, 2))
    assert len(pairs) == 101
    assert all(c["id"] == r["contact"] and r["list"] == "7" and r["status"] == "2" for c, r in pairs)
    assert pairs[-1][1]["udate"] == "udate-101"
    assert len(seen) == 2  # one request per 100 contacts, paged by id
    first, second = (dict(request.url.params) for request in seen)
    assert first == {
        "listid": "7",
        "status": "2",
        "orders[id]": "ASC",
        "limit": "100",
        "include": "contactLists",
        "id_greater": "0",
    }
    assert second["id_greater"] == "100"


def test_iter_list_memberships_leaves_out_a_record_with_another_status() -> None:
    answer = ok({"contacts": [contact(1), contact(2)], "contactLists": [record(1, 7, 2), record(2, 7, 1)]})
    handler, _ = scripted(answer)
    with make_client(handler, FakeClock()) as client:
        assert [c["id"] for c, _ in client.iter_list_memberships("7", 2)] == ["1"]


def test_iter_list_memberships_without_the_record_is_an_error() -> None:
    handler, _ = scripted(ok({"contacts": [contact(1)], "contactLists": [record(1, 99, 2)]}))
    with make_client(handler, FakeClock()) as client:
        with pytest.raises(ActiveCampaignError, match="without its contactList record for list 7"):
            list(client.iter_list_memberships(7, 2))
        with pytest.raises(ValueError, match="list status"):
            list(client.iter_list_memberships(7, 5))


def test_set_list_status_returns_the_contact_list_record() -> None:
    stored = {**record(3, 7, 2, "2024-05-02T11:12:13-05:00"), "status": 2}
    handler, seen = scripted(ok({"contacts": [contact(3)], "contactList": stored}), ok({"contacts": [contact(3)]}))
    with make_client(handler, FakeClock()) as client:
        assert client.set_list_status("3", 7, 2) == stored
        with pytest.raises(ActiveCampaignError, match="without the contactList record"):
            client.set_list_status(3, 7, 2)
    # The published request schema's types: strings.
    assert json.loads(seen[0].content) == {"contactList": {"list": "7", "contact": "3", "status": "2"}}


def test_public_names_stay_importable_from_client_and_package() -> None:
    from ac_pipeline.activecampaign import ClientStats, ImportInfo
    from ac_pipeline.activecampaign.client import (
        MAX_BULK_BODY_BYTES,
        MAX_BULK_CONTACTS,
        ActiveCampaignClient,
        RateLimits,
    )
    from ac_pipeline.activecampaign.client import ClientStats as ClientStatsFromClient
    from ac_pipeline.activecampaign.client import ImportInfo as ImportInfoFromClient

    assert (MAX_BULK_CONTACTS, MAX_BULK_BODY_BYTES) == (250, 400_000)
    assert ClientStats is ClientStatsFromClient and ImportInfo is ImportInfoFromClient
    assert ActiveCampaignClient.__module__ == "ac_pipeline.activecampaign.client"
    assert RateLimits().requests_per_second == 5.0
