"""The admin surface under /_sandbox/: what tests do and inspect that the API itself cannot.

No Api-Token, no rate limit, no faults, and not counted in the request log. See docs/sandbox.md.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ac_pipeline.sandbox.emails import normalize
from ac_pipeline.sandbox.faults import FaultSpecError
from ac_pipeline.sandbox.provenance import Unsubscribe
from ac_pipeline.sandbox.responses import ApiError, answer, bad_request, int_param, json_body, state_of
from ac_pipeline.sandbox.shapes import contact_list_json
from ac_pipeline.sandbox.store import Row, Store
from ac_pipeline.sandbox.values import id_of

# The fields of a contactLists record the membership view shows.
MEMBERSHIP_FIELDS = ("sdate", "udate", "unsubreason", "campaign", "message", "ip4Unsub", "unsubscribeAutomation")


def admin_list(store: Store, id_or_name: str) -> Row:
    row = store.find_list(id_or_name)
    if row is None:
        raise ApiError(404, {"message": f"No list with id or name {id_or_name!r}; create it with POST /api/3/lists."})
    return row


def admin_contact(store: Store, email: str) -> Row:
    row = store.contact_by_email(normalize(email))
    if row is None:
        raise ApiError(404, {"message": f"No contact with email {email!r}; create it through the API first."})
    return row


def list_info(store: Store, row: Row) -> dict[str, Any]:
    """A list's id, name and the user groups it is granted to; with none it is not visible in the app."""
    groups = [{"id": str(g["id"]), "title": g["title"]} for g in store.list_groups_of(row["id"])]
    return {"id": str(row["id"]), "name": row["name"], "visible": bool(groups), "groups": groups}


async def admin_object(request: Request) -> dict[str, Any]:
    body = await json_body(request)
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    return body


async def health(request: Request) -> JSONResponse:
    return answer({"ok": True})


async def config(request: Request) -> JSONResponse:
    return answer(state_of(request).describe())


async def unsubscribe(request: Request) -> JSONResponse:
    """The contact unsubscribes themselves through the unsubscribe link of a campaign email:
    {"email", "list": id or name, "campaign": id, "message": id, "reason": text or null, "ip": IPv4}; campaign
    and message default to 1, reason to null, ip to the caller's address."""
    body = await admin_object(request)
    campaign, message = admin_id(body, "campaign", 1), admin_id(body, "message", 1)
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise bad_request('"reason" must be the text the person typed, or null.')
    ip = body.get("ip", request.client.host if request.client else None)
    try:
        how = Unsubscribe.by_campaign_link(campaign, message, reason, str(ip))
    except ValueError:
        raise bad_request(f'"ip" must be an IPv4 address like "203.0.113.7", got {ip!r}.') from None
    return answer(unsubscribe_member(state_of(request).store, body, how))


async def automation_unsubscribe(request: Request) -> JSONResponse:
    """An automation's "unsubscribe from list" action runs for the contact: {"email", "list", "automation": id}."""
    body = await admin_object(request)
    if body.get("automation") is None:
        raise bad_request('Send {"email": "...", "list": "<list id or name>", "automation": <automation id>}.')
    how = Unsubscribe.by_automation(admin_id(body, "automation", 0))
    return answer(unsubscribe_member(state_of(request).store, body, how))


def admin_id(body: dict[str, Any], name: str, default: int) -> int:
    value = id_of(body.get(name, default))
    if value is None or value < 1:
        raise bad_request(f'"{name}" must be an id (a positive number), got {body.get(name)!r}.')
    return value


def unsubscribe_member(store: Store, body: dict[str, Any], how: Unsubscribe) -> dict[str, Any]:
    """Set status 2 on the list for the contact, recorded as `how`; the membership as the admin shows it."""
    if not isinstance(body.get("email"), str) or body.get("list") is None:
        raise bad_request('Send {"email": "...", "list": "<list id or name>", ...}.')
    with store.lock:
        contact = admin_contact(store, body["email"])
        list_row = admin_list(store, str(body["list"]))
        row = store.set_membership(contact["id"], list_row["id"], 2, how)
    return membership_json(contact, list_row, row)


def membership_json(contact: Row, list_row: Row, row: Row) -> dict[str, Any]:
    """Status, who unsubscribed, and the contactLists record's date and unsubscribe fields as the API shows them."""
    record = contact_list_json(row, contact, "", status_as_int=True)
    return {
        "email": contact["email"],
        "list": str(list_row["id"]),
        "status": row["status"],
        "unsubscribed_by": row["unsubscribed_by"],
        **{name: record[name] for name in MEMBERSHIP_FIELDS},
    }


async def membership(request: Request) -> JSONResponse:
    """One contact's membership of one list: ?email=...&list=<id or name>."""
    store = state_of(request).store
    params = request.query_params
    if not params.get("email") or not params.get("list"):
        raise bad_request("Give ?email=...&list=<list id or name>.")
    contact = admin_contact(store, params["email"])
    list_row = admin_list(store, params["list"])
    row = store.membership(contact["id"], list_row["id"])
    if row is None:
        raise ApiError(404, {"message": f"{contact['email']} has never been on list {list_row['id']}."})
    return answer(membership_json(contact, list_row, row))


async def exclusions(request: Request) -> JSONResponse:
    store = state_of(request).store
    if request.method == "POST":
        body = await admin_object(request)
        emails = body.get("emails")
        if not isinstance(emails, list) or not all(isinstance(e, str) for e in emails):
            raise bad_request('Send {"emails": ["a@example.com", ...]}.')
        store.exclude(emails)
    return answer({"emails": store.exclusions()})


async def list_details(request: Request) -> JSONResponse:
    store = state_of(request).store
    return answer(list_info(store, admin_list(store, request.path_params["list"])))


async def members(request: Request) -> JSONResponse:
    """Every email on a list with a status (default 1, active), in contact id order, without paging."""
    store = state_of(request).store
    status = int_param(request.query_params, "status")
    status = 1 if status is None else status
    with store.lock:
        list_row = admin_list(store, request.path_params["list"])
        emails = store.member_emails(list_row["id"], status)
        info = list_info(store, list_row)
    return answer({"list": info, "status": status, "total": len(emails), "emails": emails})


async def requests_log(request: Request) -> JSONResponse:
    return answer(state_of(request).requests.summary())


async def imports(request: Request) -> JSONResponse:
    """Batches not yet applied, and what the worker applied since start or reset, with its busy time."""
    queue = state_of(request).imports
    callbacks = {"callbacks_sent": queue.callbacks.sent, "callbacks_failed": queue.callbacks.failed}
    return answer({"pending": queue.pending(), **queue.stats.to_dict(), **callbacks})


async def import_details(request: Request) -> JSONResponse:
    """A batch with the reason each failed contact was not applied: {"reasons": {email: reason}}."""
    info = state_of(request).imports.info(request.path_params["batch_id"])
    if info is None:
        raise ApiError(404, {"message": f"No import batch {request.path_params['batch_id']}."})
    return answer(info)


async def reset(request: Request) -> JSONResponse:
    state_of(request).reset()
    return answer({"reset": True})


async def faults(request: Request) -> JSONResponse:
    """GET the rules in force; PUT {"spec": "..."} or {"rules": [...]}, optionally with "seed" (restarts the RNG)."""
    state = state_of(request)
    if request.method == "PUT":
        try:
            state.set_faults(await admin_object(request))
        except FaultSpecError as exc:
            raise bad_request(str(exc)) from None
    return answer(state.faults.to_dict())


async def unknown(request: Request) -> JSONResponse:
    raise ApiError(404, {"message": f"No admin endpoint {request.method} {request.url.path}; see docs/sandbox.md."})


routes = [
    Route("/_sandbox/health", health, methods=["GET"]),
    Route("/_sandbox/config", config, methods=["GET"]),
    Route("/_sandbox/unsubscribe", unsubscribe, methods=["POST"]),
    Route("/_sandbox/automation_unsubscribe", automation_unsubscribe, methods=["POST"]),
    Route("/_sandbox/membership", membership, methods=["GET"]),
    Route("/_sandbox/exclusions", exclusions, methods=["GET", "POST"]),
    Route("/_sandbox/lists/{list}", list_details, methods=["GET"]),
    Route("/_sandbox/lists/{list}/members", members, methods=["GET"]),
    Route("/_sandbox/requests", requests_log, methods=["GET"]),
    Route("/_sandbox/imports", imports, methods=["GET"]),
    Route("/_sandbox/imports/{batch_id}", import_details, methods=["GET"]),
    Route("/_sandbox/reset", reset, methods=["POST"]),
    Route("/_sandbox/faults", faults, methods=["GET", "PUT"]),
    Route("/_sandbox/{rest:path}", unknown, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
]
