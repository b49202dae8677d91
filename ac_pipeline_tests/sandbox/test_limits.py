"""Field lengths: every write path takes a value at ActiveCampaign's limit and refuses one character more,
naming the field and the limit (422 `field_too_long`; a per-contact failure in bulk import)."""

from __future__ import annotations

from typing import Any

import pytest

from ac_pipeline.activecampaign.limits import (
    MAX_CUSTOM_FIELD_VALUE_LENGTH,
    MAX_EMAIL_LENGTH,
    MAX_FIRST_NAME_LENGTH,
    MAX_LAST_NAME_LENGTH,
    MAX_PHONE_LENGTH,
)
from ac_pipeline.sandbox import SandboxServer
from ac_pipeline_tests.sandbox.helpers import Api

DOMAIN = "@example.com"
# /contacts attribute -> (bulk import attribute, limit). "value" is the custom field value.
FIELDS = {
    "email": ("email", MAX_EMAIL_LENGTH),
    "firstName": ("first_name", MAX_FIRST_NAME_LENGTH),
    "lastName": ("last_name", MAX_LAST_NAME_LENGTH),
    "phone": ("phone", MAX_PHONE_LENGTH),
    "value": ("fields", MAX_CUSTOM_FIELD_VALUE_LENGTH),
}
CONTACT_PATHS = ("POST /contacts", "POST /contact/sync", "PUT /contacts/{id}")


def text(attribute: str, length: int) -> str:
    """A value of exactly `length` characters, a valid address for the email."""
    return "a" * (length - len(DOMAIN)) + DOMAIN if attribute == "email" else "x" * length


def contact_body(attribute: str, value: str, field_id: str) -> dict[str, Any]:
    if attribute == "email":
        return {"email": value}
    if attribute == "value":
        return {"email": "v@example.com", "fieldValues": [{"field": field_id, "value": value}]}
    return {"email": "v@example.com", attribute: value}


def write(api: Api, path: str, attribute: str, value: str, field_id: str) -> Any:
    """Send the value through one write path; the answer."""
    if path == "POST /fieldValues":
        contact_id = api.make_contact("v@example.com")
        return api.post("/fieldValues", json={"fieldValue": {"contact": contact_id, "field": field_id, "value": value}})
    body = {"contact": contact_body(attribute, value, field_id)}
    if path == "PUT /contacts/{id}":
        contact_id = api.make_contact("w@example.com")
        return api.put(f"/contacts/{contact_id}", json=body)
    return api.post(path.split()[1], json=body)


CASES = [(path, attribute) for path in CONTACT_PATHS for attribute in FIELDS] + [("POST /fieldValues", "value")]


@pytest.mark.parametrize(("path", "attribute"), CASES)
def test_a_value_at_the_limit_passes_and_one_more_character_fails(
    sandbox: SandboxServer, api: Api, path: str, attribute: str
) -> None:
    limit = FIELDS[attribute][1]
    field_id = api.make_field()
    assert write(api, path, attribute, text(attribute, limit), field_id).status_code in (200, 201)

    sandbox.admin.reset()  # the same emails again, in an empty account
    answer = write(api, path, attribute, text(attribute, limit + 1), api.make_field())
    assert answer.status_code == 422, answer.text
    [error] = answer.json()["errors"]
    pointer = "fieldValues" if attribute == "value" and path != "POST /fieldValues" else attribute
    assert error["code"] == "field_too_long"
    assert error["source"] == {"pointer": f"/data/attributes/{pointer}"}
    assert attribute in error["detail"] and f"at most {limit}" in error["detail"], error


def test_bulk_import_fails_only_the_contacts_with_a_value_over_the_limit(sandbox: SandboxServer, api: Api) -> None:
    field_id = int(api.make_field())
    rows = []
    for attribute, (bulk_name, limit) in FIELDS.items():
        for length in (limit, limit + 1):
            email = text("email", length) if attribute == "email" else f"{bulk_name}{length}{DOMAIN}"
            row: dict[str, Any] = {"email": email}
            if attribute == "value":
                row["fields"] = [{"id": field_id, "value": text(attribute, length)}]
            elif attribute != "email":
                row[bulk_name] = text(attribute, length)
            rows.append(row)
    accepted = api.bulk(rows).json()
    assert accepted["queued_contacts"] == len(rows)  # a value too long is a per-contact failure, not a rejection
    info = api.wait_completed(accepted["batchId"])
    over = [rows[i]["email"] for i in range(1, len(rows), 2)]
    assert info["failure"] == over and len(info["success"]) == len(FIELDS)
    reasons = sandbox.admin.import_details(accepted["batchId"])["reasons"]
    for (bulk_name, limit), email in zip(FIELDS.values(), over, strict=True):
        assert bulk_name in reasons[email] and f"at most {limit}" in reasons[email], reasons[email]
