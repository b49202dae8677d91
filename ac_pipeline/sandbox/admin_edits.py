"""Admin surface: what a person does in the account by hand, and what the mail system does to it.

Bounces (a membership goes to status 3 and the contact records the bounce), deleting contacts and lists as the
account's user would, and a user editing a list by hand: adding a contact, unsubscribing one (status 2,
`unsubscribed_by: "user"`), changing a custom field value. Same rules as the rest of /_sandbox/ (no key, no rate
limit, no faults, not logged). What each does to the records, and what is assumed, is in docs/sandbox.md.
"""

from __future__ import annotations

from datetime import date

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ac_pipeline.sandbox.admin import admin_contact, admin_list, admin_object, membership_json
from ac_pipeline.sandbox.lengths import FIELD_VALUE_LIMIT, too_long
from ac_pipeline.sandbox.lists_api import LIST_DEPENDENTS
from ac_pipeline.sandbox.provenance import USER_UNSUBSCRIBE
from ac_pipeline.sandbox.responses import ApiError, answer, bad_request, state_of
from ac_pipeline.sandbox.store import Row, Store, now_iso
from ac_pipeline.sandbox.values import text_of

BOUNCE_KINDS = ("hard", "soft")
BOUNCED = 3


def field_by_name(store: Store, name: str) -> Row:
    """A custom field by id, personalisation tag or title (any case)."""
    row = store.one("SELECT * FROM fields WHERE id = ?", (int(name),)) if name.isdigit() else None
    row = row or store.one(
        "SELECT * FROM fields WHERE perstag = ? COLLATE NOCASE OR title = ? COLLATE NOCASE ORDER BY id", (name, name)
    )
    if row is None:
        raise ApiError(404, {"message": f"No custom field with id, perstag or title {name!r}."})
    return row


async def bounce(request: Request) -> JSONResponse:
    """A campaign email to the contact bounced: {"email", "list": id or name (optional), "kind": "hard" | "soft"}.

    Hard: the contact's `bounced_hard` goes up and `bounced_date` is today; its membership of `list` (or, without
    one, of every list it is active or unconfirmed on) goes to status 3; bulk import then fails it. Soft: only
    `bounced_soft` and `bounced_date` change (the app's soft-bounce threshold is not modelled)."""
    body = await admin_object(request)
    kind = body.get("kind", "hard")
    if not isinstance(body.get("email"), str) or kind not in BOUNCE_KINDS:
        raise bad_request('Send {"email": "...", "list": "<list id or name, optional>", "kind": "hard" | "soft"}.')
    store = state_of(request).store
    with store.transaction() as conn:
        contact = admin_contact(store, body["email"])
        column = f"bounced_{kind}"
        conn.execute(
            f"UPDATE contacts SET {column} = {column} + 1, bounced_date = ?, udate = ? WHERE id = ?",
            (date.today().isoformat(), now_iso(), contact["id"]),
        )
        if kind == "hard":
            if body.get("list") is not None:
                list_row = admin_list(store, str(body["list"]))
                if store.membership(contact["id"], list_row["id"]) is None:
                    raise ApiError(404, {"message": f"{contact['email']} is not on list {list_row['id']}."})
                lists = [list_row["id"]]
            else:
                rows = conn.execute(
                    "SELECT list_id FROM memberships WHERE contact_id = ? AND status IN (0, 1)", (contact["id"],)
                )
                lists = [row[0] for row in rows]
            for list_id in lists:
                store.set_membership(contact["id"], list_id, BOUNCED, None)
        contact = admin_contact(store, body["email"])
    return answer(bounce_json(store, contact))


def bounce_json(store: Store, contact: Row) -> dict[str, object]:
    statuses = store.all(
        "SELECT list_id, status FROM memberships WHERE contact_id = ? ORDER BY list_id", (contact["id"],)
    )
    return {
        "email": contact["email"],
        "bounced_hard": str(contact["bounced_hard"]),
        "bounced_soft": str(contact["bounced_soft"]),
        "bounced_date": contact["bounced_date"],
        "lists": {str(row["list_id"]): row["status"] for row in statuses},
    }


async def delete_contact(request: Request) -> JSONResponse:
    """A user deletes the contact in the app: it goes with its memberships, tags and field values."""
    store = state_of(request).store
    with store.lock:
        contact = admin_contact(store, request.path_params["email"])
        store.delete_contact(contact["id"])
    return answer({"deleted": contact["email"], "id": str(contact["id"])})


async def delete_list(request: Request) -> JSONResponse:
    """A user deletes the list in the app: it goes with its memberships and its grants to user groups."""
    store = state_of(request).store
    with store.lock:
        list_row = admin_list(store, request.path_params["list"])
        store.delete_with("lists", list_row["id"], LIST_DEPENDENTS)
    return answer({"deleted": list_row["name"], "id": str(list_row["id"])})


async def add_member(request: Request) -> JSONResponse:
    """A user adds the contact to the list by hand: {"email"}. Status 1, whatever it was (a person can re-add
    someone who unsubscribed in the app; the sync must not, and does not have to)."""
    body = await admin_object(request)
    if not isinstance(body.get("email"), str):
        raise bad_request('Send {"email": "..."}.')
    store = state_of(request).store
    with store.lock:
        contact = admin_contact(store, body["email"])
        list_row = admin_list(store, request.path_params["list"])
        row = store.set_membership(contact["id"], list_row["id"], 1, None)
    return answer(membership_json(contact, list_row, row))


async def remove_member(request: Request) -> JSONResponse:
    """A user unsubscribes the contact from the list by hand: status 2, `unsubscribed_by: "user"`, no reason,
    campaign, message or address (assumed). Someone already unsubscribed stays as they were."""
    store = state_of(request).store
    with store.lock:
        contact = admin_contact(store, request.path_params["email"])
        list_row = admin_list(store, request.path_params["list"])
        if store.membership(contact["id"], list_row["id"]) is None:
            raise ApiError(404, {"message": f"{contact['email']} is not on list {list_row['id']}."})
        row = store.set_membership(contact["id"], list_row["id"], 2, USER_UNSUBSCRIBE)
    return answer(membership_json(contact, list_row, row))


async def set_field_value(request: Request) -> JSONResponse:
    """A user changes the contact's value of a custom field (id, perstag or title) by hand: {"value"}."""
    body = await admin_object(request)
    value = text_of(body.get("value"))
    if value is None:
        raise bad_request('Send {"value": "..."}.')
    problem = too_long("value", value, FIELD_VALUE_LIMIT)
    if problem:
        raise bad_request(problem)
    store = state_of(request).store
    with store.lock:
        contact = admin_contact(store, request.path_params["email"])
        field = field_by_name(store, request.path_params["field"])
        row = store.set_field_value(contact["id"], field["id"], value)
    return answer({"email": contact["email"], "field": str(field["id"]), "value": row["value"], "id": str(row["id"])})


routes = [
    Route("/_sandbox/bounce", bounce, methods=["POST"]),
    Route("/_sandbox/contacts/{email}", delete_contact, methods=["DELETE"]),
    Route("/_sandbox/contacts/{email}/fields/{field}", set_field_value, methods=["PUT"]),
    Route("/_sandbox/lists/{list}", delete_list, methods=["DELETE"]),
    Route("/_sandbox/lists/{list}/members", add_member, methods=["POST"]),
    Route("/_sandbox/lists/{list}/members/{email}", remove_member, methods=["DELETE"]),
]
