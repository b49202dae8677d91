"""The client against the real sandbox over 127.0.0.1: custom fields, tags, contacts, and their list
memberships.

The sandbox and the client's limits to match are described in client_sandbox_helpers.py.
"""

from __future__ import annotations

import pytest

from ac_pipeline.activecampaign import ActiveCampaignClient, NotFoundError, ValidationError
from ac_pipeline.sandbox import SandboxServer
from ac_pipeline_tests.activecampaign.client_sandbox_helpers import make_field, new_list, people

# -- fields, tags, contacts ------------------------------------------------------------------------------


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
