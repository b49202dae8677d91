"""Endpoints for user groups (`groups`) and the grants of lists to them (`listGroups`).

A missing group answers 403 {"message": "No Result found for Group with id N"} on GET and PUT, as the published
description shows, and DELETE answers 400 {} for a missing group and for the Admin group (id 1), which every
account keeps.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from ac_pipeline.sandbox.listing import collection
from ac_pipeline.sandbox.query import PAGING, api_route
from ac_pipeline.sandbox.responses import (
    ApiError,
    answer,
    base_url,
    not_found,
    required_id,
    state_of,
    unprocessable,
    wrapped,
)
from ac_pipeline.sandbox.shapes import created_group_json, group_json, list_group_json
from ac_pipeline.sandbox.store import Row, Store, now_iso
from ac_pipeline.sandbox.values import text_of

ADMIN_GROUP = 1


def existing_group(store: Store, group_id: str) -> Row:
    row = store.one("SELECT * FROM user_groups WHERE id = ?", (int(group_id),)) if group_id.isdigit() else None
    if row is None:
        raise ApiError(403, {"message": f"No Result found for Group with id {group_id}"})
    return row


async def list_groups(request: Request) -> JSONResponse:
    return collection(request, "groups", "user_groups", group_json)


async def create_group(request: Request) -> JSONResponse:
    store = state_of(request).store
    data = await wrapped(request, "group")
    title = text_of(data.get("title"))
    if not title:
        raise unprocessable("The group title was not provided.", "field_missing", "title")
    cursor = store.execute(
        "INSERT INTO user_groups (title, descript, cdate) VALUES (?, ?, ?)",
        (title, text_of(data.get("descript")) or "", now_iso()),
    )
    row = store.one("SELECT * FROM user_groups WHERE id = ?", (cursor.lastrowid,))
    assert row is not None
    return answer({"group": created_group_json(row, base_url(request))})


async def get_group(request: Request) -> JSONResponse:
    row = existing_group(state_of(request).store, request.path_params["id"])
    return answer({"group": group_json(row, base_url(request))})


async def update_group(request: Request) -> JSONResponse:
    """Change the title and description (the permissions are accepted, all granted, and not enforced)."""
    store = state_of(request).store
    data = await wrapped(request, "group")
    with store.lock:
        row = existing_group(store, request.path_params["id"])
        title = text_of(data.get("title")) if "title" in data else row["title"]
        if not title:
            raise unprocessable("The group title must not be empty.", "field_missing", "title")
        descript = text_of(data.get("descript")) if "descript" in data else row["descript"]
        store.execute("UPDATE user_groups SET title = ?, descript = ? WHERE id = ?", (title, descript or "", row["id"]))
        row = existing_group(store, str(row["id"]))
    return answer({"group": created_group_json(row, base_url(request))})


async def delete_group(request: Request) -> JSONResponse:
    """Delete a group and its grants of lists (lists granted to no group are then not visible in the app)."""
    group_id = request.path_params["id"]
    store = state_of(request).store
    if not group_id.isdigit() or int(group_id) == ADMIN_GROUP:
        raise ApiError(400, {"message": f"Group {group_id} cannot be deleted (the Admin group, id 1, always stays)."})
    if not store.delete_with("user_groups", int(group_id), (("list_groups", "group_id"),)):
        raise ApiError(400, {"message": f"No Result found for Group with id {group_id}"})
    return answer({})


async def list_list_groups(request: Request) -> JSONResponse:
    return collection(request, "listGroups", "list_groups", list_group_json)


async def create_list_group(request: Request) -> JSONResponse:
    """Grant a list to a user group: the list becomes visible in the app to that group's users."""
    store = state_of(request).store
    data = await wrapped(request, "listGroup")
    list_id = required_id(data, "listid", "listGroup")
    group_id = required_id(data, "groupid", "listGroup")
    with store.lock:
        if store.list_row(list_id) is None:
            raise not_found("List", list_id)
        if store.one("SELECT 1 FROM user_groups WHERE id = ?", (group_id,)) is None:
            raise not_found("Group", group_id)
        store.execute("INSERT OR IGNORE INTO list_groups (list_id, group_id) VALUES (?, ?)", (list_id, group_id))
        row = store.one("SELECT * FROM list_groups WHERE list_id = ? AND group_id = ?", (list_id, group_id))
    assert row is not None
    return answer({"listGroup": list_group_json(row, base_url(request))}, 201)


routes = [
    api_route("/api/3/groups", list_groups, "GET", PAGING),
    api_route("/api/3/groups", create_group, "POST"),
    api_route("/api/3/groups/{id}", get_group, "GET"),
    api_route("/api/3/groups/{id}", update_group, "PUT"),
    api_route("/api/3/groups/{id}", delete_group, "DELETE"),
    api_route("/api/3/listGroups", list_list_groups, "GET", PAGING),
    api_route("/api/3/listGroups", create_list_group, "POST"),
]
