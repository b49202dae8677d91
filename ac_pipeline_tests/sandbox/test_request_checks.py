"""Request bodies held to the published request schemas with the real API's types, and the body cap
(ac_pipeline/sandbox/request_checks.py; docs/sandbox.md, "Request checks")."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from ac_pipeline.sandbox import SandboxServer
from ac_pipeline.sandbox.bulk import VALIDATION_MESSAGE
from ac_pipeline.sandbox.request_checks import MAX_BODY_BYTES, SPEC_PATH, load_operations


@pytest.fixture
def sandbox(make_sandbox: Callable[..., SandboxServer]) -> SandboxServer:
    # Requests back to back: at speed 10,000 the account takes 5 requests every 0.1 ms.
    return make_sandbox(speed=10_000.0)


@pytest.fixture
def api(sandbox: SandboxServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{sandbox.url}/api/3", headers={"Api-Token": sandbox.api_key}, timeout=30) as client:
        yield client


def made(api: httpx.Client, path: str, wrapper: str, body: dict[str, Any]) -> str:
    response = api.post(path, json={wrapper: body})
    assert response.status_code in (200, 201), response.text
    return str(response.json()[wrapper]["id"])


@pytest.fixture
def ids(api: httpx.Client) -> dict[str, str]:
    list_body = {"name": "News", "stringid": "news", "sender_url": "https://x.io", "sender_reminder": "r"}
    return {
        "list": made(api, "/lists", "list", list_body),
        "contact": made(api, "/contacts", "contact", {"email": "a@example.com"}),
        "tag": made(api, "/tags", "tag", {"tag": "VIP", "tagType": "contact"}),
        "field": made(api, "/fields", "field", {"title": "Tier", "type": "text"}),
    }


def only_error(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert len(errors) == 1
    return errors[0]


def test_the_package_reads_the_published_description() -> None:
    assert json.loads(SPEC_PATH.read_text())["paths"]  # the package ships the description
    operations = load_operations(json.loads(SPEC_PATH.read_text()))
    assert len(operations) == 16 and "POST /import/bulk_import" in operations


def test_bulk_import_field_ids_are_integers(sandbox: SandboxServer, api: httpx.Client, ids: dict[str, str]) -> None:
    contact = {"email": "b@example.com", "subscribe": [{"listid": ids["list"]}]}
    strings = [contact, {**contact, "email": "c@example.com", "fields": [{"id": ids["field"], "value": "gold"}]}]
    response = api.post("/import/bulk_import", json={"contacts": strings})
    assert response.status_code == 400
    assert response.json() == {
        "success": 0,
        "message": VALIDATION_MESSAGE,
        "failureReasons": [
            {
                "contact": 1,
                "failureReason": f"Field' fields[0].id' incorrect format: must be an integer; got \"{ids['field']}\"",
            }
        ],
    }
    # The list id is an id either way (the schema says string, its example sends a number).
    fine = [
        {**contact, "fields": [{"id": int(ids["field"]), "value": "gold"}]},
        {"email": "d@example.com", "subscribe": [{"listid": int(ids["list"])}]},
    ]
    assert api.post("/import/bulk_import", json={"contacts": fine}).status_code == 200
    wrong = [{"email": "e@example.com", "subscribe": [{"listid": True}], "tags": ["ok", 7]}]
    reasons = api.post("/import/bulk_import", json={"contacts": wrong}).json()["failureReasons"]
    assert reasons == [
        {
            "contact": 0,
            "failureReason": "Field' tags[1]' incorrect format: must be text (a JSON string); got 7",
        }
    ]


@pytest.mark.parametrize(
    "status",
    [1, "1"],
)
def test_contact_lists_take_ids_as_numbers_or_digit_strings(
    api: httpx.Client, ids: dict[str, str], status: int | str
) -> None:
    as_numbers = {"list": int(ids["list"]), "contact": int(ids["contact"]), "status": status}
    assert api.post("/contactLists", json={"contactList": as_numbers}).status_code == 200
    as_strings = {"list": ids["list"], "contact": ids["contact"], "status": str(status)}
    assert api.post("/contactLists", json={"contactList": as_strings}).status_code == 200


@pytest.mark.parametrize("bad", [True, 1.5, "News", None, [1], " 1"])
def test_contact_lists_refuse_what_is_not_an_id(api: httpx.Client, ids: dict[str, str], bad: Any) -> None:
    body = {"contactList": {"list": bad, "contact": ids["contact"], "status": 1}}
    error = only_error(api.post("/contactLists", json=body))
    assert error["code"] == "field_invalid" and error["source"] == {"pointer": "/data/attributes/list"}
    assert error["detail"] == f"contactList.list must be an id: an integer or a string of digits; got {json.dumps(bad)}"


def test_a_missing_required_attribute_is_named(api: httpx.Client, ids: dict[str, str]) -> None:
    error = only_error(
        api.post("/contactLists", json={"contactList": {"list": ids["list"], "contact": ids["contact"]}})
    )
    assert error["code"] == "field_missing" and error["source"] == {"pointer": "/data/attributes/status"}
    error = only_error(
        api.post("/fieldValues", json={"fieldValue": {"contact": ids["contact"], "field": ids["field"]}})
    )
    assert error["source"] == {"pointer": "/data/attributes/value"}


def test_contact_tags_errors_keep_their_status_member(api: httpx.Client, ids: dict[str, str]) -> None:
    assert (
        api.post(
            "/contactTags", json={"contactTag": {"contact": int(ids["contact"]), "tag": int(ids["tag"])}}
        ).status_code
        == 201
    )
    error = only_error(api.post("/contactTags", json={"contactTag": {"contact": ids["contact"], "tag": {"id": 1}}}))
    assert error["status"] == 422 and error["source"] == {"pointer": "/data/attributes/tag"}


def test_where_schema_and_example_agree_only_the_schema_type_is_taken(api: httpx.Client, ids: dict[str, str]) -> None:
    error = only_error(api.post("/listGroups", json={"listGroup": {"listid": ids["list"], "groupid": 1}}))
    assert error["detail"] == f'listGroup.listid must be an integer; got "{ids["list"]}"'
    assert api.post("/listGroups", json={"listGroup": {"listid": int(ids["list"]), "groupid": 1}}).status_code == 201


def test_nested_and_text_attributes(api: httpx.Client, ids: dict[str, str]) -> None:
    values = [{"field": ids["field"], "value": 5}]
    error = only_error(api.post("/contact/sync", json={"contact": {"email": "f@example.com", "fieldValues": values}}))
    assert error["source"] == {"pointer": "/data/attributes/fieldValues/0/value"}
    error = only_error(api.post("/contacts", json={"contact": {"email": "g@example.com", "firstName": 12}}))
    assert error["detail"] == "contact.firstName must be text (a JSON string); got 12"
    # Booleans whose example sends 0/1 take those too; other numbers are refused.
    assert api.post("/fields", json={"field": {"title": "T2", "type": "text", "visible": 1}}).status_code == 201
    error = only_error(api.post("/fields", json={"field": {"title": "T3", "type": "text", "visible": 2}}))
    assert error["source"] == {"pointer": "/data/attributes/visible"}


def test_the_envelope_stays_the_endpoints_business(api: httpx.Client) -> None:
    assert api.post("/contacts", content=b"not json", headers={"Content-Type": "application/json"}).status_code == 400
    assert api.post("/contacts", json={"nothing": 1}).status_code == 400
    assert api.post("/nothing/here", json={"contact": {"email": 5}}).status_code == 404
    # Attributes the schema does not name are ignored, as the real API ignores them.
    assert api.post("/contacts", json={"contact": {"email": "h@example.com", "whatever": [1]}}).status_code == 201


def test_checks_come_after_the_key(sandbox: SandboxServer) -> None:
    response = httpx.post(f"{sandbox.url}/api/3/contactLists", json={"contactList": {"list": True}})
    assert response.status_code == 403


def test_the_body_cap(api: httpx.Client) -> None:
    name = "x" * MAX_BODY_BYTES
    response = api.post("/contacts", json={"contact": {"email": "i@example.com", "firstName": name}})
    assert response.status_code == 413 and "400,000" in response.json()["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap holds while reading
        yield b'{"contact": {"email": "j@example.com", "firstName": "'
        for _ in range(5):
            yield b"y" * 100_000
        yield b'"}}'

    assert api.post("/contacts", content=chunks(), headers={"Content-Type": "application/json"}).status_code == 413
    bulk = api.post("/import/bulk_import", json={"contacts": [{"email": "k@example.com", "first_name": name}]})
    assert bulk.status_code == 400 and bulk.json()["success"] == 0 and "400,000" in bulk.json()["failureReasons"][0]
    assert api.get("/contacts", params={"email": "i@example.com"}).json()["meta"]["total"] == "0"
