"""The sandbox as one ASGI application: the /api/3 endpoints behind the gate, and the admin surface."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from ac_pipeline.sandbox import (
    admin,
    admin_edits,
    contacts_api,
    fields_api,
    groups_api,
    imports_api,
    lists_api,
    memberships_api,
    root_api,
    tags_api,
)
from ac_pipeline.sandbox.gate import ApiGate
from ac_pipeline.sandbox.request_checks import RequestChecks
from ac_pipeline.sandbox.responses import ApiError
from ac_pipeline.sandbox.state import SandboxState

ALL_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH"]


async def unknown_api_path(request: Request) -> Response:
    raise ApiError(404, {"message": f"No such endpoint: {request.method} {request.url.path}."})


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body, status_code=exc.status)


def build_app(state: SandboxState) -> ASGIApp:
    api_routes: list[BaseRoute] = [
        *contacts_api.routes,
        *memberships_api.routes,
        *lists_api.routes,
        *groups_api.routes,
        *tags_api.routes,
        *fields_api.routes,
        *imports_api.routes,
        *root_api.routes,
    ]
    # Unknown paths, and known paths with another method, answer 404 {"message"} like the real API.
    fallback = [
        Route("/api/3", unknown_api_path, methods=ALL_METHODS),
        Route("/api/3/{rest:path}", unknown_api_path, methods=ALL_METHODS),
    ]
    app = Starlette(
        routes=[*api_routes, *fallback, *admin_edits.routes, *admin.routes], exception_handlers={ApiError: api_error}
    )
    app.state.sandbox = state
    return ApiGate(RequestChecks(app, api_routes), state, api_routes)
