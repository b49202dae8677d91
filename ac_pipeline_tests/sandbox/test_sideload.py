"""`include=contactLists` on GET /contacts: the memberships of the returned contacts come alongside, with every
filter and paging, the way the pipeline reads who unsubscribed from a list and how."""

from __future__ import annotations

import random
from typing import Any

from ac_pipeline.sandbox import SandboxServer
from ac_pipeline_tests.sandbox.helpers import Api

PEOPLE = 230  # more than two pages of 100
KINDS = ("api", "link", "automation", "import")


def read_unsubscribed(api: Api, list_id: str) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Every status-2 member of the list and every side-loaded record, in pages of 100 by id, as the pipeline
    reads them."""
    contacts: list[dict[str, Any]] = []
    records: dict[str, dict[str, Any]] = {}
    last = 0
    while True:
        params = {
            "listid": list_id,
            "status": 2,
            "include": "contactLists",
            "orders[id]": "ASC",
            "id_greater": last,
            "limit": 100,
        }
        body = api.get("/contacts", params=params).json()
        if not body["contacts"]:
            return contacts, records
        assert len(body["contacts"]) <= 100
        contacts += body["contacts"]
        records.update({record["id"]: record for record in body["contactLists"]})
        last = int(body["contacts"][-1]["id"])


def test_paging_returns_exactly_the_unsubscribed_members_with_their_records(sandbox: SandboxServer, api: Api) -> None:
    rng = random.Random(14)
    news, other = api.make_list("News"), api.make_list("Other")
    emails = [f"p{i:03d}@example.com" for i in range(PEOPLE)]
    rows = [{"email": e, "subscribe": [{"listid": news}, {"listid": other}]} for e in emails]
    api.wait_completed(api.bulk(rows).json()["batchId"])
    ids = {c["email"]: c["id"] for c in api.get("/contacts", params={"limit": 100}).json()["contacts"]}
    for offset in (100, 200):
        page = api.get("/contacts", params={"limit": 100, "offset": offset}).json()["contacts"]
        ids.update({c["email"]: c["id"] for c in page})
    kind_of = {email: rng.choice(KINDS) for email in rng.sample(emails, 90)}
    for email in rng.sample(emails, 40):  # unsubscribed from the other list only: must not show up
        if email not in kind_of:
            api.subscribe(ids[email], other, status=2)
    imported = [{"email": e, "unsubscribe": [{"listid": news}]} for e, kind in kind_of.items() if kind == "import"]
    api.wait_completed(api.bulk(imported).json()["batchId"])
    for email, kind in kind_of.items():
        if kind == "api":
            api.subscribe(ids[email], news, status=2)
        elif kind == "link":
            sandbox.admin.unsubscribe(email, news, campaign=7, message=8, reason="bye", ip="198.51.100.1")
        elif kind == "automation":
            sandbox.admin.unsubscribe_by_automation(email, news, automation=9)

    contacts, records = read_unsubscribed(api, news)
    assert [c["email"] for c in contacts] == sandbox.admin.members(news, status=2) == sorted(kind_of)
    for contact in contacts:
        mine = [records[record_id] for record_id in contact["contactLists"]]
        assert {r["contact"] for r in mine} == {contact["id"]} and {r["list"] for r in mine} == {news, other}
        [record] = [r for r in mine if r["list"] == news]
        kind = kind_of[contact["email"]]
        assert record["status"] == "2"
        assert record["campaign"] == ("7" if kind == "link" else None)
        assert record["unsubscribeAutomation"] == ("9" if kind == "automation" else None)
        assert (record["ip4Unsub"] != "0") == (kind == "link")


def test_without_include_nothing_is_side_loaded_and_one_contact_lists_its_memberships(api: Api) -> None:
    list_id = api.make_list()
    contact_id = api.make_contact("ann@example.com")
    membership = api.subscribe(contact_id, list_id).json()["contactList"]["id"]
    body = api.get("/contacts", params={"listid": list_id}).json()
    assert "contactLists" not in body and "contactLists" not in body["contacts"][0]
    one = api.get(f"/contacts/{contact_id}").json()
    assert one["contact"]["contactLists"] == [membership] == [r["id"] for r in one["contactLists"]]
