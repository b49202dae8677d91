"""Bulk import: validation, per-minute caps, the asynchronous batch life cycle and per-contact failures."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from ac_pipeline.sandbox import SandboxServer
from ac_pipeline.sandbox.bulk import VALIDATION_MESSAGE
from ac_pipeline_tests.sandbox.helpers import Api, MakeSandbox


def people(count: int, prefix: str = "p", **extra: object) -> list[dict[str, object]]:
    return [{"email": f"{prefix}{i}@example.com", **extra} for i in range(count)]


def test_accepted_batch_answer(api: Api) -> None:
    response = api.bulk(people(3), exclude_automations=True)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"Success", "queued_contacts", "batchId", "message"}
    assert (body["Success"], body["queued_contacts"], body["message"]) == (1, 3, "Contact import queued")
    uuid.UUID(body["batchId"])


def test_batch_life_cycle_and_atomic_application(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(speed=4.0, import_delay=4.0)  # one second from accepted to applied
    with Api(sb) as api:
        list_id = api.make_list()
        batch = api.bulk(people(50, subscribe=[{"listid": list_id}])).json()["batchId"]
        seen: list[object] = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            # Members first, then the status: a batch not completed after the members were read had
            # not landed when they were read, so they must be none (nothing lands before the whole batch).
            members = sb.admin.members(list_id)
            status = api.get("/import/info", params={"batchId": batch}).json()["status"]
            if not seen or seen[-1] != status:
                seen.append(status)
            if status == "completed":
                assert len(members) in (0, 50)  # read just before, or just after, the batch landed
                assert len(sb.admin.members(list_id)) == 50
                break
            assert members == []
            time.sleep(0.05)
    # Every phase in order (a slow machine may poll past a short one, never go back to one).
    phases = [False, "waiting", "active", "completed"]
    assert seen[-1] == "completed" and len(seen) >= 3
    assert [phases.index(status) for status in seen] == sorted(phases.index(status) for status in seen)


def test_batches_are_applied_without_anyone_polling(sandbox: SandboxServer, api: Api) -> None:
    list_id = api.make_list()
    api.bulk(people(10, subscribe=[{"listid": list_id}]))
    deadline = time.monotonic() + 5
    while sandbox.admin.members(list_id) == [] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(sandbox.admin.members(list_id)) == 10


def test_per_contact_failures_are_not_applied_and_listed(sandbox: SandboxServer, api: Api) -> None:
    list_id = api.make_list()
    opted_out = api.make_contact("opted@example.com")
    api.subscribe(opted_out, list_id)
    sandbox.admin.unsubscribe("opted@example.com", list_id)
    api.make_contact("old@example.com", firstName="Old")
    sandbox.admin.exclude(["Blocked@example.com"])

    contacts = [
        {"email": "new1@example.com", "subscribe": [{"listid": list_id}]},
        {"email": "bad@@example", "subscribe": [{"listid": list_id}]},
        {"email": "blocked@example.com", "subscribe": [{"listid": list_id}]},
        {"email": "opted@example.com", "first_name": "Changed", "subscribe": [{"listid": list_id}]},
        {"email": "old@example.com", "first_name": "Renamed", "subscribe": [{"listid": list_id}]},
        {"email": "New2@Example.com", "subscribe": [{"listid": list_id}]},
    ]
    accepted = api.bulk(contacts).json()
    assert accepted["queued_contacts"] == 6  # failures still count as queued
    info = api.wait_completed(accepted["batchId"])

    new_ids = [
        api.get("/contacts", params={"email": e}).json()["contacts"][0]["id"]
        for e in ("new1@example.com", "new2@example.com")
    ]
    assert info["success"] == new_ids  # newly created only: the updated contact is in neither list
    assert info["failure"] == ["bad@@example", "blocked@example.com", "opted@example.com"]
    reasons = sandbox.admin.import_details(accepted["batchId"])["reasons"]
    assert "exclusion" in reasons["blocked@example.com"] and "unsubscribed" in reasons["opted@example.com"]

    assert sandbox.admin.members(list_id) == ["old@example.com", "new1@example.com", "new2@example.com"]
    opted_membership = sandbox.admin.membership("opted@example.com", list_id)
    assert (opted_membership["status"], opted_membership["unsubscribed_by"]) == (2, "contact")
    opted = api.get("/contacts", params={"email": "opted@example.com"}).json()["contacts"][0]
    assert opted["firstName"] == ""  # not applied at all
    old = api.get("/contacts", params={"email": "old@example.com"}).json()["contacts"][0]
    assert old["firstName"] == "Renamed"
    assert api.get("/contacts", params={"email": "blocked@example.com"}).json()["meta"]["total"] == "0"


def test_tags_fields_and_unsubscribe(sandbox: SandboxServer, api: Api) -> None:
    news, promo = api.make_list("News"), api.make_list("Promo")
    field_id = api.make_field("Tier")
    api.post("/tags", json={"tag": {"tag": "VIP"}})
    contact = {
        "email": "t@example.com",
        "first_name": "T",
        "last_name": "Ester",
        "phone": "555",
        "tags": ["vip", "Brand new"],
        "fields": [{"id": int(field_id), "value": "gold"}],
        "subscribe": [{"listid": news}],
        "unsubscribe": [{"listid": promo}],
    }
    api.wait_completed(api.bulk([contact, {"email": "u@example.com"}]).json()["batchId"])
    tags = api.get("/tags").json()["tags"]
    assert [t["tag"] for t in tags] == ["VIP", "Brand new"]  # matched ignoring case, or created
    contact_id = api.get("/contacts", params={"email": "t@example.com"}).json()["contacts"][0]["id"]
    values = api.get(f"/contacts/{contact_id}/fieldValues").json()["fieldValues"]
    assert [(v["field"], v["value"]) for v in values] == [(field_id, "gold")]
    assert sandbox.admin.members(news) == ["t@example.com"]
    assert sandbox.admin.membership("t@example.com", promo)["unsubscribed_by"] == "import"


def test_validation_rejects_the_whole_batch(sandbox: SandboxServer, api: Api) -> None:
    list_id = api.make_list()
    cases: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = [
        (
            [{"email": "ok@example.com"}, {"first_name": "no email"}],
            [{"contact": 1, "failureReason": "Field' email' incorrect format"}],
        ),
        (
            [{"email": "ok@example.com"}, {"email": "a@example.com"}, {"email": 123}],
            [{"contact": 2, "failureReason": "Field' email' incorrect format"}],
        ),
        (
            [{"email": "ok@example.com", "first_name": {"x": 1}}],
            [{"contact": 0, "failureReason": "Field' first_name' incorrect format"}],
        ),
    ]
    for contacts, reasons in cases:
        response = api.bulk(contacts)
        assert response.status_code == 400
        assert response.json() == {"success": 0, "message": VALIDATION_MESSAGE, "failureReasons": reasons}
    structural: list[list[dict[str, Any]]] = [
        [{"email": "ok@example.com", "tags": "VIP"}],
        [{"email": "ok@example.com", "subscribe": [{"listid": "999"}]}],
        [{"email": "ok@example.com", "fields": [{"id": 999, "value": "x"}]}],
        [{"email": "ok@example.com", "subscribe": {"listid": list_id}}],
        [],
    ]
    for contacts in structural:
        response = api.bulk(contacts)
        assert response.status_code == 400 and response.json()["success"] == 0, contacts
    bad_json = api.post("/import/bulk_import", content=b"{nope", headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400 and bad_json.json()["message"] == VALIDATION_MESSAGE
    assert sandbox.admin.pending_imports() == 0
    assert api.get("/import/bulk_import").json() == {"outstanding": [], "recentlyCompleted": []}
    assert api.get("/contacts").json()["meta"]["total"] == "0"


def test_at_most_250_contacts_and_under_400000_bytes(api: Api) -> None:
    too_many = api.bulk(people(251))
    assert too_many.status_code == 400
    assert too_many.json()["failureReasons"][0]["contact"] == 250
    assert api.bulk(people(250)).status_code == 200

    big = people(250, first_name="x" * 1560)
    assert len(json.dumps({"contacts": big}).encode()) >= 400_000
    too_big = api.bulk(big)
    assert too_big.status_code == 400
    assert too_big.json()["message"] == VALIDATION_MESSAGE and "400,000" in too_big.json()["failureReasons"][0]
    assert api.bulk(people(250, first_name="x" * 1400)).status_code == 200


def test_per_minute_caps_for_single_and_multi_contact_imports(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(speed=20.0)  # a "minute" lasts 3 s; 100 requests per second
    with Api(sb) as api:
        singles = [api.bulk([{"email": f"s{i}@example.com"}]).status_code for i in range(21)]
        assert singles == [200] * 20 + [400]
        multis = [api.bulk(people(2, prefix=f"m{i}-")) for i in range(101)]
        assert [r.status_code for r in multis] == [200] * 100 + [400]
        assert multis[-1].json() == {
            "success": 0,
            "message": "Rate limit exceeded.",
            "failureReasons": [
                "Up to 100 imports may be requested per minute.Please batch contacts into larger "
                "requests, or retry this request in a minute."
            ],
        }
        refused_single = api.bulk([{"email": "late@example.com"}])
        assert refused_single.status_code == 400 and "20 single-contact" in refused_single.json()["failureReasons"][0]
        sb.admin.wait_for_imports()
        assert api.get("/contacts").json()["meta"]["total"] == str(20 + 200)


def test_import_info_errors_and_summary(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(speed=100.0, import_delay=1000.0)  # ten seconds: stays outstanding during the test
    with Api(sb) as api:
        missing = api.get("/import/info")
        assert missing.status_code == 400
        assert missing.json() == {"success": 0, "message": "'batchId' is a required field."}
        unknown = api.get("/import/info", params={"batchId": "no-such-batch"})
        assert unknown.status_code == 404 and unknown.json()["success"] == 0
        api.bulk(people(3))
        summary = api.get("/import/bulk_import").json()
        assert [(d["batches"], d["contacts"]) for d in summary["outstanding"]] == [("1", "3")]
        assert summary["recentlyCompleted"] == []


def test_later_rows_of_a_batch_see_what_earlier_rows_did(sandbox: SandboxServer, api: Api) -> None:
    """The batch applies as if contact by contact in order: a contact created by one row is updated by a later
    one, and a row subscribing someone an earlier row unsubscribed fails as bulk import's rows do."""
    news, promo = api.make_list("News"), api.make_list("Promo")
    api.make_contact("known@example.com", firstName="Known")
    contacts = [
        {"email": "twice@example.com", "first_name": "First", "subscribe": [{"listid": news}]},
        {"email": "known@example.com", "last_name": "Later", "unsubscribe": [{"listid": promo}]},
        {"email": "Twice@Example.com", "last_name": "Second", "unsubscribe": [{"listid": promo}]},
        {"email": "twice@example.com", "phone": "555", "subscribe": [{"listid": promo}]},
        {"email": "other@example.com"},
    ]
    info = api.wait_completed(api.bulk(contacts).json()["batchId"])
    ids = {
        e: api.get("/contacts", params={"email": e}).json()["contacts"][0]
        for e in ("twice@example.com", "other@example.com", "known@example.com")
    }
    assert info["success"] == [ids["twice@example.com"]["id"], ids["other@example.com"]["id"]]  # created, in order
    assert int(ids["twice@example.com"]["id"]) < int(ids["other@example.com"]["id"])
    assert info["failure"] == ["twice@example.com"]  # the fourth row: unsubscribed from Promo by the third
    twice = ids["twice@example.com"]
    assert (twice["firstName"], twice["lastName"], twice["phone"]) == ("First", "Second", "")
    known = ids["known@example.com"]
    assert (known["firstName"], known["lastName"]) == ("Known", "Later")
    assert sandbox.admin.members(news) == ["twice@example.com"]
    assert sandbox.admin.membership("twice@example.com", promo)["unsubscribed_by"] == "import"
