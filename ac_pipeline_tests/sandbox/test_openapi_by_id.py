"""The operations by id that the sandbox serves since issue 8 (tags, groups, fields, fieldValues: GET, PUT,
DELETE; DELETE lists), held to the published description as test_openapi.py holds the others: every declared
JSON answer is produced and checked against its schema and one of its examples."""

from __future__ import annotations

from typing import Any

import httpx

from ac_pipeline.sandbox import SandboxServer
from ac_pipeline_tests.sandbox.helpers import Api
from ac_pipeline_tests.sandbox.test_openapi import NOT_SERVED, SPEC, examples, schema_errors, shape_errors


def declared(operations: set[str]) -> dict[tuple[str, str], dict[str, Any]]:
    answers = {}
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            name = f"{method.upper()} {path}"
            if name in operations:
                for status, answer in operation["responses"].items():
                    media = (answer.get("content") or {}).get("application/json")
                    if media is not None:
                        answers[(name, status)] = media
    return answers


def produce(sb: SandboxServer, api: Api) -> dict[tuple[str, str], httpx.Response]:
    got: dict[tuple[str, str], httpx.Response] = {}

    def call(name: str, path: str, **kwargs: Any) -> httpx.Response:
        response = api.request(name.split()[0], path, **kwargs)
        got[(name, str(response.status_code))] = response
        return response

    wrong_key = httpx.Client(base_url=f"{sb.url}/api/3", headers={"Api-Token": "wrong"})
    contact = int(api.make_contact("ada@example.com"))
    tag = call("POST /tags", "/tags", json={"tag": {"tag": "VIP", "tagType": "contact"}}).json()["tag"]["id"]
    api.post("/contactTags", json={"contactTag": {"contact": contact, "tag": int(tag)}})
    call("GET /tags/{id}", f"/tags/{tag}")
    call("GET /tags/{id}", "/tags/999")
    call("PUT /tags/{id}", f"/tags/{tag}", json={"tag": {"tag": "Very Important", "description": "d"}})
    call("DELETE /tags/{id}", f"/tags/{tag}")
    call("DELETE /tags/{id}", f"/tags/{tag}")

    group = api.post("/groups", json={"group": {"title": "Marketing"}}).json()["group"]["id"]
    call("GET /groups/{id}", f"/groups/{group}")
    call("GET /groups/{id}", "/groups/999")
    call("PUT /groups/{id}", f"/groups/{group}", json={"group": {"title": "Sales", "descript": "Sales team"}})
    call("PUT /groups/{id}", "/groups/999", json={"group": {"title": "x"}})
    call("DELETE /groups/{id}", f"/groups/{group}")
    call("DELETE /groups/{id}", "/groups/1")

    field = api.make_field("Tier")
    call("GET /fields/{id}", f"/fields/{field}")
    call("GET /fields/{id}", "/fields/999")
    call("PUT /fields/{id}", f"/fields/{field}", json={"field": {"title": "Level", "type": "textarea"}})
    got[("PUT /fields/{id}", "403")] = wrong_key.put(f"/fields/{field}", json={})
    value = api.post("/fieldValues", json={"fieldValue": {"contact": contact, "field": int(field), "value": "gold"}})
    value_id = value.json()["fieldValue"]["id"]
    call("GET /fieldValues/{id}", f"/fieldValues/{value_id}")
    call("GET /fieldValues/{id}", "/fieldValues/999")
    body = {"fieldValue": {"contact": contact, "field": int(field), "value": "silver"}}
    call("PUT /fieldValues/{id}", f"/fieldValues/{value_id}", json=body)
    call("PUT /fieldValues/{id}", "/fieldValues/999", json=body)
    call("DELETE /fieldValues/{id}", f"/fieldValues/{value_id}")
    call("DELETE /fieldValues/{id}", f"/fieldValues/{value_id}")
    call("DELETE /fields/{id}", f"/fields/{field}")
    call("DELETE /fields/{id}", f"/fields/{field}")

    list_id = api.make_list()
    call("DELETE /lists/{id}", f"/lists/{list_id}")
    call("DELETE /lists/{id}", f"/lists/{list_id}")
    wrong_key.close()
    return got


def test_every_operation_by_id_matches_schema_and_example(sandbox: SandboxServer, api: Api) -> None:
    got = produce(sandbox, api)
    answers = declared(NOT_SERVED)
    assert {name for name, _ in answers} == NOT_SERVED  # all thirteen are declared with JSON answers
    assert set(answers) <= set(got), f"not produced: {sorted(set(answers) - set(got))}"
    problems = []
    for (name, status), media in sorted(answers.items()):
        body = got[(name, status)].json()
        problems += [f"{name} {status} schema {e}" for e in schema_errors(media.get("schema"), body)]
        shapes = [shape_errors(example, body) for example in examples(media)]
        if shapes and all(shapes):
            problems += [f"{name} {status} example {e}" for e in shapes[0]]
    assert problems == [], "\n".join(problems)


def test_deletes_take_what_hangs_on_them(api: Api) -> None:
    list_id = api.make_list()
    contact = api.make_contact("ada@example.com")
    api.subscribe(contact, list_id)
    api.post("/listGroups", json={"listGroup": {"listid": int(list_id), "groupid": 1}})
    tag = api.post("/tags", json={"tag": {"tag": "VIP"}}).json()["tag"]["id"]
    api.post("/contactTags", json={"contactTag": {"contact": int(contact), "tag": int(tag)}})
    field = api.make_field()
    api.post("/fieldValues", json={"fieldValue": {"contact": int(contact), "field": int(field), "value": "x"}})

    assert api.delete(f"/lists/{list_id}").json() == {}
    assert api.get(f"/contacts/{contact}/contactLists").json()["contactLists"] == []
    assert api.get("/contactLists").json()["meta"]["total"] == "0"
    assert api.get("/listGroups").json()["meta"]["total"] == "0"
    assert api.get("/contacts", params={"listid": list_id}).json()["contacts"] == []
    assert api.delete(f"/tags/{tag}").status_code == 200
    assert api.get("/contactTags").json()["meta"]["total"] == "0"
    assert api.delete(f"/fields/{field}").status_code == 200
    assert api.get(f"/contacts/{contact}/fieldValues").json()["fieldValues"] == []
    assert api.get(f"/contacts/{contact}").json()["contact"]["fieldValues"] == []


def test_api_root_and_users_me_check_the_key(sandbox: SandboxServer, api: Api) -> None:
    for path in ("", "/"):
        root = api.get(path)
        assert root.status_code == 200 and "contacts" in root.json()["links"]
    me = api.get("/users/me")
    assert me.status_code == 200 and me.json()["user"]["id"] == "1"
    with httpx.Client(base_url=f"{sandbox.url}/api/3", headers={"Api-Token": "wrong"}) as wrong:
        assert wrong.get("/").status_code == 403 and wrong.get("/users/me").status_code == 403
    assert api.post("/").status_code == 404


def test_contacts_show_organization_and_relationship_ids(api: Api) -> None:
    list_id = api.make_list()
    field = api.make_field()
    created = api.post(
        "/contacts",
        json={"contact": {"email": "ada@example.com", "fieldValues": [{"field": int(field), "value": "x"}]}},
    ).json()
    contact_id = created["contact"]["id"]
    assert created["contact"]["organization"] == ""
    membership = api.subscribe(contact_id, list_id).json()["contactList"]["id"]
    one = api.get(f"/contacts/{contact_id}").json()["contact"]
    assert one["organization"] is None and one["contactLists"] == [membership]
    assert one["fieldValues"] == [created["fieldValues"][0]["id"]]
    assert {one[name] == [] for name in ("contactAutomations", "deals", "geoIps", "accountContacts")} == {True}
    listed = api.get("/contacts").json()["contacts"][0]
    assert listed["organization"] is None and "contactLists" not in listed
    assert api.get(f"/contactLists/{membership}").json()["contactList"]["contact"] == contact_id
    assert api.get("/contactLists/999").status_code == 404
    shown = api.get(f"/lists/{list_id}").json()["list"]
    assert shown["updated_timestamp"] == shown["created_timestamp"] == shown["cdate"][:19].replace("T", " ")
