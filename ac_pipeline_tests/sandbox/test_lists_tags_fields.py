"""Lists, user groups, listGroups, tags, contactTags, custom fields and field values."""

from __future__ import annotations

import pytest

from ac_pipeline.sandbox import SandboxServer
from ac_pipeline_tests.sandbox.helpers import Api


def test_create_and_find_lists(api: Api) -> None:
    news = api.make_list("Newsletter")
    api.make_list("VIP customers")
    created = api.get(f"/lists/{news}").json()["list"]
    assert (created["id"], created["name"], created["stringid"]) == (news, "Newsletter", "newsletter")
    assert created["sender_url"] == "https://example.com"

    found = api.get("/lists", params={"filters[name]": "newsletter"}).json()
    assert [item["id"] for item in found["lists"]] == [news] and found["meta"]["total"] == "1"
    assert api.get("/lists").json()["meta"]["total"] == "2"
    assert api.get("/lists/999").json() == {"message": "No Result found for List with id 999"}
    assert api.get("/lists/999").status_code == 404


@pytest.mark.parametrize("missing", ["name", "stringid", "sender_url", "sender_reminder"])
def test_create_list_names_the_missing_required_field(api: Api, missing: str) -> None:
    body = {"name": "N", "stringid": "n", "sender_url": "https://example.com", "sender_reminder": "r"}
    del body[missing]
    response = api.post("/lists", json={"list": body})
    assert response.status_code == 422
    error = response.json()["errors"][0]
    assert error["source"]["pointer"] == f"/data/attributes/{missing}" and missing in error["title"]
    assert api.get("/lists").json()["meta"]["total"] == "0"


def test_groups_start_with_admin_and_lists_become_visible_through_list_groups(sandbox: SandboxServer, api: Api) -> None:
    groups = api.get("/groups").json()
    assert [(g["id"], g["title"]) for g in groups["groups"]] == [("1", "Admin")] and groups["meta"]["total"] == "1"
    created = api.post("/groups", json={"group": {"title": "Marketing"}})
    assert created.status_code == 200 and created.json()["group"]["title"] == "Marketing"
    marketing = created.json()["group"]["id"]

    list_id = api.make_list("Newsletter")
    assert sandbox.admin.list_info(list_id) == {"id": list_id, "name": "Newsletter", "visible": False, "groups": []}
    granted = api.post("/listGroups", json={"listGroup": {"listid": int(list_id), "groupid": 1}})
    assert granted.status_code == 201
    assert (granted.json()["listGroup"]["list"], granted.json()["listGroup"]["group"]) == (int(list_id), 1)
    api.post("/listGroups", json={"listGroup": {"listid": int(list_id), "groupid": int(marketing)}})
    info = sandbox.admin.list_info("newsletter")
    assert info["visible"] is True
    assert info["groups"] == [{"id": "1", "title": "Admin"}, {"id": marketing, "title": "Marketing"}]
    assert api.get("/listGroups").json()["meta"]["total"] == "2"

    assert api.post("/listGroups", json={"listGroup": {"listid": 999, "groupid": 1}}).status_code == 404
    assert api.post("/listGroups", json={"listGroup": {"listid": int(list_id), "groupid": 999}}).status_code == 404
    assert api.post("/listGroups", json={"listGroup": {"listid": list_id}}).status_code == 422


def test_tags_and_contact_tags(api: Api) -> None:
    created = api.post("/tags", json={"tag": {"tag": "VIP", "tagType": "contact", "description": "big"}})
    assert created.status_code == 201
    tag_id = created.json()["tag"]["id"]
    api.post("/tags", json={"tag": {"tag": "Churned"}})
    found = api.get("/tags", params={"search": "vi"}).json()
    assert [t["tag"] for t in found["tags"]] == ["VIP"] and found["meta"]["total"] == "1"
    assert api.post("/tags", json={"tag": {}}).status_code == 422

    contact_id = api.make_contact("tag@example.com")
    tagged = api.post("/contactTags", json={"contactTag": {"contact": contact_id, "tag": tag_id}})
    assert tagged.status_code == 201
    contact_tag = tagged.json()["contactTag"]
    assert (contact_tag["contact"], contact_tag["tag"]) == (contact_id, tag_id)

    not_found = api.post("/contactTags", json={"contactTag": {"contact": "999", "tag": tag_id}})
    assert not_found.status_code == 404
    assert not_found.json() == {"errors": [{"status": 404, "title": "Not Found", "detail": "Contact not found"}]}
    missing = api.post("/contactTags", json={"contactTag": {"tag": tag_id}})
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["source"] == {"pointer": "/data/attributes/contact"}

    assert api.delete(f"/contactTags/{contact_tag['id']}").json() == {}
    gone = api.delete(f"/contactTags/{contact_tag['id']}")
    assert gone.status_code == 404 and gone.json() == {
        "message": f"No Result found for ContactTag with id {contact_tag['id']}"
    }


def test_fields_and_field_values(api: Api) -> None:
    created = api.post("/fields", json={"field": {"title": "Loyalty tier", "type": "text"}})
    assert created.status_code == 201
    field = created.json()["field"]
    assert field["perstag"] == "LOYALTY_TIER" and created.json()["fields"] == [field]
    listed = api.get("/fields").json()
    assert [f["id"] for f in listed["fields"]] == [field["id"]] and listed["meta"]["total"] == "1"
    assert api.post("/fields", json={"field": {"type": "text"}}).status_code == 422

    contact_id = api.make_contact("fv@example.com")
    for value in ("silver", "gold"):  # the second replaces the first
        response = api.post(
            "/fieldValues", json={"fieldValue": {"contact": contact_id, "field": field["id"], "value": value}}
        )
        assert response.status_code == 200
    body = response.json()
    assert body["fieldValue"]["contact"] == int(contact_id) and body["fieldValue"]["value"] == "gold"
    values = api.get("/fieldValues").json()
    assert [(v["contact"], v["value"]) for v in values["fieldValues"]] == [(contact_id, "gold")]
    assert values["meta"]["total"] == "1"
    assert (
        api.post(
            "/fieldValues", json={"fieldValue": {"contact": "999", "field": field["id"], "value": "x"}}
        ).status_code
        == 404
    )
    assert (
        api.post("/fieldValues", json={"fieldValue": {"contact": contact_id, "field": "999", "value": "x"}}).status_code
        == 404
    )
