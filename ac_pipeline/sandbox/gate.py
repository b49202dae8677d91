"""What every /api/3 request passes before its endpoint: the key, the rate limit, then injected faults.

In that order. A 403 does not count against the rate limit (the budget is for the account's own integrations,
and a wrong key would otherwise starve them); a 429 takes no slot. Faults are decided after both, before the
endpoint runs, so a fault answer (500, 503, 429, drop) changes nothing; a slow fault delays the endpoint, which
then runs normally. Every /api/3 response carries RateLimit-Limit and RateLimit-Remaining, and every answer
(API and admin) a Date stamped as it starts.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from email.utils import formatdate
from typing import Any

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ac_pipeline.sandbox.faults import Fault
from ac_pipeline.sandbox.ratelimit import format_retry_after
from ac_pipeline.sandbox.requestlog import DROPPED
from ac_pipeline.sandbox.state import REQUESTS_PER_SECOND, SandboxState

API_PREFIX = "/api/3"
FORBIDDEN = "The Api-Token header is missing or wrong: send the account's API key in the Api-Token header."
THROTTLED = (
    "Too many requests: the account allows 5 requests per second across all its integrations. "
    "Wait for the Retry-After seconds, then retry."
)
FAULT_MESSAGES = {
    "500": "Internal Server Error (a sandbox fault: nothing was changed; retry).",
    "503": "Service Unavailable (a sandbox fault: nothing was changed; retry).",
}


class ApiGate:
    """ASGI middleware in front of the Starlette app; the outermost layer, so it sees uvicorn's own `send`."""

    def __init__(self, app: ASGIApp, state: SandboxState, routes: list[BaseRoute]) -> None:
        self.app = app
        self.state = state
        self.routes = routes  # the /api/3 routes, to name a request by its path template in the log

    async def __call__(self, scope: Scope, receive: Receive, raw_send: Send) -> None:
        send = dated(raw_send) if scope["type"] == "http" else raw_send
        path = scope["path"] if scope["type"] == "http" else ""
        if not (path == API_PREFIX or path.startswith(API_PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        state = self.state
        answered: list[int] = []
        limit_headers: list[tuple[bytes, bytes]] = []

        async def send_with_limit_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                answered.append(message["status"])
                message = {**message, "headers": [*message.get("headers", []), *limit_headers]}
            await send(message)

        def set_remaining(remaining: int) -> None:
            limit_headers[:] = [
                (b"ratelimit-limit", str(REQUESTS_PER_SECOND).encode()),
                (b"ratelimit-remaining", str(remaining).encode()),
            ]

        try:
            if not self.authorized(scope):
                set_remaining(state.api_limit.remaining())
                await send_json(send_with_limit_headers, 403, {"message": FORBIDDEN})
                return
            decision = state.api_limit.acquire()
            set_remaining(decision.remaining)
            if not decision.accepted:
                await self.throttle(send_with_limit_headers, decision.retry_after)
                return
            fault = state.faults.decide(path)
            if fault is None:
                await self.app(scope, receive, send_with_limit_headers)
            else:
                await self.inject(fault, scope, receive, raw_send, send_with_limit_headers)
        finally:
            state.requests.record(self.template(scope), answered[0] if answered else DROPPED)

    def authorized(self, scope: Scope) -> bool:
        expected = self.state.config.api_key.encode()
        for name, value in scope["headers"]:
            if name == b"api-token":
                return hmac.compare_digest(value, expected)
        return False

    async def throttle(self, send: Send, retry_after: float) -> None:
        header = format_retry_after(retry_after, self.state.config.speed)
        await send_json(send, 429, {"message": THROTTLED}, ((b"retry-after", header.encode()),))

    async def inject(self, fault: Fault, scope: Scope, receive: Receive, raw_send: Send, send: Send) -> None:
        if fault.kind == "slow":
            await asyncio.sleep(self.state.config.scaled(fault.seconds))
            await self.app(scope, receive, send)
        elif fault.kind == "drop":
            await drop_connection(raw_send)
        elif fault.kind == "429":
            # A burst from another integration of the account: the window is full for a whole (scaled) second.
            await self.throttle(send, self.state.api_limit.window)
        else:
            await send_json(send, int(fault.kind), {"message": FAULT_MESSAGES[fault.kind]})

    def template(self, scope: Scope) -> str:
        """ "GET /api/3/contacts/{id}" for /api/3/contacts/12; unknown paths share one name."""
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return f"{scope['method']} {getattr(route, 'path', API_PREFIX)}"
        return f"{scope['method']} {API_PREFIX}/<unknown>"


def dated(send: Send) -> Send:
    """`send` that stamps each answer's Date with the clock as the answer starts, to the second.

    Readers take Date as the server's clock for their next `filters[updated_after]`. uvicorn's own Date (turned
    off in server.py) is refreshed once a second, so it is often a second behind: that would hide a reader's
    off-by-one-second mistake that the real service shows."""

    async def send_dated(message: Message) -> None:
        if message["type"] == "http.response.start":
            date = formatdate(time.time(), usegmt=True).encode()
            message = {**message, "headers": [(b"date", date), *message.get("headers", [])]}
        await send(message)

    return send_dated


async def send_json(
    send: Send, status: int, body: dict[str, Any], headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    content = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(content)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": content})


async def drop_connection(send: Send) -> None:
    """Close the connection without any HTTP answer, as a crashed proxy would.

    ASGI has no message for this, so reach uvicorn's transport through its `send` (a bound method of the
    request cycle). After the abort uvicorn sees the disconnect and sends nothing, not even its default 500.
    """
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise RuntimeError("The drop fault needs the sandbox to run under uvicorn (it aborts uvicorn's transport).")
    transport.abort()
    # Let the event loop deliver connection_lost, which marks the cycle disconnected, before we return.
    for _ in range(3):
        await asyncio.sleep(0)
