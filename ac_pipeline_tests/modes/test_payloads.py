"""What a field left alone looks like on the wire, and what the sandbox (as the real API) does with it: a field
left out of a bulk import or a contact/sync keeps ActiveCampaign's value, an empty one clears it. And the
update_only look-up: right answers at the bounded cost (one request per address, or per 100 contacts)."""

from __future__ import annotations

from ac_pipeline.activecampaign import ActiveCampaignClient
from ac_pipeline.sandbox import SandboxServer
from ac_pipeline.sync.existing import existing_contacts
from ac_pipeline.sync.payloads import ContactShape, bulk_contact, sync_fields

SHAPE = ContactShape(
    list_id="3",
    standard_fields=("first_name", "phone"),
    field_ids={"City": "7", "Tier": "8"},
    tags=(),
    leave_alone=frozenset({"phone", "field:City"}),
)
ROW = {
    "op": "update",
    "email": "a@example.com",
    "first_name": None,
    "phone": None,
    "field:City": None,
    "field:Tier": None,
}


def test_left_alone_is_left_out_and_overwrite_sends_empty() -> None:
    contact = bulk_contact(ROW, SHAPE)
    assert contact["first_name"] == "" and "phone" not in contact  # overwrite clears; never_clear/fill leave out
    assert contact["fields"] == [{"id": 8, "value": ""}]
    fields = sync_fields(ROW, SHAPE)
    assert fields["first_name"] == "" and fields["phone"] is None  # None: the client leaves it out
    assert fields["field_values"] == {"8": ""}
    sent = bulk_contact({**ROW, "phone": "+1 555", "field:City": "Paris"}, SHAPE)
    assert sent["phone"] == "+1 555" and {"id": 7, "value": "Paris"} in sent["fields"]


def _field_values(client: ActiveCampaignClient, contact_id: str) -> dict[str, str]:
    held = client.request("GET", f"contacts/{contact_id}/fieldValues").get("fieldValues") or []
    return {str(v["field"]): v["value"] for v in held}


def test_sandbox_keeps_omitted_fields_and_clears_empty_ones(sandbox: SandboxServer) -> None:
    with ActiveCampaignClient(sandbox.url, sandbox.api_key) as client:
        field = client.request("POST", "fields", json={"field": {"title": "City", "type": "text"}})["field"]["id"]
        contact = client.sync_contact("a@example.com", first_name="Ann", phone="1", field_values={field: "Paris"})
        client.sync_contact("a@example.com", first_name="Anna")  # phone and City left out
        kept = client.find_contact("a@example.com")
        assert (
            kept is not None and kept["phone"] == "1" and _field_values(client, contact["id"]) == {str(field): "Paris"}
        )
        batch = client.bulk_import([{"email": "a@example.com", "first_name": "Annie"}])
        client.wait_for_import(batch, poll_interval=0.05)
        kept = client.find_contact("a@example.com")
        assert kept is not None and (kept["firstName"], kept["phone"]) == ("Annie", "1")
        assert _field_values(client, contact["id"]) == {str(field): "Paris"}
        batch = client.bulk_import(
            [{"email": "a@example.com", "phone": "", "fields": [{"id": int(field), "value": ""}]}]
        )
        client.wait_for_import(batch, poll_interval=0.05)
        cleared = client.find_contact("a@example.com")
        assert (
            cleared is not None and cleared["phone"] == "" and _field_values(client, contact["id"]) == {str(field): ""}
        )


def test_existing_contacts_at_a_bounded_cost(sandbox: SandboxServer) -> None:
    emails = [f"c{i}@example.com" for i in range(150)]  # two pages of contacts
    with ActiveCampaignClient(sandbox.url, sandbox.api_key) as client:
        client.wait_for_import(client.bulk_import([{"email": e} for e in emails]), poll_interval=0.05)
        for asked, requests in ((["c3@example.com", "nobody@example.com"], 3), ([*emails[::10], "x@example.org"], 3)):
            before = client.stats.requests
            found = existing_contacts(client, asked)
            assert set(found) == set(asked) - {"nobody@example.com", "x@example.org"}
            assert client.stats.requests - before == requests  # the count, then per address or per page
