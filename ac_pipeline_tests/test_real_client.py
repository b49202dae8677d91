"""A client written against the real ActiveCampaign API works against the sandbox, unmodified.

`activecampaign-python` (PyPI, 1.0.10, API v3): a thin layer over `requests` that sends what it is given and
returns the parsed JSON answer (no status codes). The bodies below are the ones ActiveCampaign's reference shows
for each call, types included (`contactList` with integers, `contactTag` with strings, `fieldValue` with integer
ids): what users of the client copy. Each call's answer is checked for what a caller reads from it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from activecampaign.client import Client

from ac_pipeline.sandbox import SandboxServer


@pytest.fixture
def client(make_sandbox: Callable[..., SandboxServer]) -> Client:
    # The client has no rate-limit handling: at speed 1000 the account takes 5 requests a millisecond.
    sandbox = make_sandbox(speed=1000.0)
    return Client(sandbox.url, sandbox.api_key)


def contact_body(email: str, first: str, **more: Any) -> dict[str, Any]:
    return {"contact": {"email": email, "firstName": first, "lastName": "Doe", "phone": "7223224241", **more}}


def test_contacts_create_retrieve_update_filter_paginate_delete(client: Client) -> None:
    created = client.contacts.create_a_contact(contact_body("Jane@Example.com", "Jane"))
    jane = created["contact"]
    assert jane["email"] == "jane@example.com" and isinstance(jane["id"], str)
    duplicate = client.contacts.create_a_contact(contact_body("jane@example.com", "Again"))
    assert duplicate["errors"][0]["code"] == "duplicate"

    retrieved = client.contacts.retrieve_a_contact(jane["id"])
    assert retrieved["contact"]["firstName"] == "Jane"
    updated = client.contacts.update_a_contact(jane["id"], {"contact": {"firstName": "Janet"}})
    assert updated["contact"]["firstName"] == "Janet"
    synced = client.contacts.create_or_update_contact(contact_body("jane@example.com", "Jan"))
    assert synced["contact"]["id"] == jane["id"] and synced["contact"]["firstName"] == "Jan"

    for i in range(5):
        client.contacts.create_a_contact(contact_body(f"p{i}@people.example.com", f"P{i}"))
    found = client.contacts.list_all_contacts(email="JANE@example.com")
    assert [c["id"] for c in found["contacts"]] == [jane["id"]] and found["meta"]["total"] == "1"
    like = client.contacts.list_all_contacts(email_like="people")
    assert like["meta"]["total"] == "5"
    # Paging: limit and offset, meta.total the whole count.
    seen: list[str] = []
    for offset in (0, 2, 4):
        page = client.contacts.list_all_contacts(limit=2, offset=offset, **{"orders[id]": "ASC"})
        assert page["meta"]["total"] == "6"
        seen += [c["id"] for c in page["contacts"]]
    assert len(seen) == len(set(seen)) == 6 and seen == sorted(seen, key=int)
    after = client.contacts.list_all_contacts(id_greater=seen[3], **{"orders[id]": "ASC"})
    assert [c["id"] for c in after["contacts"]] == seen[4:]

    client.contacts.delete_a_contact(jane["id"])
    missing = client.contacts.retrieve_a_contact(jane["id"])
    assert missing["message"] == f"No Result found for Subscriber with id {jane['id']}"


def test_lists_group_permissions_and_memberships(client: Client) -> None:
    news = client.lists.create_a_list(
        {
            "list": {
                "name": "Newsletter",
                "stringid": "newsletter",
                "sender_url": "https://example.com",
                "sender_reminder": "You signed up on our site.",
                "send_last_broadcast": 0,
                "carboncopy": "",
                "subscription_notify": "",
                "unsubscription_notify": "",
                "user": 1,
            }
        }
    )["list"]
    client.lists.create_a_list(
        {"list": {"name": "Promotions", "stringid": "promo", "sender_url": "https://x.io", "sender_reminder": "r"}}
    )
    assert client.lists.retrieve_a_list(news["id"])["list"]["name"] == "Newsletter"
    named = client.lists.retrieve_all_lists(**{"filters[name]": "news"})
    assert [item["id"] for item in named["lists"]] == [news["id"]]
    assert client.lists.retrieve_all_lists()["meta"]["total"] == "2"
    granted = client.lists.create_a_list_group_permission({"listGroup": {"listid": int(news["id"]), "groupid": 1}})
    assert str(granted["listGroup"]["list"]) == news["id"]

    contact = client.contacts.create_a_contact(contact_body("member@example.com", "Mem"))["contact"]
    # The reference's example body: integers.
    subscribed = client.contacts.update_list_status_for_a_contact(
        {"contactList": {"list": int(news["id"]), "contact": int(contact["id"]), "status": 1}}
    )
    assert str(subscribed["contactList"]["status"]) == "1"
    members = client.contacts.list_all_contacts(listid=news["id"], status=1)
    assert [c["email"] for c in members["contacts"]] == ["member@example.com"]
    # The request schema's types: strings.
    left = client.contacts.update_list_status_for_a_contact(
        {"contactList": {"list": news["id"], "contact": contact["id"], "status": "2"}}
    )
    assert str(left["contactList"]["status"]) == "2"
    assert client.contacts.list_all_contacts(listid=news["id"], status=1)["meta"]["total"] == "0"
    refused = client.contacts.update_list_status_for_a_contact(
        {"contactList": {"list": "Newsletter", "contact": contact["id"], "status": 1}}
    )
    assert refused["errors"][0]["source"]["pointer"] == "/data/attributes/list"


def test_tags_and_contact_tags(client: Client) -> None:
    vip = client.tags.create_a_tag({"tag": {"tag": "VIP", "tagType": "contact", "description": "Best customers"}})[
        "tag"
    ]
    client.tags.create_a_tag({"tag": {"tag": "Lapsed", "tagType": "contact", "description": ""}})
    assert client.tags.retrieve_a_tag(vip["id"])["tag"]["tag"] == "VIP"
    assert [t["tag"] for t in client.tags.list_all_tags(search="vi")["tags"]] == ["VIP"]
    assert client.tags.list_all_tags()["meta"]["total"] == "2"

    contact = client.contacts.create_a_contact(contact_body("tagged@example.com", "Tag"))["contact"]
    # The reference's example body: strings.
    tagged = client.contacts.add_a_tag_to_contact({"contactTag": {"contact": contact["id"], "tag": vip["id"]}})
    contact_tag = tagged["contactTag"]
    assert (str(contact_tag["contact"]), str(contact_tag["tag"])) == (contact["id"], vip["id"])
    assert client.contacts.list_all_contacts(tagid=vip["id"])["meta"]["total"] == "1"
    client.contacts.remove_a_tag_from_a_contact(contact_tag["id"])
    assert client.contacts.list_all_contacts(tagid=vip["id"])["meta"]["total"] == "0"


def test_custom_fields_and_values(client: Client) -> None:
    field = client.contacts.create_a_custom_field(
        {
            "field": {
                "type": "text",
                "title": "Tier",
                "descript": "Loyalty tier",
                "perstag": "TIER",
                "defval": "",
                "visible": 1,
                "ordernum": 1,
            }
        }
    )["field"]
    assert client.contacts.retrieve_a_custom_field(field["id"])["field"]["title"] == "Tier"
    assert [f["id"] for f in client.contacts.list_all_custom_fields()["fields"]] == [field["id"]]
    assert [f["id"] for f in client.contacts.list_all_custom_fields(**{"filters[perstag]": "TIER"})["fields"]] == [
        field["id"]
    ]

    contact = client.contacts.create_a_contact(
        contact_body("valued@example.com", "Val", fieldValues=[{"field": field["id"], "value": "Silver"}])
    )["contact"]
    # The reference's example body: integer ids.
    value = client.contacts.create_a_custom_field_value(
        {"fieldValue": {"contact": int(contact["id"]), "field": int(field["id"]), "value": "Gold"}, "useDefaults": True}
    )["fieldValue"]
    assert value["value"] == "Gold"
    values = client.contacts.retrieve_a_contacts_field_values(contact["id"])["fieldValues"]
    assert [(v["field"], v["value"]) for v in values] == [(field["id"], "Gold")]
    assert client.contacts.retrieve_a_custom_field_value(value["id"])["fieldValue"]["value"] == "Gold"
    refused = client.contacts.create_a_custom_field_value(
        {"fieldValue": {"contact": contact["id"], "field": field["id"], "value": 42}}
    )
    assert refused["errors"][0]["source"]["pointer"] == "/data/attributes/value"
