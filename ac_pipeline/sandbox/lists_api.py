"""Endpoints for lists. User groups and the grants of lists to them are in groups_api."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from ac_pipeline.sandbox.listing import collection, delete_by_id
from ac_pipeline.sandbox.query import (
    PAGING,
    Filter,
    api_route,
    direction,
    text_filter,
    weight_order,
    where,
    with_operators,
)
from ac_pipeline.sandbox.responses import answer, base_url, not_found, state_of, unprocessable, wrapped
from ac_pipeline.sandbox.shapes import list_json
from ac_pipeline.sandbox.store import now_iso
from ac_pipeline.sandbox.values import text_of

REQUIRED_LIST_ATTRIBUTES = ("name", "stringid", "sender_url", "sender_reminder")


LIST_PARAMS = (*with_operators("name"), "orders[name]", *PAGING)
# Lists deleted with their list: memberships (as the real API does) and the grants to user groups.
LIST_DEPENDENTS = (("memberships", "list_id"), ("list_groups", "list_id"))


async def list_lists(request: Request) -> JSONResponse:
    """`filters[name]` matches part of the name, ignoring case (clients pick the exact match themselves);
    `filters[name][<operator>]` compares with an operator; `orders[name]` is weight, asc or desc."""
    params = request.query_params
    filters = text_filter(params, "name", "name")
    order: Filter = ("id", [])
    if "orders[name]" in params:
        how = direction(params, "orders[name]", ("weight", "asc", "desc"))
        if how == "weight":
            texts = [params[key] for key in with_operators("name") if key in params]
            weight, args = weight_order("name", texts[0] if texts else None)
            order = (f"{weight}, id", args)
        else:
            order = (f"lower(name) {how.upper()}, id", [])
    return collection(request, "lists", "lists", list_json, where(filters), order=order)


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


async def delete_list(request: Request) -> JSONResponse:
    """Delete a list with its memberships. A missing list: 403 with the real message (the published answer for
    this operation names the entity `_List`)."""
    return delete_by_id(request, "lists", "_List", status=403, dependents=LIST_DEPENDENTS)


routes = [
    api_route("/api/3/lists", list_lists, "GET", LIST_PARAMS),
    api_route("/api/3/lists", create_list, "POST"),
    api_route("/api/3/lists/{id}", get_list, "GET"),
    api_route("/api/3/lists/{id}", delete_list, "DELETE"),
]
