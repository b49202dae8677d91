"""Endpoints for contacts, contact/sync, and a contact's memberships (contactLists) and field values.

Setting a membership (POST /contactLists) is in memberships_api."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from ac_pipeline.sandbox.contact_input import contact_input
from ac_pipeline.sandbox.contacts_query import CONTACT_PARAMS, contacts_page, contacts_query, includes
from ac_pipeline.sandbox.query import api_route
from ac_pipeline.sandbox.responses import (
    ApiError,
    answer,
    base_url,
    int_param,
    not_found,
    page_params,
    state_of,
    unprocessable,
    wrapped,
)
from ac_pipeline.sandbox.shapes import contact_json, contact_list_json, contact_tag_json, field_value_json
from ac_pipeline.sandbox.store import DuplicateEmail, Row, Store

# Side-loads GET /contacts/{id} answers with; the sandbox models contactLists and fieldValues only.
UNMODELLED_SIDELOADS = ("contactAutomations", "deals", "geoAddresses", "geoIps")


def duplicate_email() -> ApiError:
    return unprocessable("Email address already exists in the system", "duplicate", "email")


def with_field_values(store: Store, contact: Row, pairs: list[tuple[int, str]], base: str) -> dict[str, Any]:
    """{"fieldValues": [...], "contact": {...}} after writing the given field values."""
    for field_id, value in pairs:
        store.set_field_value(contact["id"], field_id, value)
    values = [field_value_json(row, base) for row in store.field_values_of(contact["id"])]
    # The create, sync and update answers show `organization` as a string ("" for none), the GETs as null.
    return {"fieldValues": values, "contact": {**contact_json(contact, base), "organization": ""}}


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


def side_load_contact_lists(
    contacts: list[dict[str, Any]], rows: list[Row], memberships: list[Row], base: str
) -> list[dict[str, Any]]:
    """As the real API side-loads memberships: each contact gets `contactLists`, the ids of its memberships;
    the answer is the full records, to go alongside at the top level."""
    contact_rows = {row["id"]: row for row in rows}
    ids_of: dict[str, list[str]] = {}
    for membership in memberships:
        ids_of.setdefault(str(membership["contact_id"]), []).append(str(membership["id"]))
    for contact in contacts:
        contact["contactLists"] = ids_of.get(contact["id"], [])
    return [contact_list_json(m, contact_rows[m["contact_id"]], base, status_as_int=False) for m in memberships]


def side_load(
    contacts: list[dict[str, Any]],
    name: str,
    records: list[Row],
    to_json: Callable[[Row, str], dict[str, Any]],
    base: str,
) -> list[dict[str, Any]]:
    """Each contact gets `name`, the ids of its records; the full records go alongside at the top level."""
    ids_of: dict[str, list[str]] = {}
    for record in records:
        ids_of.setdefault(str(record["contact_id"]), []).append(str(record["id"]))
    for contact in contacts:
        contact[name] = ids_of.get(contact["id"], [])
    return [to_json(record, base) for record in records]


SIDELOAD_ROWS: dict[str, Callable[[Store, list[int]], list[Row]]] = {
    "contactLists": Store.memberships_of,
    "contactTags": lambda store, ids: store.rows_of_contacts("contact_tags", ids),
    "fieldValues": lambda store, ids: store.rows_of_contacts("field_values", ids),
}


async def list_contacts(request: Request) -> JSONResponse:
    """Every documented filter and order (contacts_query); `include=` contactLists, contactTags, fieldValues."""
    store = state_of(request).store
    params = request.query_params
    limit, offset = page_params(params)
    query = contacts_query(params)
    sideloads = includes(params)
    with store.lock:  # the page and its side-loads read the same state
        rows, total = contacts_page(store, query, limit, offset)
        ids = [row["id"] for row in rows]
        loaded = {name: SIDELOAD_ROWS[name](store, ids) for name in sideloads}
    base = base_url(request)
    status = int_param(params, "status")
    page_input = {
        "segmentid": int_param(params, "segmentid") or 0,
        "formid": int_param(params, "formid") or 0,
        "listid": int_param(params, "listid") or 0,
        "tagid": int_param(params, "tagid") or 0,
        "limit": limit,
        "offset": offset,
        "search": params.get("search"),
        "sort": None,
        "seriesid": int_param(params, "seriesid") or 0,
        "waitid": int_param(params, "waitid") or 0,
        "status": -1 if status is None else status,
        "forceQuery": int_param(params, "forceQuery") or 0,
        "cacheid": "",
    }
    body: dict[str, Any] = {"scoreValues": [], "contacts": [contact_json(row, base) for row in rows]}
    if "contactLists" in loaded:
        body["contactLists"] = side_load_contact_lists(body["contacts"], rows, loaded["contactLists"], base)
    if "contactTags" in loaded:
        body["contactTags"] = side_load(body["contacts"], "contactTags", loaded["contactTags"], contact_tag_json, base)
    if "fieldValues" in loaded:
        body["fieldValues"] = side_load(body["contacts"], "fieldValues", loaded["fieldValues"], field_value_json, base)
    return answer({**body, "meta": {"total": str(total), "page_input": page_input}})


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
    """Create or update by email. 201 either way: the published description declares 201 (and 400) only, and the
    sandbox follows it (docs/sandbox.md, "contact/sync")."""
    store = state_of(request).store
    values, pairs = contact_input(await wrapped(request, "contact"), store, email_required=True)
    with store.lock:
        existing = store.contact_by_email(values["email"])
        if existing is None:
            email = values.pop("email")
            contact = store.create_contact(email, values)
        else:
            updated = store.update_contact(existing["id"], values)
            assert updated is not None
            contact = updated
        return answer(with_field_values(store, contact, pairs, base_url(request)), 201)


async def get_contact(request: Request) -> JSONResponse:
    """The contact with the ids of its memberships, field values (side-loaded in full) and, as empty arrays, the
    relationships the sandbox does not model; `organization` null, as the published example shows."""
    store = state_of(request).store
    base = base_url(request)
    contact = existing_contact(store, path_id(request))
    with store.lock:
        memberships = store.memberships_of([contact["id"]])
        values = store.field_values_of(contact["id"])
    shown = contact_json(contact, base)
    contact_lists = side_load_contact_lists([shown], [contact], memberships, base)
    shown["fieldValues"] = [str(row["id"]) for row in values]
    for name in UNMODELLED_SIDELOADS:
        shown[name] = []
    shown["accountContacts"] = []
    return answer(
        {
            **{name: [] for name in UNMODELLED_SIDELOADS},
            "contactLists": contact_lists,
            "fieldValues": [field_value_json(row, base) for row in values],
            "contact": shown,
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
    rows = store.memberships_of([contact["id"]])
    return answer({"contactLists": [contact_list_json(row, contact, base, status_as_int=False) for row in rows]})


async def field_values_of(request: Request) -> JSONResponse:
    store = state_of(request).store
    contact = existing_contact(store, path_id(request))
    base = base_url(request)
    return answer({"fieldValues": [field_value_json(row, base) for row in store.field_values_of(contact["id"])]})


routes = [
    api_route("/api/3/contacts", list_contacts, "GET", CONTACT_PARAMS),
    api_route("/api/3/contacts", create_contact, "POST"),
    api_route("/api/3/contact/sync", sync_contact, "POST"),
    api_route("/api/3/contacts/{id}", get_contact, "GET"),
    api_route("/api/3/contacts/{id}", update_contact, "PUT"),
    api_route("/api/3/contacts/{id}", delete_contact, "DELETE"),
    api_route("/api/3/contacts/{id}/contactLists", contact_lists_of, "GET"),
    api_route("/api/3/contacts/{id}/fieldValues", field_values_of, "GET"),
]
