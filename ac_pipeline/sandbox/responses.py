"""Request parsing and error answers shared by the API endpoints, in ActiveCampaign's error shapes."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse

from ac_pipeline.sandbox.json_text import PARSED_BODY, loads
from ac_pipeline.sandbox.lengths import TOO_LONG_CODE
from ac_pipeline.sandbox.values import id_of

if TYPE_CHECKING:
    from ac_pipeline.sandbox.state import SandboxState

MAX_PAGE = 100
DEFAULT_PAGE = 20


class ApiError(Exception):
    """An answer other than success: raised anywhere in a handler, turned into `body` with `status`."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


def answer(body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status)


def not_found(entity: str, item_id: object, status: int = 404) -> ApiError:
    """The real body: {"message": "No Result found for Subscriber with id 1"}; 404 unless the spec declares
    another status for the operation (some answer 400 or 403 for a missing id)."""
    return ApiError(status, {"message": f"No Result found for {entity} with id {item_id}"})


def unprocessable(title: str, code: str, attribute: str, detail: str = "") -> ApiError:
    """The real 422 body: one error naming the attribute at fault."""
    error = {"title": title, "detail": detail, "code": code, "source": {"pointer": f"/data/attributes/{attribute}"}}
    return ApiError(422, {"errors": [error]})


def bad_request(message: str) -> ApiError:
    # The real core endpoints answer 400 with {}; the sandbox adds a message saying what to fix.
    return ApiError(400, {"message": message})


async def json_body(request: Request) -> Any:
    if PARSED_BODY in request.scope:  # the request checks parsed it already
        return request.scope[PARSED_BODY]
    raw = await request.body()
    try:
        return loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad_request(f"The request body is not valid JSON ({exc}); send a JSON object.") from exc


async def wrapped(request: Request, name: str) -> dict[str, Any]:
    """The object inside the singular wrapper of a request body, e.g. {"contact": {...}} -> {...}."""
    body = await json_body(request)
    inner = body.get(name) if isinstance(body, dict) else None
    if not isinstance(inner, dict):
        raise bad_request(f'The request body must be a JSON object like {{"{name}": {{...}}}}.')
    return inner


def int_param(params: QueryParams, name: str) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise bad_request(f"Query parameter {name!r} must be an integer, got {value!r}.") from exc


def page_params(params: QueryParams) -> tuple[int, int]:
    """`limit` (default 20, at most 100) and zero-based `offset`."""
    limit = int_param(params, "limit") or DEFAULT_PAGE
    offset = int_param(params, "offset") or 0
    return max(1, min(limit, MAX_PAGE)), max(0, offset)


def base_url(request: Request) -> str:
    """The account API URL as the client used it, for the `links` of every resource."""
    return str(request.base_url).rstrip("/")


def state_of(request: Request) -> SandboxState:
    """The sandbox account this request is served by."""
    state: SandboxState = request.app.state.sandbox
    return state


def required_id(data: dict[str, Any], attribute: str, wrapper: str) -> int:
    """An id attribute of a request body, or the real 422 naming it."""
    value = id_of(data.get(attribute))
    if value is None:
        raise unprocessable(
            "Missing attribute",
            "field_missing",
            attribute,
            f"{wrapper}.{attribute} is required and must be an id (a number)",
        )
    return value


def field_too_long(attribute: str, problem: str) -> ApiError:
    """The 422 for a value longer than ActiveCampaign keeps; `problem` names the field and the limit."""
    return unprocessable(f"The {attribute} is too long", TOO_LONG_CODE, attribute, problem)
