"""Endpoints for contacts, contact/sync, and a contact's memberships (contactLists) and field values.

Setting a membership (POST /contactLists) is in memberships_api."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ac_pipeline.sandbox.contact_input import contact_input
from ac_pipeline.sandbox.emails import normalize
from ac_pipeline.sandbox.responses import (
    ApiError,
    answer,
    bad_request,
    base_url,
    int_param,
    not_found,
    page_params,
    state_of,
    unprocessable,
    wrapped,
)
from ac_pipeline.sandbox.shapes import contact_json, contact_list_json, field_value_json
from ac_pipeline.sandbox.store import DuplicateEmail, Row, Store

# Side-loads GET /contacts/{id} answers with; the sandbox models contactLists and fieldValues only.
UNMODELLED_SIDELOADS = ("contactAutomations", "deals", "geoAddresses", "geoIps")
# What `include=` of GET /contacts can side-load in the sandbox; other names are ignored.
SIDELOAD_CONTACT_LISTS = "contactLists"


def duplicate_email() -> ApiError:
    return unprocessable("Email address already exists in the system", "duplicate", "email")


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


def contacts_query(params: QueryParams) -> tuple[str, list[object]]:
    """The SELECT of GET /contacts for its filters, without ORDER BY."""
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
    return sql, args


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


async def list_contacts(request: Request) -> JSONResponse:
    """Filters `email`, `email_like`, `listid` + `status`, `id_greater`, `orders[id]`; `include=contactLists`."""
    store = state_of(request).store
    params = request.query_params
    limit, offset = page_params(params)
    sql, args = contacts_query(params)
    order = params.get("orders[id]", "ASC").upper()
    if order not in ("ASC", "DESC"):
        raise bad_request(f"orders[id] must be ASC or DESC, got {params['orders[id]']!r}.")
    include = SIDELOAD_CONTACT_LISTS in params.get("include", "").split(",")
    with store.lock:  # the page and its side-load read the same state
        rows, total = store.page(f"{sql} ORDER BY c.id {order}", args, limit, offset)
        memberships = store.memberships_of([row["id"] for row in rows]) if include else []
    base = base_url(request)
    status = int_param(params, "status")
    page_input = {
        "segmentid": 0,
        "formid": 0,
        "listid": int_param(params, "listid") or 0,
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
    body: dict[str, Any] = {"scoreValues": [], "contacts": [contact_json(row, base) for row in rows]}
    if include:
        body["contactLists"] = side_load_contact_lists(body["contacts"], rows, memberships, base)
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
    with store.lock:
        memberships = store.memberships_of([contact["id"]])
        values = store.field_values_of(contact["id"])
    shown = contact_json(contact, base)
    contact_lists = side_load_contact_lists([shown], [contact], memberships, base)
    shown["fieldValues"] = [str(row["id"]) for row in values]
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
    Route("/api/3/contacts", list_contacts, methods=["GET"]),
    Route("/api/3/contacts", create_contact, methods=["POST"]),
    Route("/api/3/contact/sync", sync_contact, methods=["POST"]),
    Route("/api/3/contacts/{id}", get_contact, methods=["GET"]),
    Route("/api/3/contacts/{id}", update_contact, methods=["PUT"]),
    Route("/api/3/contacts/{id}", delete_contact, methods=["DELETE"]),
    Route("/api/3/contacts/{id}/contactLists", contact_lists_of, methods=["GET"]),
    Route("/api/3/contacts/{id}/fieldValues", field_values_of, methods=["GET"]),
]
