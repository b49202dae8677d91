"""POST /contactLists: a contact's status on a list, set through the API (status 1 subscribes, 2 unsubscribes)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ac_pipeline.sandbox.contacts_api import existing_contact
from ac_pipeline.sandbox.provenance import API_UNSUBSCRIBE
from ac_pipeline.sandbox.responses import (
    answer,
    base_url,
    not_found,
    required_id,
    state_of,
    unprocessable,
    wrapped,
)
from ac_pipeline.sandbox.shapes import contact_json, contact_list_json
from ac_pipeline.sandbox.values import id_of


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


routes = [Route("/api/3/contactLists", set_contact_list, methods=["POST"])]
