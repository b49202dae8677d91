"""A loopback webhook that records the JSON it receives, and can be told to answer 500 for a while."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class Receiver:
    url: str
    bodies: list[dict] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)
    # How many of the next requests to answer with a 500 (recorded in `refused`, not in `bodies`).
    failing: int = 0
    refused: int = 0

    def take(self) -> list[dict]:
        """The bodies received since the last take."""
        taken, self.bodies[:] = list(self.bodies), []
        return taken


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    host, port = server.server_address[:2]
    state = Receiver(url=f"http://{host}:{port}/hooks/T000/secret-token")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            text = self.rfile.read(int(self.headers["content-length"])).decode()
            state.raw.append(text)
            if state.failing:
                state.failing -= 1
                state.refused += 1
                self.send_response(500)
            else:
                state.bodies.append(json.loads(text))
                self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server.RequestHandlerClass = Handler
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
