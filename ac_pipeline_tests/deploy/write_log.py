"""When each write reached the sandbox, and which list it was for, so that a test can tell whether two pushes
overlapped.

The sandbox's request log (`GET /_sandbox/requests`, `SandboxAdmin.requests()`) counts requests by path and
status: enough to count bulk imports, not to order them or tell one push's from another's. This wraps the
sandbox's ASGI app for one test (through `ac_pipeline.sandbox.server.build_app`, which `SandboxServer.start`
calls) and keeps, for every write under /api/3, when it came in, when it was answered and the lists its body
names.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ac_pipeline.sandbox import server as sandbox_server
from ac_pipeline.sandbox.state import SandboxState


@dataclass(frozen=True)
class Write:
    started: float  # time.monotonic() of this process
    ended: float
    path: str
    status: int | None  # None: closed without an answer
    lists: frozenset[str]
    contacts: int  # in a bulk import; 0 otherwise


class WriteLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._writes: list[Write] = []

    @property
    def writes(self) -> list[Write]:
        with self._lock:
            return sorted(self._writes, key=lambda write: write.started)

    def wrap(self, app: ASGIApp) -> ASGIApp:
        async def logged(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http" or scope["method"] == "GET" or not scope["path"].startswith("/api/3/"):
                await app(scope, receive, send)
                return
            started, body, answered = time.monotonic(), bytearray(), []

            async def tapped_receive() -> Message:
                message = await receive()
                if message["type"] == "http.request":
                    body.extend(message.get("body", b""))
                return message

            async def tapped_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    answered.append(message["status"])
                await send(message)

            try:
                await app(scope, tapped_receive, tapped_send)
            finally:
                lists, contacts = _lists_and_contacts(bytes(body))
                write = Write(
                    started, time.monotonic(), scope["path"], answered[0] if answered else None, lists, contacts
                )
                with self._lock:
                    self._writes.append(write)

        return logged

    def spans(self) -> dict[str, tuple[float, float]]:
        """Per list id: from the first write for it coming in to the last one answered."""
        spans: dict[str, tuple[float, float]] = {}
        for write in self.writes:
            for list_id in write.lists:
                first, last = spans.get(list_id, (write.started, write.ended))
                spans[list_id] = (min(first, write.started), max(last, write.ended))
        return spans


def _lists_and_contacts(body: bytes) -> tuple[frozenset[str], int]:
    """The lists a write names: a bulk import's `subscribe`/`unsubscribe`, a contactList's `list`."""
    try:
        payload: Any = json.loads(body or b"null")
    except ValueError:
        return frozenset(), 0
    if not isinstance(payload, dict):
        return frozenset(), 0
    lists: set[str] = set()
    contacts = payload.get("contacts") if isinstance(payload.get("contacts"), list) else []
    for contact in contacts:
        for key in ("subscribe", "unsubscribe"):
            lists.update(str(entry["listid"]) for entry in contact.get(key) or [] if "listid" in entry)
    membership = payload.get("contactList")
    if isinstance(membership, dict) and "list" in membership:
        lists.add(str(membership["list"]))
    return frozenset(lists), len(contacts)


def record_writes(monkeypatch: pytest.MonkeyPatch) -> WriteLog:
    """Log the writes of every sandbox started from now on in this test."""
    log = WriteLog()
    build_app: Callable[[SandboxState], ASGIApp] = sandbox_server.build_app
    monkeypatch.setattr(sandbox_server, "build_app", lambda state: log.wrap(build_app(state)))
    return log
