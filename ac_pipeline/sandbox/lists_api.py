"""Endpoints for lists, the user groups (`groups`) and the grants of lists to groups (`listGroups`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ac_pipeline.sandbox.listing import collection, contains
from ac_pipeline.sandbox.responses import (
    answer,
    base_url,
    not_found,
    required_id,
    state_of,
    unprocessable,
    wrapped,
)
from ac_pipeline.sandbox.shapes import created_group_json, group_json, list_group_json, list_json
from ac_pipeline.sandbox.store import now_iso
from ac_pipeline.sandbox.values import text_of

REQUIRED_LIST_ATTRIBUTES = ("name", "stringid", "sender_url", "sender_reminder")


async def list_lists(request: Request) -> JSONResponse:
    """`filters[name]` matches part of the name, ignoring case: clients pick the exact match themselves."""
    return collection(request, "lists", "lists", list_json, contains("name", request.query_params.get("filters[name]")))


async def create_list(request: Request) -> JSONResponse:
    store = state_of(request).store
    data = await wrapped(request, "list")
    values = {}
    for attribute in REQUIRED_LIST_ATTRIBUTES:
        values[attribute] = text_of(data.get(attribute))
        if not values[attribute]:
            raise unprocessable(
                f"The list {attribute} was not provided.",
                "field_missing",
                attribute,
                f"list.{attribute} is required ({', '.join(REQUIRED_LIST_ATTRIBUTES)})",
            )
    cursor = store.execute(
        "INSERT INTO lists (name, stringid, sender_url, sender_reminder, cdate) VALUES (?, ?, ?, ?, ?)",
        (*values.values(), now_iso()),
    )
    row = store.list_row(int(cursor.lastrowid or 0))
    assert row is not None
    return answer({"list": list_json(row, base_url(request))})


async def get_list(request: Request) -> JSONResponse:
    list_id = request.path_params["id"]
    row = state_of(request).store.list_row(int(list_id)) if list_id.isdigit() else None
    if row is None:
        raise not_found("List", list_id)
    return answer({"list": list_json(row, base_url(request))})


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
    Route("/api/3/lists", list_lists, methods=["GET"]),
    Route("/api/3/lists", create_list, methods=["POST"]),
    Route("/api/3/lists/{id}", get_list, methods=["GET"]),
    Route("/api/3/groups", list_groups, methods=["GET"]),
    Route("/api/3/groups", create_group, methods=["POST"]),
    Route("/api/3/listGroups", list_list_groups, methods=["GET"]),
    Route("/api/3/listGroups", create_list_group, methods=["POST"]),
]
