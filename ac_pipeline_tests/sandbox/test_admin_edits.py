"""Admin surface: bounces, a user deleting contacts and lists, and a user editing a list by hand."""

from __future__ import annotations

import pytest

from ac_pipeline.sandbox import SandboxServer
from ac_pipeline.sandbox.admin_client import SandboxAdminError
from ac_pipeline_tests.sandbox.helpers import Api


def test_a_hard_bounce_sets_status_3_records_it_and_bulk_import_then_fails_the_address(
    sandbox: SandboxServer, api: Api
) -> None:
    news, offers = api.make_list("News"), api.make_list("Offers")
    ada = api.make_contact("ada@example.com")
    for list_id in (news, offers):
        api.subscribe(ada, list_id)
    api.subscribe(ada, offers, status=2)

    bounced = sandbox.admin.bounce("ADA@example.com")
    assert bounced["bounced_hard"] == "1" and bounced["lists"] == {news: 3, offers: 2}  # unsubscribed stays 2
    contact = api.get(f"/contacts/{ada}").json()["contact"]
    assert contact["bounced_hard"] == "1" and contact["bounced_date"] == bounced["bounced_date"]
    assert sandbox.admin.membership("ada@example.com", news)["status"] == 3
    assert [c["id"] for c in api.get("/contacts", params={"listid": news, "status": 3}).json()["contacts"]] == [ada]
    assert api.get("/contacts", params={"listid": news, "status": 1}).json()["contacts"] == []

    batch = api.bulk([{"email": "ada@example.com", "subscribe": [{"listid": int(news)}]}, {"email": "bo@example.com"}])
    info = api.wait_completed(batch.json()["batchId"])
    assert info["failure"] == ["ada@example.com"] and len(info["success"]) == 1
    assert "bounce" in sandbox.admin.import_details(batch.json()["batchId"])["reasons"]["ada@example.com"]
    assert sandbox.admin.membership("ada@example.com", news)["status"] == 3


def test_a_bounce_on_one_list_and_a_soft_bounce(sandbox: SandboxServer, api: Api) -> None:
    news, offers = api.make_list("News"), api.make_list("Offers")
    ada = api.make_contact("ada@example.com")
    for list_id in (news, offers):
        api.subscribe(ada, list_id)
    assert sandbox.admin.bounce("ada@example.com", "Offers")["lists"] == {news: 1, offers: 3}
    soft = sandbox.admin.bounce("ada@example.com", kind="soft")
    assert soft["bounced_soft"] == "1" and soft["bounced_hard"] == "1" and soft["lists"] == {news: 1, offers: 3}
    with pytest.raises(SandboxAdminError):
        sandbox.admin.bounce("ada@example.com", kind="bouncy")
    with pytest.raises(SandboxAdminError):
        sandbox.admin.bounce("nobody@example.com")


def test_a_user_deletes_a_contact_and_a_list(sandbox: SandboxServer, api: Api) -> None:
    news = api.make_list("News")
    ada, bo = api.make_contact("ada@example.com"), api.make_contact("bo@example.com")
    api.subscribe(ada, news)
    api.subscribe(bo, news)
    sandbox.admin.delete_contact("ada@example.com")
    assert api.get(f"/contacts/{ada}").status_code == 404
    assert sandbox.admin.members(news) == ["bo@example.com"]
    sandbox.admin.delete_list("News")
    assert api.get(f"/lists/{news}").status_code == 404
    assert api.get(f"/contacts/{bo}/contactLists").json()["contactLists"] == []
    with pytest.raises(SandboxAdminError):
        sandbox.admin.delete_list("News")


def test_a_user_edits_a_list_by_hand(sandbox: SandboxServer, api: Api) -> None:
    news = api.make_list("News")
    ada = api.make_contact("ada@example.com")
    field = api.post("/fields", json={"field": {"title": "Plan", "type": "text", "perstag": "PLAN"}}).json()["field"]

    added = sandbox.admin.add_to_list("ada@example.com", "News")
    assert added["status"] == 1 and sandbox.admin.members(news) == ["ada@example.com"]
    removed = sandbox.admin.remove_from_list("ada@example.com", news)
    assert removed["status"] == 2 and removed["unsubscribed_by"] == "user"
    record = api.get(f"/contacts/{ada}/contactLists").json()["contactLists"][0]
    assert (record["status"], record["unsubreason"], record["campaign"], record["message"]) == ("2", "", None, None)
    assert (record["ip4Unsub"], record["unsubscribeAutomation"]) == ("0", None)
    # Removing again changes nothing; an API unsubscribe on top neither.
    assert sandbox.admin.remove_from_list("ada@example.com", news)["udate"] == removed["udate"]
    api.subscribe(ada, news, status=2)
    assert sandbox.admin.membership("ada@example.com", news)["unsubscribed_by"] == "user"
    # A person can add them back by hand.
    assert sandbox.admin.add_to_list("ada@example.com", news)["unsubscribed_by"] is None

    changed = sandbox.admin.set_field_value("ada@example.com", "plan", "gold")
    assert changed["value"] == "gold" and changed["field"] == field["id"]
    values = api.get(f"/contacts/{ada}/fieldValues").json()["fieldValues"]
    assert [(v["field"], v["value"]) for v in values] == [(field["id"], "gold")]
    sandbox.admin.set_field_value("ada@example.com", field["id"], "silver")
    assert api.get(f"/contacts/{ada}/fieldValues").json()["fieldValues"][0]["value"] == "silver"
    with pytest.raises(SandboxAdminError):
        sandbox.admin.set_field_value("ada@example.com", "Nope", "x")
    with pytest.raises(SandboxAdminError):
        sandbox.admin.remove_from_list("nobody@example.com", news)
