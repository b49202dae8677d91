"""Query parameters: each endpoint names the ones it takes, and any other gets a 400 naming it.

A test double must never silently widen a query: a client that sends a filter the sandbox does not know would
otherwise get the whole collection back and act on the wrong rows. So every /api/3 route is built with
`api_route(..., accepts=...)`, and a request carrying a parameter outside that set is refused before the endpoint
runs. The helpers below turn the documented filters and orders into SQL.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, date, datetime, time
from typing import Any

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ac_pipeline.sandbox.responses import ApiError, bad_request

Endpoint = Callable[[Request], Awaitable[Response]]
Filter = tuple[str, Sequence[Any]]
NO_FILTER: Filter = ("", ())
PAGING = ("limit", "offset")
# The operators of `filters[<attribute>][<operator>]` the description lists for tags (and, by reference, lists).
OPERATORS = ("eq", "neq", "lt", "lte", "gt", "gte", "contains", "starts_with")
DIRECTIONS = {"asc": "ASC", "desc": "DESC"}


def with_operators(name: str) -> tuple[str, ...]:
    """`filters[name]` and every `filters[name][<operator>]`."""
    return (f"filters[{name}]", *(f"filters[{name}][{op}]" for op in OPERATORS))


def unknown_parameters(params: QueryParams, accepted: frozenset[str], operation: str) -> ApiError | None:
    unknown = [name for name in dict.fromkeys(params.keys()) if name not in accepted]
    if not unknown:
        return None
    names = ", ".join(repr(name) for name in unknown)
    allowed = ", ".join(sorted(accepted)) or "none"
    return ApiError(
        400,
        {
            "message": f"Unknown query parameter{'s' if len(unknown) > 1 else ''} {names} for {operation}: the "
            f"sandbox refuses what it does not model rather than ignore it (ignoring a filter widens the answer). "
            f"Accepted: {allowed}.",
            "unknown": unknown,
            "accepted": sorted(accepted),
        },
    )


def api_route(path: str, endpoint: Endpoint, method: str, accepts: Iterable[str] = ()) -> Route:
    """A route whose endpoint runs only if every query parameter is one of `accepts`."""
    accepted = frozenset(accepts)
    operation = f"{method} {path}"

    async def checked(request: Request) -> Response:
        if request.scope["query_string"]:  # the common case, no query at all, costs nothing
            error = unknown_parameters(request.query_params, accepted, operation)
            if error is not None:
                raise error
        return await endpoint(request)

    checked.__name__ = checked.__qualname__ = endpoint.__name__
    checked.__doc__ = endpoint.__doc__
    return Route(path, checked, methods=[method])


def direction(params: QueryParams, name: str, allowed: Iterable[str] = DIRECTIONS) -> str:
    value = params[name]
    if value.lower() not in allowed:
        raise bad_request(f"{name} must be one of {', '.join(allowed)} (any case), got {value!r}.")
    return value.lower()


def order_by(params: QueryParams, columns: dict[str, str], id_column: str = "id") -> str:
    """ORDER BY for the `orders[...]` parameters in the order given (each asc or desc), then the id (ascending
    unless `orders[id]` said otherwise) so pages are stable. `columns` maps an order name to its SQL."""
    terms: list[str] = []
    for key in dict.fromkeys(params.keys()):
        if key.startswith("orders[") and key.endswith("]"):
            name = key[len("orders[") : -1]
            if name in columns:
                terms.append(f"{columns[name]} {DIRECTIONS[direction(params, key)]}")
    if "orders[id]" not in params:
        terms.append(f"{id_column} ASC")
    return ", ".join(terms)


def text_filter(params: QueryParams, name: str, column: str, plain: str = "contains") -> list[Filter]:
    """The conditions of `filters[name]` (matched with `plain`) and `filters[name][<operator>]`: text compared
    ignoring case, as ActiveCampaign's MySQL collation does."""
    found: list[Filter] = []
    for key in (f"filters[{name}]", *(f"filters[{name}][{op}]" for op in OPERATORS)):
        value = params.get(key)
        if value is not None:
            operator = plain if key == f"filters[{name}]" else key.rsplit("[", 1)[1][:-1]
            found.append(compare_text(column, operator, value))
    return found


def compare_text(column: str, operator: str, value: str) -> Filter:
    lowered = f"lower({column})"
    text = value.lower()
    sql = {
        "eq": f"{lowered} = ?",
        "neq": f"{lowered} != ?",
        "lt": f"{lowered} < ?",
        "lte": f"{lowered} <= ?",
        "gt": f"{lowered} > ?",
        "gte": f"{lowered} >= ?",
        "contains": f"instr({lowered}, ?) > 0",
        "starts_with": f"substr({lowered}, 1, {len(text)}) = ?",
    }[operator]
    return sql, [text]


def weight_order(column: str, text: str | None) -> tuple[str, list[str]]:
    """`orders[...]=weight`: exact matches of the filter text first, then those starting with it, then the rest
    (each group in id order). Without a filter text every row weighs the same."""
    if not text:
        return "NULL", []
    lowered = text.lower()
    return (
        f"CASE WHEN lower({column}) = ? THEN 0 WHEN substr(lower({column}), 1, {len(lowered)}) = ? THEN 1 ELSE 2 END",
        [lowered, lowered],
    )


def where(filters: Iterable[Filter]) -> Filter:
    """The conjunction of several filters (empty ones skipped)."""
    parts = [f for f in filters if f[0]]
    if not parts:
        return NO_FILTER
    return " AND ".join(f"({sql})" for sql, _ in parts), [arg for _, args in parts for arg in args]


def moment(params: QueryParams, name: str) -> str | None:
    """A date (`2024-05-01`, midnight local time) or date-time (`2024-05-01T13:50:41-05:00`; local time without
    an offset) parameter as the UTC text SQLite's datetime() gives for a stored date, for comparing with it."""
    value = params.get(name)
    if value is None or value == "":
        return None
    try:
        if len(value) == 10:
            when = datetime.combine(date.fromisoformat(value), time()).astimezone()
        else:
            when = datetime.fromisoformat(value.replace(" ", "T"))
            when = when if when.tzinfo else when.astimezone()
    except ValueError as exc:
        raise bad_request(
            f"{name} must be a date like 2024-05-01 or 2024-05-01T13:50:41-05:00, got {value!r}."
        ) from exc
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def id_list(params: QueryParams, *names: str) -> list[int] | None:
    """Ids from `ids[]=1&ids[]=2` and `ids=1,2` together; None if neither is given."""
    values = [part for name in names for value in params.getlist(name) for part in value.split(",")]
    if not values:
        return None
    ids = []
    for value in values:
        if not value.strip().isdigit():
            raise bad_request(f"{' / '.join(names)} must be contact ids (numbers), got {value!r}.")
        ids.append(int(value))
    return ids
