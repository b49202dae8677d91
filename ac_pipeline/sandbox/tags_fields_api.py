"""Endpoints for tags, contactTags, custom fields and field values."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ac_pipeline.sandbox.lengths import FIELD_VALUE_LIMIT, too_long
from ac_pipeline.sandbox.listing import collection, contains, equals
from ac_pipeline.sandbox.responses import (
    ApiError,
    answer,
    base_url,
    field_too_long,
    int_param,
    not_found,
    required_id,
    state_of,
    unprocessable,
    wrapped,
)
from ac_pipeline.sandbox.shapes import contact_json, contact_tag_json, field_json, field_value_json, tag_json
from ac_pipeline.sandbox.store import now_iso
from ac_pipeline.sandbox.values import text_of


def tag_error(status: int, title: str, detail: str = "", attribute: str | None = None) -> ApiError:
    """contactTags answers errors in its own shape: {"errors": [{"status", "title", "detail" | "source"}]}."""
    error: dict[str, object] = {"status": status, "title": title}
    if attribute:
        error["source"] = {"pointer": f"/data/attributes/{attribute}"}
    else:
        error["detail"] = detail
    return ApiError(status, {"errors": [error]})


async def list_tags(request: Request) -> JSONResponse:
    """`search` matches part of the tag name, ignoring case."""
    return collection(request, "tags", "tags", tag_json, contains("tag", request.query_params.get("search")))


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
        store.execute(
            "INSERT OR IGNORE INTO contact_tags (contact_id, tag_id, cdate) VALUES (?, ?, ?)",
            (ids["contact"], ids["tag"], now_iso()),
        )
        row = store.one("SELECT * FROM contact_tags WHERE contact_id = ? AND tag_id = ?", (ids["contact"], ids["tag"]))
    assert row is not None
    return answer({"contactTag": contact_tag_json(row, base_url(request))}, 201)


async def delete_contact_tag(request: Request) -> JSONResponse:
    item_id = request.path_params["id"]
    deleted = (
        item_id.isdigit()
        and state_of(request).store.execute("DELETE FROM contact_tags WHERE id = ?", (int(item_id),)).rowcount > 0
    )
    if not deleted:
        raise not_found("ContactTag", item_id)
    return answer({})


async def list_fields(request: Request) -> JSONResponse:
    return collection(request, "fields", "fields", field_json, extra={"fieldOptions": [], "fieldRels": []})


async def create_field(request: Request) -> JSONResponse:
    """Answers the new field both as `field` (what clients read) and in the collection shape the published
    description declares for this operation."""
    store = state_of(request).store
    data = await wrapped(request, "field")
    title, kind = text_of(data.get("title")), text_of(data.get("type"))
    if not title or not kind:
        missing = "title" if not title else "type"
        raise ApiError(
            422,
            {
                "errors": [
                    {
                        "title": f"The field {missing} was not provided.",
                        "detail": f"field.{missing} is required",
                        "code": "field_missing",
                    }
                ]
            },
        )
    perstag = text_of(data.get("perstag")) or re.sub(r"[^A-Z0-9]+", "_", title.upper()).strip("_")
    cursor = store.execute(
        "INSERT INTO fields (title, type, perstag, cdate) VALUES (?, ?, ?, ?)", (title, kind, perstag, now_iso())
    )
    row = store.one("SELECT * FROM fields WHERE id = ?", (cursor.lastrowid,))
    assert row is not None
    field = field_json(row, base_url(request))
    return answer({"field": field, "fieldOptions": [], "fieldRels": [], "fields": [field], "meta": {"total": "1"}}, 201)


async def list_field_values(request: Request) -> JSONResponse:
    field_id = int_param(request.query_params, "filters[fieldid]")
    return collection(request, "fieldValues", "field_values", field_value_json, equals("field_id", field_id))


async def set_field_value(request: Request) -> JSONResponse:
    """Create or replace one contact's value for one custom field."""
    store = state_of(request).store
    data = await wrapped(request, "fieldValue")
    contact_id = required_id(data, "contact", "fieldValue")
    field_id = required_id(data, "field", "fieldValue")
    value = text_of(data.get("value"))
    if value is None:
        raise unprocessable("Missing attribute", "field_missing", "value", "fieldValue.value is required")
    problem = too_long("value", value, FIELD_VALUE_LIMIT)
    if problem:
        raise field_too_long("value", problem)
    with store.lock:
        contact = store.contact(contact_id)
        if contact is None:
            raise not_found("Subscriber", contact_id)
        if store.one("SELECT 1 FROM fields WHERE id = ?", (field_id,)) is None:
            raise not_found("Field", field_id)
        row = store.set_field_value(contact_id, field_id, value)
    base = base_url(request)
    shown = field_value_json(row, base)
    # POST /fieldValues answers the ids as numbers.
    shown.update(contact=contact_id, field=field_id, owner=contact_id)
    del shown["created_by"], shown["updated_by"]
    return answer({"contacts": [contact_json(contact, base)], "fieldValue": shown})


routes = [
    Route("/api/3/tags", list_tags, methods=["GET"]),
    Route("/api/3/tags", create_tag, methods=["POST"]),
    Route("/api/3/contactTags", create_contact_tag, methods=["POST"]),
    Route("/api/3/contactTags/{id}", delete_contact_tag, methods=["DELETE"]),
    Route("/api/3/fields", list_fields, methods=["GET"]),
    Route("/api/3/fields", create_field, methods=["POST"]),
    Route("/api/3/fieldValues", list_field_values, methods=["GET"]),
    Route("/api/3/fieldValues", set_field_value, methods=["POST"]),
]
