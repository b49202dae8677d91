"""Reading a contact request body (POST /contacts, POST /contact/sync, PUT /contacts/{id}) into columns and
custom field values, with the real 422s: a missing or invalid email, a value of the wrong type, an unknown
custom field, and a value longer than ActiveCampaign keeps (`field_too_long`)."""

from __future__ import annotations

from typing import Any

from ac_pipeline.sandbox.emails import is_valid, normalize
from ac_pipeline.sandbox.lengths import CONTACT_LIMITS, FIELD_VALUE_LIMIT, too_long
from ac_pipeline.sandbox.responses import field_too_long, unprocessable
from ac_pipeline.sandbox.store import Store
from ac_pipeline.sandbox.values import id_of, text_of

# Request attribute (camelCase, as /contacts takes it) -> column.
CONTACT_ATTRIBUTES = {"firstName": "first_name", "lastName": "last_name", "phone": "phone"}


def checked_length(attribute: str, value: str) -> str:
    """`value`, or the 422 naming the attribute and its limit if it is longer than ActiveCampaign keeps."""
    problem = too_long(attribute, value, CONTACT_LIMITS[attribute])
    if problem:
        raise field_too_long(attribute, problem)
    return value


def contact_input(
    data: dict[str, Any], store: Store, *, email_required: bool
) -> tuple[dict[str, str], list[tuple[int, str]]]:
    """The columns to write (email normalised) and the (field id, value) pairs of a contact request body."""
    values: dict[str, str] = {}
    email = data.get("email")
    if email is None:
        if email_required:
            raise unprocessable("Email address is required", "field_missing", "email")
    # Length before format: an address too long must be told so, not called invalid.
    elif not isinstance(email, str) or not is_valid(checked_length("email", normalize(email))):
        raise unprocessable("Email address is not valid", "email_invalid", "email")
    else:
        values["email"] = normalize(email)
    for attribute, column in CONTACT_ATTRIBUTES.items():
        if data.get(attribute) is not None:
            text = text_of(data[attribute])
            if text is None:
                raise unprocessable(f"{attribute} must be text", "field_invalid", attribute)
            values[column] = checked_length(attribute, text)
    return values, field_value_pairs(data.get("fieldValues") or [], store)


def field_value_pairs(items: Any, store: Store) -> list[tuple[int, str]]:
    """The (field id, value) pairs of a contact's `fieldValues`."""
    if not isinstance(items, list):
        raise unprocessable(
            'fieldValues must be a list of {"field": id, "value": text}', "field_invalid", "fieldValues"
        )
    pairs: list[tuple[int, str]] = []
    for item in items:
        field_id = id_of(item.get("field")) if isinstance(item, dict) else None
        value = text_of(item.get("value")) if isinstance(item, dict) else None
        if field_id is None or value is None:
            raise unprocessable('Each fieldValue needs "field" (an id) and "value"', "field_invalid", "fieldValues")
        if store.one("SELECT 1 FROM fields WHERE id = ?", (field_id,)) is None:
            raise unprocessable(
                f"Custom field {field_id} does not exist; create it with POST /api/3/fields",
                "field_invalid",
                "fieldValues",
            )
        problem = too_long(f"fieldValues value (custom field {field_id})", value, FIELD_VALUE_LIMIT)
        if problem:
            raise field_too_long("fieldValues", problem)
        pairs.append((field_id, value))
    return pairs
