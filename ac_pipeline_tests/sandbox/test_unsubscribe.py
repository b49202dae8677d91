"""Who may put an unsubscribed contact back: contactLists status 1 does (as the real API), bulk import never."""

from __future__ import annotations

import pytest

from ac_pipeline.sandbox import SandboxAdminError, SandboxServer
from ac_pipeline_tests.sandbox.helpers import Api


def test_contact_lists_status_1_resubscribes_even_a_self_unsubscribe(sandbox: SandboxServer, api: Api) -> None:
    list_id = api.make_list()
    contact_id = api.make_contact("ann@example.com")
    api.subscribe(contact_id, list_id)
    assert sandbox.admin.unsubscribe("ANN@example.com", "Newsletter")["unsubscribed_by"] == "contact"
    assert sandbox.admin.members(list_id, status=2) == ["ann@example.com"]

    assert api.subscribe(contact_id, list_id, status=1).json()["contactList"]["status"] == 1
    membership = sandbox.admin.membership("ann@example.com", list_id)
    assert (membership["email"], membership["list"], membership["status"]) == ("ann@example.com", list_id, 1)
    assert membership["unsubscribed_by"] is None


def test_api_unsubscribe_is_recorded_and_keeps_an_earlier_self_unsubscribe(sandbox: SandboxServer, api: Api) -> None:
    list_id = api.make_list()
    by_api, by_self = api.make_contact("api@example.com"), api.make_contact("self@example.com")
    for contact_id in (by_api, by_self):
        api.subscribe(contact_id, list_id)
    api.subscribe(by_api, list_id, status=2)
    sandbox.admin.unsubscribe("self@example.com", list_id)
    api.subscribe(by_self, list_id, status=2)  # the sync repeating an unsubscribe does not take it over
    assert sandbox.admin.membership("api@example.com", list_id)["unsubscribed_by"] == "api"
    assert sandbox.admin.membership("self@example.com", list_id)["unsubscribed_by"] == "contact"


def test_bulk_subscribe_never_resubscribes_whoever_unsubscribed(sandbox: SandboxServer, api: Api) -> None:
    list_id = api.make_list()
    by_api, by_self = api.make_contact("api@example.com"), api.make_contact("self@example.com")
    api.subscribe(by_api, list_id, status=2)
    api.subscribe(by_self, list_id)
    sandbox.admin.unsubscribe("self@example.com", list_id)

    batch = api.bulk(
        [{"email": e, "subscribe": [{"listid": list_id}]} for e in ("api@example.com", "self@example.com")]
    )
    info = api.wait_completed(batch.json()["batchId"])
    assert info["failure"] == ["api@example.com", "self@example.com"]
    assert sandbox.admin.members(list_id, status=1) == []
    assert sandbox.admin.members(list_id, status=2) == ["api@example.com", "self@example.com"]


def test_admin_unsubscribe_needs_an_existing_contact_and_list(sandbox: SandboxServer, api: Api) -> None:
    api.make_list()
    with pytest.raises(SandboxAdminError, match="No contact"):
        sandbox.admin.unsubscribe("ghost@example.com", "Newsletter")
    api.make_contact("real@example.com")
    with pytest.raises(SandboxAdminError, match="No list"):
        sandbox.admin.unsubscribe("real@example.com", "Nope")


def test_an_unsubscribe_earlier_in_the_same_batch_also_counts(sandbox: SandboxServer, api: Api) -> None:
    list_id = api.make_list()
    rows = [
        {"email": "twice@example.com", "first_name": "One", "unsubscribe": [{"listid": list_id}]},
        {"email": "TWICE@example.com", "first_name": "Two", "subscribe": [{"listid": list_id}]},
    ]
    info = api.wait_completed(api.bulk(rows).json()["batchId"])
    assert len(info["success"]) == 1 and info["failure"] == ["TWICE@example.com"]
    assert sandbox.admin.membership("twice@example.com", list_id)["status"] == 2
    contact = api.get("/contacts", params={"email": "twice@example.com"}).json()["contacts"][0]
    assert contact["firstName"] == "One"
