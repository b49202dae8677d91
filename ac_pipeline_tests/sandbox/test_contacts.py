"""Contacts, contact/sync, contactLists and a contact's field values: shapes, filters, errors."""

from __future__ import annotations

from ac_pipeline_tests.sandbox.helpers import Api


def test_create_contact_answers_201_with_string_id_and_stores_email_lower_case(api: Api) -> None:
    field_id = api.make_field("Plan")
    response = api.post(
        "/contacts",
        json={
            "contact": {
                "email": " Ada@Example.COM ",
                "firstName": "Ada",
                "lastName": "Lovelace",
                "phone": "123",
                "fieldValues": [{"field": field_id, "value": "gold"}],
            }
        },
    )
    assert response.status_code == 201
    body = response.json()
    contact = body["contact"]
    assert contact["email"] == "ada@example.com"
    assert (contact["firstName"], contact["lastName"], contact["phone"]) == ("Ada", "Lovelace", "123")
    assert isinstance(contact["id"], str) and contact["id"].isdigit()
    assert [(v["field"], v["value"], v["contact"]) for v in body["fieldValues"]] == [(field_id, "gold", contact["id"])]


def test_create_contact_rejects_duplicate_and_invalid_emails_with_422(api: Api) -> None:
    api.make_contact("ada@example.com")
    duplicate = api.post("/contacts", json={"contact": {"email": "ADA@example.com"}})
    assert duplicate.status_code == 422
    assert duplicate.json() == {
        "errors": [
            {
                "title": "Email address already exists in the system",
                "detail": "",
                "code": "duplicate",
                "source": {"pointer": "/data/attributes/email"},
            }
        ]
    }
    invalid = api.post("/contacts", json={"contact": {"email": "not-an-email"}})
    assert invalid.status_code == 422
    assert invalid.json()["errors"][0]["code"] == "email_invalid"
    assert api.get("/contacts").json()["meta"]["total"] == "1"


def test_malformed_json_is_400(api: Api) -> None:
    response = api.post("/contacts", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["message"]


def test_get_put_delete_by_id_and_404s(api: Api) -> None:
    contact_id = api.make_contact("bob@example.com", firstName="Bob")
    got = api.get(f"/contacts/{contact_id}").json()
    assert got["contact"]["email"] == "bob@example.com"
    assert {"contactLists", "fieldValues", "contactAutomations", "deals", "geoIps"} <= set(got)

    updated = api.put(f"/contacts/{contact_id}", json={"contact": {"lastName": "Builder"}})
    assert updated.status_code == 200
    assert (updated.json()["contact"]["firstName"], updated.json()["contact"]["lastName"]) == ("Bob", "Builder")

    assert api.delete(f"/contacts/{contact_id}").json() == {}
    for method in ("GET", "PUT", "DELETE"):
        missing = api.request(method, f"/contacts/{contact_id}", json={"contact": {}})
        assert missing.status_code == 404
        assert missing.json() == {"message": f"No Result found for Subscriber with id {contact_id}"}


def test_put_to_an_email_in_use_is_duplicate(api: Api) -> None:
    api.make_contact("a@example.com")
    b = api.make_contact("b@example.com")
    response = api.put(f"/contacts/{b}", json={"contact": {"email": "A@example.com"}})
    assert response.status_code == 422 and response.json()["errors"][0]["code"] == "duplicate"


def test_contact_sync_creates_then_updates_by_email(api: Api) -> None:
    created = api.post("/contact/sync", json={"contact": {"email": "Cy@example.com", "firstName": "Cy"}})
    assert created.status_code == 201
    updated = api.post("/contact/sync", json={"contact": {"email": "cy@EXAMPLE.com", "lastName": "Twombly"}})
    assert updated.status_code == 201  # the published description declares 201 only (docs/sandbox.md)
    assert updated.json()["contact"]["id"] == created.json()["contact"]["id"]
    assert updated.json()["contact"]["firstName"] == "Cy"
    assert updated.json()["contact"]["lastName"] == "Twombly"
    assert api.post("/contact/sync", json={"contact": {"email": "nope"}}).status_code == 422


def test_list_contacts_filters_and_pages(api: Api) -> None:
    list_id = api.make_list()
    ids = [api.make_contact(f"p{i}@example.com") for i in range(25)]
    for contact_id in ids[:12]:
        api.subscribe(contact_id, list_id)
    api.subscribe(ids[0], list_id, status=2)

    first = api.get("/contacts").json()
    assert first["meta"]["total"] == "25" and len(first["contacts"]) == 20  # default limit 20
    assert len(api.get("/contacts", params={"limit": 500}).json()["contacts"]) == 25  # capped at 100
    page = api.get("/contacts", params={"limit": 10, "offset": 20}).json()
    assert [c["id"] for c in page["contacts"]] == ids[20:]

    by_email = api.get("/contacts", params={"email": "P3@Example.com"}).json()
    assert [c["id"] for c in by_email["contacts"]] == [ids[3]] and by_email["meta"]["total"] == "1"

    active = api.get("/contacts", params={"listid": list_id, "status": 1, "limit": 100}).json()
    assert [c["id"] for c in active["contacts"]] == ids[1:12] and active["meta"]["total"] == "11"
    unsubscribed = api.get("/contacts", params={"listid": list_id, "status": 2}).json()
    assert [c["id"] for c in unsubscribed["contacts"]] == [ids[0]]

    after = api.get("/contacts", params={"orders[id]": "ASC", "id_greater": ids[22]}).json()
    assert [c["id"] for c in after["contacts"]] == ids[23:]
    descending = api.get("/contacts", params={"orders[id]": "DESC", "limit": 2}).json()
    assert [c["id"] for c in descending["contacts"]] == [ids[24], ids[23]]


def test_contact_lists_subscribe_unsubscribe_and_errors(api: Api) -> None:
    list_id = api.make_list()
    contact_id = api.make_contact("dee@example.com", firstName="Dee")
    response = api.subscribe(contact_id, list_id)
    assert response.status_code == 200
    body = response.json()
    assert body["contactList"]["status"] == 1  # a number here, a string in the GETs
    assert (body["contactList"]["list"], body["contactList"]["contact"]) == (list_id, contact_id)
    assert body["contacts"][0]["id"] == contact_id

    memberships = api.get(f"/contacts/{contact_id}/contactLists").json()["contactLists"]
    assert [(m["list"], m["status"]) for m in memberships] == [(list_id, "1")]
    api.subscribe(contact_id, list_id, status=2)
    assert api.get(f"/contacts/{contact_id}/contactLists").json()["contactLists"][0]["status"] == "2"

    assert api.subscribe("999", list_id).status_code == 404
    assert api.subscribe(contact_id, "999").json() == {"message": "No Result found for List with id 999"}
    missing = api.post("/contactLists", json={"contactList": {"contact": contact_id, "status": 1}})
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["source"] == {"pointer": "/data/attributes/list"}
    assert api.subscribe(contact_id, list_id, status=7).status_code == 422
    assert api.get("/contacts/999/contactLists").status_code == 404


def test_contact_field_values(api: Api) -> None:
    field_id = api.make_field("Color")
    contact_id = api.make_contact("eve@example.com", fieldValues=[{"field": field_id, "value": "red"}])
    values = api.get(f"/contacts/{contact_id}/fieldValues").json()["fieldValues"]
    assert [(v["field"], v["value"], v["owner"]) for v in values] == [(field_id, "red", contact_id)]
    assert api.get("/contacts/999/fieldValues").status_code == 404
    unknown_field = api.post(
        "/contacts", json={"contact": {"email": "f@example.com", "fieldValues": [{"field": 99, "value": "x"}]}}
    )
    assert unknown_field.status_code == 422


def test_unknown_paths_and_methods_are_404_with_message(api: Api) -> None:
    for method, path in (("GET", "/nothing"), ("DELETE", "/lists"), ("GET", "/contacts/abc")):
        response = api.request(method, path)
        assert response.status_code == 404
        assert isinstance(response.json()["message"], str)


def test_put_of_a_new_email_keeps_the_contact_and_its_lists(api: Api) -> None:
    list_id = api.make_list()
    contact_id = api.make_contact("old@example.com")
    api.post("/contactLists", json={"contactList": {"list": list_id, "contact": contact_id, "status": 1}})
    response = api.put(f"/contacts/{contact_id}", json={"contact": {"email": " New@Example.com "}})
    assert response.status_code == 200 and response.json()["contact"]["id"] == contact_id
    assert [c["id"] for c in api.get("/contacts", params={"email": "new@example.com"}).json()["contacts"]] == [
        contact_id
    ]
    assert api.get("/contacts", params={"email": "old@example.com"}).json()["contacts"] == []
    [membership] = api.get(f"/contacts/{contact_id}/contactLists").json()["contactLists"]
    assert (membership["list"], membership["status"]) == (list_id, "1")
