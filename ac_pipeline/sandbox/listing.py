"""Collection answers: a page of a table in id order, as the API lists one: {plural: [...], "meta": {...}}."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from ac_pipeline.sandbox.responses import answer, base_url, not_found, page_params, state_of

Filter = tuple[str, Sequence[Any]]
NO_FILTER: Filter = ("", ())


def contains(column: str, text: str | None) -> Filter:
    """Rows whose `column` contains `text`, ignoring case (how `filters[name]` and `search` match); no text,
    no filter."""
    return (f"instr(lower({column}), ?) > 0", [text.lower()]) if text else NO_FILTER


def equals(column: str, value: object | None) -> Filter:
    """Rows whose `column` equals `value`; None, no filter."""
    return (f"{column} = ?", [value]) if value is not None else NO_FILTER


def collection(
    request: Request,
    plural: str,
    table: str,
    to_json: Callable[[Any, str], dict[str, Any]],
    where: Filter = NO_FILTER,
    extra: dict[str, Any] | None = None,
    order: Filter = ("id", ()),
) -> JSONResponse:
    """A page (`limit`, `offset`) of `table` with `meta.total`, in id order unless `order` (an ORDER BY and its
    arguments) says otherwise; `extra` adds the empty side-loads some collections answer with."""
    limit, offset = page_params(request.query_params)
    condition, args = where
    sql = f"SELECT * FROM {table}" + (f" WHERE {condition}" if condition else "")
    order_sql, order_args = order
    rows, total = state_of(request).store.page(f"{sql} ORDER BY {order_sql}", [*args, *order_args], limit, offset)
    base = base_url(request)
    return answer({**(extra or {}), plural: [to_json(row, base) for row in rows], "meta": {"total": str(total)}})


def delete_by_id(
    request: Request, table: str, entity: str, *, status: int = 404, dependents: Sequence[tuple[str, str]] = ()
) -> JSONResponse:
    """DELETE /<collection>/{id}: the row and the rows of `dependents` that refer to it, in one transaction;
    for a missing id the real "No Result found" answer with the status the spec declares (`status`)."""
    item_id = request.path_params["id"]
    if not (item_id.isdigit() and state_of(request).store.delete_with(table, int(item_id), dependents)):
        raise not_found(entity, item_id, status)
    return answer({})
