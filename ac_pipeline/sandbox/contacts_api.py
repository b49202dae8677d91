"""Endpoints for contacts, contact/sync, list membership (contactLists) and a contact's field values."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ac_pipeline.sandbox.emails import is_valid, normalize
from ac_pipeline.sandbox.responses import (
    ApiError,
    answer,
    bad_request,
    base_url,
    id_of,
    int_param,
    not_found,
    page_params,
    required_id,
    state_of,
    text_of,
    unprocessable,
    wrapped,
)
from ac_pipeline.sandbox.shapes import contact_json, contact_list_json, field_value_json
from ac_pipeline.sandbox.store import DuplicateEmail, Row, Store

# Request attribute (camelCase, as /contacts takes it) -> column.
CONTACT_ATTRIBUTES = {"firstName": "first_name", "lastName": "last_name", "phone": "phone"}
# Side-loads GET /contacts/{id} answers with; the sandbox models contactLists and fieldValues only.
UNMODELLED_SIDELOADS = ("contactAutomations", "deals", "geoAddresses", "geoIps")


def duplicate_email() -> ApiError:
    return unprocessable("Email address already exists in the system", "duplicate", "email")


def contact_input(
    data: dict[str, Any], store: Store, *, email_required: bool
) -> tuple[dict[str, str], list[tuple[int, str]]]:
    """The columns to write (email normalised) and the (field id, value) pairs of a contact request body."""
    values: dict[str, str] = {}
    email = data.get("email")
    if email is None:
        if email_required:
            raise unprocessable("Email address is required", "field_missing", "email")
    elif not isinstance(email, str) or not is_valid(normalize(email)):
        raise unprocessable("Email address is not valid", "email_invalid", "email")
    else:
        values["email"] = normalize(email)
    for attribute, column in CONTACT_ATTRIBUTES.items():
        if data.get(attribute) is not None:
            text = text_of(data[attribute])
            if text is None:
                raise unprocessable(f"{attribute} must be text", "field_invalid", attribute)
            values[column] = text
    pairs: list[tuple[int, str]] = []
    items = data.get("fieldValues") or []
    if not isinstance(items, list):
        raise unprocessable(
            'fieldValues must be a list of {"field": id, "value": text}', "field_invalid", "fieldValues"
        )
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
        pairs.append((field_id, value))
    return values, pairs


def with_field_values(store: Store, contact: Row, pairs: list[tuple[int, str]], base: str) -> dict[str, Any]:
    """{"fieldValues": [...], "contact": {...}} after writing the given field values."""
    for field_id, value in pairs:
        store.set_field_value(contact["id"], field_id, value)
    values = [field_value_json(row, base) for row in store.field_values_of(contact["id"])]
    return {"fieldValues": values, "contact": contact_json(contact, base)}


def path_id(request: Request) -> int:
    value = request.path_params["id"]
    if not value.isdigit():
        raise not_found("Subscriber", value)
    return int(value)


def existing_contact(store: Store, contact_id: int) -> Row:
    row = store.contact(contact_id)
    if row is None:
        raise not_found("Subscriber", contact_id)
    return row


async def list_contacts(request: Request) -> JSONResponse:
    store = state_of(request).store
    params = request.query_params
    limit, offset = page_params(params)
    listid, status = int_param(params, "listid"), int_param(params, "status")
    id_greater = int_param(params, "id_greater")
    sql = "SELECT c.* FROM contacts c"
    args: list[object] = []
    if listid is not None:
        # `status` here is the list status (1 active, 2 unsubscribed): members of a list, as clients use it.
        sql += " JOIN memberships m ON m.contact_id = c.id AND m.list_id = ?"
        args.append(listid)
        if status is not None:
            sql += " AND m.status = ?"
            args.append(status)
    conditions = []
    if params.get("email"):
        conditions.append("c.email = ?")
        args.append(normalize(params["email"]))
    if params.get("email_like"):
        conditions.append("c.email LIKE ?")
        args.append(f"%{params['email_like'].lower()}%")
    if id_greater is not None:
        conditions.append("c.id > ?")
        args.append(id_greater)
    if conditions:
        sql += " WHERE " + " AND ".join(conditions)
    order = params.get("orders[id]", "ASC").upper()
    if order not in ("ASC", "DESC"):
        raise bad_request(f"orders[id] must be ASC or DESC, got {params['orders[id]']!r}.")
    rows, total = store.page(f"{sql} ORDER BY c.id {order}", args, limit, offset)
    base = base_url(request)
    page_input = {
        "segmentid": 0,
        "formid": 0,
        "listid": listid or 0,
        "tagid": 0,
        "limit": limit,
        "offset": offset,
        "search": None,
        "sort": None,
        "seriesid": 0,
        "waitid": 0,
        "status": -1 if status is None else status,
        "forceQuery": 0,
        "cacheid": "",
    }
    return answer(
        {
            "scoreValues": [],
            "contacts": [contact_json(row, base) for row in rows],
            "meta": {"total": str(total), "page_input": page_input},
        }
    )


async def create_contact(request: Request) -> JSONResponse:
    store = state_of(request).store
    values, pairs = contact_input(await wrapped(request, "contact"), store, email_required=True)
    email = values.pop("email")
    with store.lock:  # the duplicate check and the write belong together
        if store.contact_by_email(email) is not None:
            raise duplicate_email()
        contact = store.create_contact(email, values)
        return answer(with_field_values(store, contact, pairs, base_url(request)), 201)


async def sync_contact(request: Request) -> JSONResponse:
    """Create or update by email. 201 when created, 200 when updated."""
    store = state_of(request).store
    values, pairs = contact_input(await wrapped(request, "contact"), store, email_required=True)
    with store.lock:
        existing = store.contact_by_email(values["email"])
        if existing is None:
            email = values.pop("email")
            contact, status = store.create_contact(email, values), 201
        else:
            updated = store.update_contact(existing["id"], values)
            assert updated is not None
            contact, status = updated, 200
        return answer(with_field_values(store, contact, pairs, base_url(request)), status)


async def get_contact(request: Request) -> JSONResponse:
    store = state_of(request).store
    base = base_url(request)
    contact = existing_contact(store, path_id(request))
    memberships = store.all("SELECT * FROM memberships WHERE contact_id = ? ORDER BY id", (contact["id"],))
    return answer(
        {
            **{name: [] for name in UNMODELLED_SIDELOADS},
            "contactLists": [contact_list_json(row, contact, base, status_as_int=False) for row in memberships],
            "fieldValues": [field_value_json(row, base) for row in store.field_values_of(contact["id"])],
            "contact": contact_json(contact, base),
        }
    )


async def update_contact(request: Request) -> JSONResponse:
    store = state_of(request).store
    contact_id = path_id(request)
    existing_contact(store, contact_id)
    values, pairs = contact_input(await wrapped(request, "contact"), store, email_required=False)
    try:
        contact = store.update_contact(contact_id, values)
    except DuplicateEmail:
        raise duplicate_email() from None
    if contact is None:  # deleted meanwhile
        raise not_found("Subscriber", contact_id)
    return answer(with_field_values(store, contact, pairs, base_url(request)))


async def delete_contact(request: Request) -> JSONResponse:
    contact_id = path_id(request)
    if not state_of(request).store.delete_contact(contact_id):
        raise not_found("Subscriber", contact_id)
    return answer({})


async def contact_lists_of(request: Request) -> JSONResponse:
    store = state_of(request).store
    base = base_url(request)
    contact = existing_contact(store, path_id(request))
    rows = store.all("SELECT * FROM memberships WHERE contact_id = ? ORDER BY id", (contact["id"],))
    return answer({"contactLists": [contact_list_json(row, contact, base, status_as_int=False) for row in rows]})


async def field_values_of(request: Request) -> JSONResponse:
    store = state_of(request).store
    contact = existing_contact(store, path_id(request))
    base = base_url(request)
    return answer({"fieldValues": [field_value_json(row, base) for row in store.field_values_of(contact["id"])]})


async def set_contact_list(request: Request) -> JSONResponse:
    """Status 1 subscribes (and re-subscribes someone who unsubscribed, as the real API does); 2 unsubscribes."""
    store = state_of(request).store
    data = await wrapped(request, "contactList")
    ids = {attribute: required_id(data, attribute, "contactList") for attribute in ("list", "contact", "status")}
    if ids["status"] not in (1, 2):
        raise unprocessable(
            "Invalid attribute", "field_invalid", "status", "status must be 1 (subscribe) or 2 (unsubscribe)"
        )
    with store.lock:
        contact = existing_contact(store, ids["contact"])
        if store.list_row(ids["list"]) is None:
            raise not_found("List", ids["list"])
        unsubscribed_by = "api" if ids["status"] == 2 else None
        row = store.set_membership(contact["id"], ids["list"], ids["status"], unsubscribed_by)
    base = base_url(request)
    return answer(
        {
            "contacts": [contact_json(contact, base)],
            "contactList": contact_list_json(row, contact, base, status_as_int=True),
        }
    )


routes = [
    Route("/api/3/contacts", list_contacts, methods=["GET"]),
    Route("/api/3/contacts", create_contact, methods=["POST"]),
    Route("/api/3/contact/sync", sync_contact, methods=["POST"]),
    Route("/api/3/contacts/{id}", get_contact, methods=["GET"]),
    Route("/api/3/contacts/{id}", update_contact, methods=["PUT"]),
    Route("/api/3/contacts/{id}", delete_contact, methods=["DELETE"]),
    Route("/api/3/contacts/{id}/contactLists", contact_lists_of, methods=["GET"]),
    Route("/api/3/contacts/{id}/fieldValues", field_values_of, methods=["GET"]),
    Route("/api/3/contactLists", set_contact_list, methods=["POST"]),
]
