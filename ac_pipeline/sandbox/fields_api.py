"""Endpoints for custom fields and their values (fieldValues).

A missing id answers the error status the published description declares for the operation (GET fields/{id}
400, PUT fields/{id} 403, DELETE fields/{id} 404, fieldValues/{id} 403 on GET and DELETE, 400 on PUT), with the
real message `No Result found for Field with id N`.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from ac_pipeline.sandbox.lengths import FIELD_VALUE_LIMIT, too_long
from ac_pipeline.sandbox.listing import collection, delete_by_id, equals
from ac_pipeline.sandbox.query import PAGING, api_route, where
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
from ac_pipeline.sandbox.shapes import contact_json, field_json, field_value_json
from ac_pipeline.sandbox.store import Row, Store, now_iso
from ac_pipeline.sandbox.values import text_of

FIELD_PARAMS = ("filters[perstag]", *PAGING)
FIELD_VALUE_PARAMS = ("filters[fieldid]", "filters[val]", *PAGING)
# What PUT /fields/{id} changes; the other attributes of the description are accepted and not kept.
FIELD_COLUMNS = ("title", "type", "perstag")


def row_by_id(store: Store, table: str, item_id: str) -> Row | None:
    return store.one(f"SELECT * FROM {table} WHERE id = ?", (int(item_id),)) if item_id.isdigit() else None


def perstag_of(title: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", title.upper()).strip("_")


async def list_fields(request: Request) -> JSONResponse:
    """`filters[perstag]`: the field with that personalisation tag (any case)."""
    perstag = request.query_params.get("filters[perstag]")
    condition = ("upper(perstag) = ?", [perstag.upper()]) if perstag is not None else ("", [])
    return collection(request, "fields", "fields", field_json, condition, extra={"fieldOptions": [], "fieldRels": []})


async def create_field(request: Request) -> JSONResponse:
    """Answers the new field both as `field` (what clients read) and in the collection shape the published
    description declares for this operation."""
    store = state_of(request).store
    data = await wrapped(request, "field")
    title, kind = text_of(data.get("title")), text_of(data.get("type"))
    if not title or not kind:
        missing_name = "title" if not title else "type"
        error = {
            "title": f"The field {missing_name} was not provided.",
            "detail": f"field.{missing_name} is required",
            "code": "field_missing",
        }
        raise ApiError(422, {"errors": [error]})
    perstag = text_of(data.get("perstag")) or perstag_of(title)
    cursor = store.execute(
        "INSERT INTO fields (title, type, perstag, cdate) VALUES (?, ?, ?, ?)", (title, kind, perstag, now_iso())
    )
    row = store.one("SELECT * FROM fields WHERE id = ?", (cursor.lastrowid,))
    assert row is not None
    field = field_json(row, base_url(request))
    return answer({"field": field, "fieldOptions": [], "fieldRels": [], "fields": [field], "meta": {"total": "1"}}, 201)


def field_rel(row: Row) -> dict[str, Any]:
    """The field's one relation: relid 0, every list (the sandbox does not tie fields to lists)."""
    return {
        "field": str(row["id"]),
        "relid": "0",
        "dorder": "0",
        "cdate": row["cdate"],
        "links": [],
        "id": str(row["id"]),
    }


async def get_field(request: Request) -> JSONResponse:
    row = row_by_id(state_of(request).store, "fields", request.path_params["id"])
    if row is None:
        raise not_found("Field", request.path_params["id"], 400)
    field = {**field_json(row, base_url(request)), "descript": "", "defval": "", "relations": [str(row["id"])]}
    return answer({"fieldOptions": [], "fieldRels": [field_rel(row)], "field": field})


async def update_field(request: Request) -> JSONResponse:
    """Change the title, type or personalisation tag; answers the field with its flags as numbers."""
    store = state_of(request).store
    data = await wrapped(request, "field")
    with store.lock:
        row = row_by_id(store, "fields", request.path_params["id"])
        if row is None:
            raise not_found("Field", request.path_params["id"], 403)
        values = {column: text_of(data[column]) or row[column] for column in FIELD_COLUMNS if column in data}
        if values:
            assignments = ", ".join(f"{column} = ?" for column in values)
            store.execute(f"UPDATE fields SET {assignments} WHERE id = ?", (*values.values(), row["id"]))
        row = row_by_id(store, "fields", str(row["id"]))
    assert row is not None
    shown = field_json(row, base_url(request))
    for name in ("isrequired", "show_in_list", "rows", "cols", "visible", "ordernum"):
        shown[name] = int(shown[name])
    for name in ("options", "relations"):
        del shown[name]
    return answer({"field": {**shown, "descript": "", "defval": ""}})


async def delete_field(request: Request) -> JSONResponse:
    """Delete a field and every contact's value for it."""
    return delete_by_id(request, "fields", "Field", dependents=(("field_values", "field_id"),))


async def list_field_values(request: Request) -> JSONResponse:
    """`filters[fieldid]`: values of one field; `filters[val]`: values equal to the text."""
    params = request.query_params
    filters = where(
        [equals("field_id", int_param(params, "filters[fieldid]")), equals("value", params.get("filters[val]"))]
    )
    return collection(request, "fieldValues", "field_values", field_value_json, filters)


def checked_value(data: dict[str, Any]) -> str:
    value = text_of(data.get("value"))
    if value is None:
        raise unprocessable("Missing attribute", "field_missing", "value", "fieldValue.value is required")
    problem = too_long("value", value, FIELD_VALUE_LIMIT)
    if problem:
        raise field_too_long("value", problem)
    return value


def value_answer(request: Request, contact: Row, row: Row) -> JSONResponse:
    base = base_url(request)
    shown = field_value_json(row, base)
    # POST and PUT /fieldValues answer the ids as numbers.
    shown.update(contact=row["contact_id"], field=row["field_id"], owner=row["contact_id"])
    del shown["created_by"], shown["updated_by"]
    return answer({"contacts": [contact_json(contact, base)], "fieldValue": shown})


async def value_request(request: Request) -> tuple[int, int, str]:
    """The contact id, field id and checked value a POST or PUT /fieldValues body carries."""
    data = await wrapped(request, "fieldValue")
    return required_id(data, "contact", "fieldValue"), required_id(data, "field", "fieldValue"), checked_value(data)


async def set_field_value(request: Request) -> JSONResponse:
    """Create or replace one contact's value for one custom field."""
    store = state_of(request).store
    contact_id, field_id, value = await value_request(request)
    with store.lock:
        contact = store.contact(contact_id)
        if contact is None:
            raise not_found("Subscriber", contact_id)
        if store.one("SELECT 1 FROM fields WHERE id = ?", (field_id,)) is None:
            raise not_found("Field", field_id)
        row = store.set_field_value(contact_id, field_id, value)
    return value_answer(request, contact, row)


async def get_field_value(request: Request) -> JSONResponse:
    row = row_by_id(state_of(request).store, "field_values", request.path_params["id"])
    if row is None:
        raise not_found("FieldValue", request.path_params["id"], 403)
    return answer({"fieldValue": field_value_json(row, base_url(request))})


async def update_field_value(request: Request) -> JSONResponse:
    """Replace the value of this record; `contact` and `field` (required) must be the record's own."""
    store = state_of(request).store
    contact_id, field_id, value = await value_request(request)
    with store.lock:
        row = row_by_id(store, "field_values", request.path_params["id"])
        if row is None:
            raise not_found("FieldValue", request.path_params["id"], 400)
        if (row["contact_id"], row["field_id"]) != (contact_id, field_id):
            raise ApiError(
                400,
                {
                    "message": f"fieldValue {row['id']} is contact {row['contact_id']}'s value for field "
                    f"{row['field_id']}; send those as contact and field (or POST /fieldValues for another pair)."
                },
            )
        row = store.set_field_value(contact_id, field_id, value)
        contact = store.contact(contact_id)
    assert contact is not None
    return value_answer(request, contact, row)


async def delete_field_value(request: Request) -> JSONResponse:
    return delete_by_id(request, "field_values", "FieldValue", status=403)


routes = [
    api_route("/api/3/fields", list_fields, "GET", FIELD_PARAMS),
    api_route("/api/3/fields", create_field, "POST"),
    api_route("/api/3/fields/{id}", get_field, "GET"),
    api_route("/api/3/fields/{id}", update_field, "PUT"),
    api_route("/api/3/fields/{id}", delete_field, "DELETE"),
    api_route("/api/3/fieldValues", list_field_values, "GET", FIELD_VALUE_PARAMS),
    api_route("/api/3/fieldValues", set_field_value, "POST"),
    api_route("/api/3/fieldValues/{id}", get_field_value, "GET"),
    api_route("/api/3/fieldValues/{id}", update_field_value, "PUT"),
    api_route("/api/3/fieldValues/{id}", delete_field_value, "DELETE"),
]
