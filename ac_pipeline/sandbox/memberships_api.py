"""contactLists: a contact's status on a list, set through the API (status 1 subscribes, 2 unsubscribes), and the
memberships read back as a collection (filters[list], filters[contact], filters[status]) or one by one."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from ac_pipeline.sandbox.contacts_api import existing_contact
from ac_pipeline.sandbox.provenance import API_UNSUBSCRIBE
from ac_pipeline.sandbox.query import PAGING, api_route
from ac_pipeline.sandbox.responses import (
    answer,
    base_url,
    int_param,
    not_found,
    page_params,
    required_id,
    state_of,
    unprocessable,
    wrapped,
)
from ac_pipeline.sandbox.shapes import contact_json, contact_list_json
from ac_pipeline.sandbox.values import id_of

CONTACT_LIST_PARAMS = ("filters[list]", "filters[contact]", "filters[status]", *PAGING)
# A membership with its contact's names (the record shows them).
MEMBERSHIP_SELECT = "SELECT m.*, c.first_name, c.last_name FROM memberships m JOIN contacts c ON c.id = m.contact_id"


async def set_contact_list(request: Request) -> JSONResponse:
    """Status 1 subscribes (and re-subscribes someone who unsubscribed, as the real API does, clearing how they
    unsubscribed); 2 unsubscribes, recorded as an API unsubscribe."""
    store = state_of(request).store
    data = await wrapped(request, "contactList")
    ids = {attribute: required_id(data, attribute, "contactList") for attribute in ("list", "contact", "status")}
    if ids["status"] not in (1, 2):
        raise unprocessable(
            "Invalid attribute", "field_invalid", "status", "status must be 1 (subscribe) or 2 (unsubscribe)"
        )
    # How the subscription was made, kept with it: the reference says to send 4 when re-subscribing.
    sourceid = id_of(data.get("sourceid", 0))
    if sourceid is None:
        raise unprocessable("Invalid attribute", "field_invalid", "sourceid", "sourceid must be a number")
    with store.lock:
        contact = existing_contact(store, ids["contact"])
        if store.list_row(ids["list"]) is None:
            raise not_found("List", ids["list"])
        row = store.set_membership(contact["id"], ids["list"], ids["status"], API_UNSUBSCRIBE, sourceid)
    base = base_url(request)
    return answer(
        {
            "contacts": [contact_json(contact, base)],
            "contactList": contact_list_json(row, contact, base, status_as_int=True),
        }
    )


async def list_contact_lists(request: Request) -> JSONResponse:
    """Every membership of the account, in id order; the filters narrow it to a list, a contact, a status."""
    params = request.query_params
    limit, offset = page_params(params)
    conditions, args = [], []
    for name, column in (
        ("filters[list]", "m.list_id"),
        ("filters[contact]", "m.contact_id"),
        ("filters[status]", "m.status"),
    ):
        value = int_param(params, name)
        if value is not None:
            conditions.append(f"{column} = ?")
            args.append(value)
    sql = MEMBERSHIP_SELECT + (" WHERE " + " AND ".join(conditions) if conditions else "")
    rows, total = state_of(request).store.page(f"{sql} ORDER BY m.id", args, limit, offset)
    base = base_url(request)
    shown = [contact_list_json(row, row, base, status_as_int=False) for row in rows]
    return answer({"contactLists": shown, "meta": {"total": str(total)}})


async def get_contact_list(request: Request) -> JSONResponse:
    item_id = request.path_params["id"]
    store = state_of(request).store
    row = store.one(f"{MEMBERSHIP_SELECT} WHERE m.id = ?", (int(item_id),)) if item_id.isdigit() else None
    if row is None:
        raise not_found("ContactList", item_id)
    return answer({"contactList": contact_list_json(row, row, base_url(request), status_as_int=False)})


routes = [
    api_route("/api/3/contactLists", list_contact_lists, "GET", CONTACT_LIST_PARAMS),
    api_route("/api/3/contactLists", set_contact_list, "POST"),
    api_route("/api/3/contactLists/{id}", get_contact_list, "GET"),
]
