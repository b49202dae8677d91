"""Endpoints for tags and contactTags (a tag on a contact)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from ac_pipeline.sandbox.listing import collection, delete_by_id, equals
from ac_pipeline.sandbox.query import (
    PAGING,
    Filter,
    api_route,
    compare_text,
    direction,
    text_filter,
    weight_order,
    where,
    with_operators,
)
from ac_pipeline.sandbox.responses import (
    ApiError,
    answer,
    base_url,
    int_param,
    not_found,
    required_id,
    state_of,
    unprocessable,
    wrapped,
)
from ac_pipeline.sandbox.shapes import contact_tag_json, tag_json
from ac_pipeline.sandbox.store import TOUCH_CONTACT, Row, Store, now_iso
from ac_pipeline.sandbox.values import text_of

TAG_PARAMS = ("search", *with_operators("search")[1:], "orders[search]", *PAGING)
CONTACT_TAG_PARAMS = ("filters[contact]", "filters[tag]", *PAGING)


def tag_error(status: int, title: str, detail: str = "", attribute: str | None = None) -> ApiError:
    """contactTags answers errors in its own shape: {"errors": [{"status", "title", "detail" | "source"}]}."""
    error: dict[str, object] = {"status": status, "title": title}
    if attribute:
        error["source"] = {"pointer": f"/data/attributes/{attribute}"}
    else:
        error["detail"] = detail
    return ApiError(status, {"errors": [error]})


def existing_tag(store: Store, tag_id: str) -> Row:
    row = store.one("SELECT * FROM tags WHERE id = ?", (int(tag_id),)) if tag_id.isdigit() else None
    if row is None:
        raise not_found("Tag", tag_id)
    return row


async def list_tags(request: Request) -> JSONResponse:
    """`search` matches part of the tag name, ignoring case; `filters[search][<operator>]` compares with an
    operator; `orders[search]` is weight (exact matches first, then those starting with the text), asc or desc."""
    params = request.query_params
    filters: list[Filter] = text_filter(params, "search", "tag")
    if params.get("search"):
        filters.append(compare_text("tag", "contains", params["search"]))
    order: Filter = ("id", [])
    if "orders[search]" in params:
        how = direction(params, "orders[search]", ("weight", "asc", "desc"))
        if how == "weight":
            texts = [params[key] for key in ("search", *with_operators("search")[1:]) if key in params]
            weight, args = weight_order("tag", texts[0] if texts else None)
            order = (f"{weight}, id", args)
        else:
            order = (f"lower(tag) {how.upper()}, id", [])
    return collection(request, "tags", "tags", tag_json, where(filters), order=order)


async def create_tag(request: Request) -> JSONResponse:
    store = state_of(request).store
    data = await wrapped(request, "tag")
    name = text_of(data.get("tag"))
    if not name:
        raise unprocessable("The tag name was not provided.", "field_missing", "tag")
    cursor = store.execute(
        "INSERT INTO tags (tag, tag_type, description, cdate) VALUES (?, ?, ?, ?)",
        (name, text_of(data.get("tagType")) or "contact", text_of(data.get("description")) or "", now_iso()),
    )
    row = store.one("SELECT * FROM tags WHERE id = ?", (cursor.lastrowid,))
    assert row is not None
    return answer({"tag": tag_json(row, base_url(request))}, 201)


async def get_tag(request: Request) -> JSONResponse:
    """The tag with `subscriber_count`, the number of contacts carrying it."""
    store = state_of(request).store
    with store.lock:
        row = existing_tag(store, request.path_params["id"])
        count = store.reads.count("SELECT 1 FROM contact_tags WHERE tag_id = ?", (row["id"],))
    return answer({"tag": {**tag_json(row, base_url(request)), "subscriber_count": str(count)}})


async def update_tag(request: Request) -> JSONResponse:
    """Change the name, type or description; what is not sent stays."""
    store = state_of(request).store
    data = await wrapped(request, "tag")
    with store.lock:
        row = existing_tag(store, request.path_params["id"])
        name = text_of(data["tag"]) if "tag" in data else row["tag"]
        if not name:
            raise unprocessable("The tag name must not be empty.", "field_missing", "tag")
        kind = text_of(data["tagType"]) if "tagType" in data else row["tag_type"]
        description = text_of(data["description"]) if "description" in data else row["description"]
        store.execute(
            "UPDATE tags SET tag = ?, tag_type = ?, description = ? WHERE id = ?",
            (name, kind or "contact", description or "", row["id"]),
        )
        row = existing_tag(store, str(row["id"]))
    return answer({"tag": tag_json(row, base_url(request))})


async def delete_tag(request: Request) -> JSONResponse:
    """Delete a tag and every contactTag of it."""
    return delete_by_id(request, "tags", "Tag", dependents=(("contact_tags", "tag_id"),))


async def create_contact_tag(request: Request) -> JSONResponse:
    """Tag a contact; tagging twice answers the existing contactTag."""
    store = state_of(request).store
    data = await wrapped(request, "contactTag")
    ids = {}
    for attribute in ("contact", "tag"):
        try:
            ids[attribute] = required_id(data, attribute, "contactTag")
        except ApiError:
            raise tag_error(422, "Missing attribute", attribute=attribute) from None
    with store.lock:
        if store.contact(ids["contact"]) is None:
            raise tag_error(404, "Not Found", "Contact not found")
        if store.one("SELECT 1 FROM tags WHERE id = ?", (ids["tag"],)) is None:
            raise tag_error(404, "Not Found", "Tag not found")
        now = now_iso()
        cursor = store.execute(
            "INSERT OR IGNORE INTO contact_tags (contact_id, tag_id, cdate) VALUES (?, ?, ?)",
            (ids["contact"], ids["tag"], now),
        )
        if cursor.rowcount:  # tagging twice changes nothing
            store.execute(TOUCH_CONTACT, (now, ids["contact"]))
        row = store.one("SELECT * FROM contact_tags WHERE contact_id = ? AND tag_id = ?", (ids["contact"], ids["tag"]))
    assert row is not None
    return answer({"contactTag": contact_tag_json(row, base_url(request))}, 201)


async def list_contact_tags(request: Request) -> JSONResponse:
    """Every tag on every contact, in id order; `filters[contact]` and `filters[tag]` narrow it."""
    params = request.query_params
    filters = where(
        [
            equals("contact_id", int_param(params, "filters[contact]")),
            equals("tag_id", int_param(params, "filters[tag]")),
        ]
    )
    return collection(request, "contactTags", "contact_tags", contact_tag_json, filters)


async def get_contact_tag(request: Request) -> JSONResponse:
    item_id = request.path_params["id"]
    store = state_of(request).store
    row = store.one("SELECT * FROM contact_tags WHERE id = ?", (int(item_id),)) if item_id.isdigit() else None
    if row is None:
        raise not_found("ContactTag", item_id)
    return answer({"contactTag": contact_tag_json(row, base_url(request))})


async def delete_contact_tag(request: Request) -> JSONResponse:
    return delete_by_id(request, "contact_tags", "ContactTag")


routes = [
    api_route("/api/3/tags", list_tags, "GET", TAG_PARAMS),
    api_route("/api/3/tags", create_tag, "POST"),
    api_route("/api/3/tags/{id}", get_tag, "GET"),
    api_route("/api/3/tags/{id}", update_tag, "PUT"),
    api_route("/api/3/tags/{id}", delete_tag, "DELETE"),
    api_route("/api/3/contactTags", list_contact_tags, "GET", CONTACT_TAG_PARAMS),
    api_route("/api/3/contactTags", create_contact_tag, "POST"),
    api_route("/api/3/contactTags/{id}", get_contact_tag, "GET"),
    api_route("/api/3/contactTags/{id}", delete_contact_tag, "DELETE"),
]
