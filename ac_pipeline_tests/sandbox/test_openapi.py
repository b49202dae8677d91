"""The sandbox's answers held to the published OpenAPI description (ac_pipeline/sandbox/openapi-v3-subset.json).

For every operation the sandbox implements, each declared JSON response is produced and checked: the status
code, the body against the declared schema (a small validator for the subset of JSON Schema the file uses:
type, properties, items, oneOf), and its shape against the declared example (the example's top-level keys are
all present, resources keep their `id`, values have the example's JSON types).
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from ac_pipeline.sandbox import SandboxServer
from ac_pipeline.sandbox.request_checks import SPEC_PATH
from ac_pipeline_tests.sandbox.helpers import Api

SPEC = json.loads(SPEC_PATH.read_text())
# Keywords the validator understands; the test fails if the description starts using others.
SCHEMA_KEYWORDS = {"type", "properties", "items", "oneOf", "example", "default", "title"}
JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}
# Operations in the description that the sandbox does not serve (it answers them 404).
NOT_SERVED = {
    "GET /fields/{id}",
    "PUT /fields/{id}",
    "DELETE /fields/{id}",
    "GET /fieldValues/{id}",
    "PUT /fieldValues/{id}",
    "DELETE /fieldValues/{id}",
    "GET /tags/{id}",
    "PUT /tags/{id}",
    "DELETE /tags/{id}",
    "GET /groups/{id}",
    "PUT /groups/{id}",
    "DELETE /groups/{id}",
    "DELETE /lists/{id}",
}
# Declared answers the sandbox never gives: a 404 for POST /contacts, and the per-permission 403s of lists,
# whose text/plain or {"errors"} bodies belong to a user without rights (the sandbox's one user has them all).
NEVER_ANSWERED = {
    ("POST /contacts", "404"),
    ("POST /lists", "403"),
    ("GET /lists", "403"),
    ("GET /lists/{id}", "403"),
}


def schema_errors(schema: Any, value: Any, where: str = "$") -> list[str]:
    if not isinstance(schema, dict) or not schema:
        return []
    unknown = set(schema) - SCHEMA_KEYWORDS
    assert not unknown, f"{where}: the validator does not know {unknown}"
    if "oneOf" in schema:
        branches = [schema_errors(branch, value, where) for branch in schema["oneOf"]]
        if all(branches):
            return [f"{where}: matches no oneOf branch: {branches}"]
    declared = schema.get("type")
    if declared is not None:
        allowed = declared if isinstance(declared, list) else [declared]
        ok = any(
            isinstance(value, JSON_TYPES[t]) and not (t in ("integer", "number") and isinstance(value, bool))
            for t in allowed
        )
        if not ok:
            return [f"{where}: expected {declared}, got {type(value).__name__} {value!r:.60}"]
    errors: list[str] = []
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key in value:
                errors += schema_errors(sub, value[key], f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            errors += schema_errors(schema["items"], item, f"{where}[{index}]")
    return errors


def shape_errors(example: Any, value: Any, where: str = "$", depth: int = 0) -> list[str]:
    if example is None:
        return []
    if isinstance(example, dict):
        if not isinstance(value, dict):
            return [f"{where}: expected an object, got {value!r:.60}"]
        required = set(example) if depth == 0 else {"id"} & set(example)
        errors = [f"{where}: missing {key!r}" for key in sorted(required - set(value))]
        for key in set(example) & set(value):
            errors += shape_errors(example[key], value[key], f"{where}.{key}", depth + 1)
        return errors
    if isinstance(example, list):
        if not isinstance(value, list):
            return [f"{where}: expected a list, got {value!r:.60}"]
        if example:
            return [
                e for i, item in enumerate(value) for e in shape_errors(example[0], item, f"{where}[{i}]", depth + 1)
            ]
        return []
    if type(example) is not type(value) and not (
        isinstance(example, (int, float)) and isinstance(value, (int, float)) and not isinstance(value, bool)
    ):
        return [f"{where}: expected {type(example).__name__} like {example!r:.40}, got {value!r:.60}"]
    return []


def declared_json_answers() -> dict[tuple[str, str], dict[str, Any]]:
    """(operation, status) -> the declared application/json media object, for the operations served."""
    answers = {}
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            name = f"{method.upper()} {path}"
            if method not in ("get", "post", "put", "delete") or name in NOT_SERVED:
                continue
            for status, declared in operation["responses"].items():
                media = (declared.get("content") or {}).get("application/json")
                if media is not None and (name, status) not in NEVER_ANSWERED:
                    answers[(name, status)] = media
    return answers


def examples(media: dict[str, Any]) -> list[Any]:
    values = [e["value"] for e in (media.get("examples") or {}).values() if "value" in e]
    if "example" in media:
        values.append(media["example"])
    return [json.loads(v) if isinstance(v, str) else v for v in values]


def produce_answers(sb: SandboxServer, api: Api) -> dict[tuple[str, str], httpx.Response]:
    """Drive the sandbox into each declared answer."""
    got: dict[tuple[str, str], httpx.Response] = {}

    def call(name: str, path: str, **kwargs: Any) -> httpx.Response:
        response = api.request(name.split()[0], path, **kwargs)
        got[(name, str(response.status_code))] = response
        return response

    bad_json = {"content": b"{oops", "headers": {"Content-Type": "application/json"}}
    wrong_key = httpx.Client(base_url=f"{sb.url}/api/3", headers={"Api-Token": "wrong"})

    list_id = call(
        "POST /lists",
        "/lists",
        json={
            "list": {"name": "News", "stringid": "news", "sender_url": "https://example.com", "sender_reminder": "r"}
        },
    ).json()["list"]["id"]
    call("POST /lists", "/lists", **bad_json)
    call("GET /lists", "/lists")
    call("GET /lists/{id}", f"/lists/{list_id}")
    call("GET /lists/{id}", "/lists/999")
    call("POST /groups", "/groups", json={"group": {"title": "Marketing"}})
    call("GET /groups", "/groups")
    call("POST /listGroups", "/listGroups", json={"listGroup": {"listid": int(list_id), "groupid": 1}})
    got[("POST /listGroups", "403")] = wrong_key.post("/listGroups", json={})

    field_id = call("POST /fields", "/fields", json={"field": {"title": "Tier", "type": "text"}}).json()["field"]["id"]
    call("POST /fields", "/fields", json={"field": {"type": "text"}})
    got[("POST /fields", "403")] = wrong_key.post("/fields", json={})
    call("GET /fields", "/fields")

    contact = {"email": "ada@example.com", "firstName": "Ada", "fieldValues": [{"field": field_id, "value": "gold"}]}
    contact_id = call("POST /contacts", "/contacts", json={"contact": contact}).json()["contact"]["id"]
    call("POST /contacts", "/contacts", json={"contact": contact})
    call("POST /contact/sync", "/contact/sync", json={"contact": {"email": "bob@example.com"}})
    call("POST /contact/sync", "/contact/sync", **bad_json)
    call(
        "POST /contactLists",
        "/contactLists",
        json={"contactList": {"list": list_id, "contact": contact_id, "status": 1}},
    )
    call("POST /contactLists", "/contactLists", **bad_json)
    call("GET /contacts", "/contacts", params={"listid": list_id, "status": 1})
    call("GET /contacts", "/contacts", params={"limit": "many"})
    call("GET /contacts/{id}", f"/contacts/{contact_id}")
    call("GET /contacts/{id}", "/contacts/999")
    call("PUT /contacts/{id}", f"/contacts/{contact_id}", json={"contact": {"lastName": "Lovelace"}})
    call("PUT /contacts/{id}", "/contacts/999", json={"contact": {}})
    call("GET /contacts/{id}/contactLists", f"/contacts/{contact_id}/contactLists")
    call("GET /contacts/{id}/contactLists", "/contacts/999/contactLists")
    call("GET /contacts/{id}/fieldValues", f"/contacts/{contact_id}/fieldValues")
    call("GET /contacts/{id}/fieldValues", "/contacts/999/fieldValues")
    call(
        "POST /fieldValues",
        "/fieldValues",
        json={"fieldValue": {"contact": contact_id, "field": field_id, "value": "x"}},
    )
    got[("POST /fieldValues", "403")] = wrong_key.post("/fieldValues", json={})
    call("GET /fieldValues", "/fieldValues")
    call("GET /fieldValues", "/fieldValues", params={"filters[fieldid]": "x"})

    tag_id = call("POST /tags", "/tags", json={"tag": {"tag": "VIP", "tagType": "contact"}}).json()["tag"]["id"]
    call("GET /tags", "/tags", params={"search": "V"})
    call("GET /tags", "/tags", params={"limit": "many"})
    contact_tag = call("POST /contactTags", "/contactTags", json={"contactTag": {"contact": contact_id, "tag": tag_id}})
    call("POST /contactTags", "/contactTags", json={"contactTag": {"contact": "999", "tag": tag_id}})
    call("POST /contactTags", "/contactTags", json={"contactTag": {"tag": tag_id}})
    call("DELETE /contactTags/{id}", f"/contactTags/{contact_tag.json()['contactTag']['id']}")
    call("DELETE /contactTags/{id}", "/contactTags/999")

    batch = call(
        "POST /import/bulk_import",
        "/import/bulk_import",
        json={"contacts": [{"email": "c@example.com", "subscribe": [{"listid": list_id}]}, {"email": "bad@@x"}]},
    ).json()["batchId"]
    call("POST /import/bulk_import", "/import/bulk_import", json={"contacts": [{"first_name": "no email"}]})
    api.wait_completed(batch)
    call("GET /import/info", "/import/info", params={"batchId": batch})
    call("GET /import/info", "/import/info")
    call("GET /import/bulk_import", "/import/bulk_import")

    call("DELETE /contacts/{id}", f"/contacts/{contact_id}")
    call("DELETE /contacts/{id}", f"/contacts/{contact_id}")
    wrong_key.close()
    return got


def test_every_declared_answer_matches_schema_and_example(sandbox: SandboxServer, api: Api) -> None:
    got = produce_answers(sandbox, api)
    declared = declared_json_answers()
    assert set(declared) <= set(got), f"not produced: {sorted(set(declared) - set(got))}"
    problems = []
    for (name, status), media in sorted(declared.items()):
        body = got[(name, status)].json()
        problems += [f"{name} {status} schema {e}" for e in schema_errors(media.get("schema"), body)]
        shapes = [shape_errors(example, body) for example in examples(media)]
        if shapes and all(shapes):  # one of the declared examples must fit
            problems += [f"{name} {status} example {e}" for e in shapes[0]]
    assert problems == [], "\n".join(problems)


def test_side_loaded_contact_lists_match_the_declared_records(sandbox: SandboxServer, api: Api) -> None:
    """GET /contacts?include=contactLists: the answer keeps the declared shape, and each side-loaded record,
    whatever unsubscribed it, has the shape GET /contacts/{id}/contactLists declares for one."""
    list_id = api.make_list()
    for kind in ("api", "link", "automation"):
        api.subscribe(api.make_contact(f"{kind}@example.com"), list_id)
    api.subscribe("1", list_id, status=2)
    sandbox.admin.unsubscribe("link@example.com", list_id, campaign=3, message=4, reason="bye", ip="192.0.2.9")
    sandbox.admin.unsubscribe_by_automation("automation@example.com", list_id, automation=5)
    params = {"listid": list_id, "status": 2, "include": "contactLists", "orders[id]": "ASC", "id_greater": 0}
    body = api.get("/contacts", params=params).json()
    assert len(body["contactLists"]) == 3

    declared = declared_json_answers()
    listing = declared[("GET /contacts", "200")]
    problems = schema_errors(listing["schema"], body)
    listing_shapes = [shape_errors(example, body) for example in examples(listing)]
    problems += sorted(listing_shapes, key=len)[0]  # one of the declared examples must fit
    one = declared[("GET /contacts/{id}/contactLists", "200")]
    record_schema = one["schema"]["properties"]["contactLists"]["items"]
    [record_example] = [example["contactLists"][0] for example in examples(one)]
    for record in body["contactLists"]:
        problems += schema_errors(record_schema, record) + shape_errors(record_example, record)
    assert problems == [], "\n".join(problems)


def test_validator_catches_wrong_types_and_missing_wrappers() -> None:
    schema = {"type": "object", "properties": {"contact": {"type": "object", "properties": {"id": {"type": "string"}}}}}
    assert schema_errors(schema, {"contact": {"id": "1"}}) == []
    assert schema_errors(schema, {"contact": {"id": 1}}) != []
    assert shape_errors({"contact": {"id": "1"}, "meta": {}}, {"contact": {"id": "1"}}) == ["$: missing 'meta'"]
    assert shape_errors({"contact": {"id": "1"}}, {"contact": {}}) == ["$.contact: missing 'id'"]
