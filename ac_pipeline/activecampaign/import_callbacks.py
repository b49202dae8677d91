"""Bulk import's `callback`: ActiveCampaign tells us when a batch has run, so the push need not ask.

With `callback` in a bulk import, ActiveCampaign makes a request to a URL of ours once the batch has run; with
`detailed_results` it carries the number of contacts that succeeded and failed (API.md, "Bulk import"). A batch
whose callback says every one of its contacts succeeded is settled without `GET import/info`: that poll was one
request in every two the push sends. A batch with a failure is still read with `import/info`, the only answer that
names the contacts refused.

What makes this safe to rely on:
- A callback is believed only if it names the push (a random token in a header ActiveCampaign sends back, compared
  in constant time) and the batch (our own key, sent as a parameter), and accounts for every contact of the batch:
  status completed (when given), failures 0, successes equal to the batch's size. Anything else (another body shape,
  a count that does not add up) is not trusted: the batch is polled as before. ActiveCampaign does not publish
  the callback's body, so the reader takes JSON or a form, and counts given as numbers, digit strings or lists.
- A callback that never comes costs time, not data: the push polls a batch whose callback is late.
- The listener is one HTTP server per address and process (`listener`), shared by the pushes of that process under
  a token each, and closed when its last push is over, so that the next run (another process) can take the
  port. Pushes to one account take turns (the `activecampaign` pool), so a fixed port is free when a push starts;
  if it is not, the push polls, and says why.

The token is a secret of the push (anyone who knows it could tell the push a batch succeeded): it is never logged.
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["BATCH_PARAM", "TOKEN_HEADER", "CallbackListener", "ImportCallbacks", "ImportReport", "listen"]

TOKEN_HEADER = "X-AC-Pipeline-Token"
BATCH_PARAM = "ac_pipeline_batch"
# A callback names counts and a few messages; anything much bigger is not one.
MAX_BODY_BYTES = 1_000_000
# How often the listener's loop looks whether it is asked to close (a select() with this timeout when idle).
SHUTDOWN_POLL = 0.02


@dataclass(frozen=True)
class ImportReport:
    """What one callback said about one batch. A count is None when the body did not give it in a form we read."""

    batch_key: str
    status: str | None
    succeeded: int | None
    failed: int | None

    def vouches_for(self, size: int) -> bool:
        """Whether this callback alone shows that all `size` contacts of the batch were imported."""
        return self.status in (None, "completed") and self.failed == 0 and self.succeeded == size


def _count(value: Any) -> int | None:
    """A count as ActiveCampaign might send it: a number, a string of digits, or a list of the items."""
    if isinstance(value, list):
        return len(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= 0 else None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _text(value: Any) -> str | None:
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None


def _form(text: str) -> dict[str, Any]:
    """A form's fields: `a=1` as "1", and `a[]=x&a[]=y` (or `a` given twice) as a list."""
    fields: dict[str, Any] = {}
    for key, values in parse_qs(text, keep_blank_values=True).items():
        if key.endswith("[]"):
            fields[key[:-2]] = values
        else:
            fields[key] = values[0] if len(values) == 1 else values
    return fields


def read_report(body: bytes, content_type: str, query: str) -> ImportReport | None:
    """The report in a callback's body (JSON or a form; parameters may also be in the query), or None if it does not
    name one of our batches."""
    fields = _form(query)
    if body:
        try:
            if "json" in content_type or body.lstrip()[:1] == b"{":
                parsed = json.loads(body)
                if not isinstance(parsed, dict):
                    return None
                fields.update(parsed)
            else:
                fields.update(_form(body.decode()))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None
    params = fields.get("params")  # parameters nested rather than beside the results
    if isinstance(params, dict):
        fields = {**params, **fields}
    elif isinstance(params, list):
        pairs = {p.get("key"): p.get("value") for p in params if isinstance(p, dict)}
        fields = {**{k: v for k, v in pairs.items() if isinstance(k, str)}, **fields}
    key = _text(fields.get(BATCH_PARAM))
    if not key:
        return None
    status = _text(fields.get("status"))
    return ImportReport(
        key, status.lower() if status else None, _count(fields.get("success")), _count(fields.get("failure"))
    )


Handler = Callable[[ImportReport], None]


class CallbackListener:
    """An HTTP server that takes import callbacks and hands each to the push whose token it carries."""

    def __init__(self, host: str, port: int):
        self.address = (host, port)
        self._handlers: dict[str, Handler] = {}
        self._lock = threading.Lock()
        self.refused = 0  # callbacks without a known token (counted, never logged with what they carried)
        self._server = ThreadingHTTPServer((host, port), _handler_class(self))
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        # shutdown() waits for serve_forever to look at its flag, every poll_interval: at the default 0.5 s the
        # end of every push waited up to half a second for its listener to close (issue 12, item 2).
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": SHUTDOWN_POLL},
            name="import-callbacks",
            daemon=True,
        )
        self._thread.start()

    def register(self, handler: Handler) -> str:
        """A new token; callbacks that carry it go to `handler` (on the listener's thread: keep it short)."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._handlers[token] = handler
        return token

    def unregister(self, token: str) -> None:
        """The push of `token` is over; the last one out closes the listener."""
        with _listeners_lock:
            with self._lock:
                self._handlers.pop(token, None)
                idle = not self._handlers
            if idle and _listeners.get(self.address) is self:
                del _listeners[self.address]
                self.close()

    def deliver(self, token: str | None, report: ImportReport) -> bool:
        with self._lock:
            handler = next((h for t, h in self._handlers.items() if token and hmac.compare_digest(t, token)), None)
        if handler is None:
            self.refused += 1
            return False
        handler(report)
        return True

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler_class(owner: CallbackListener) -> type[BaseHTTPRequestHandler]:
    class CallbackHandler(BaseHTTPRequestHandler):
        timeout = 30  # seconds a connection may stay silent: a caller that stalls does not hold a thread for ever

        def _take(self, body: bytes) -> None:
            parts = urlsplit(self.path)
            report = read_report(body, self.headers.get("Content-Type", ""), parts.query)
            token = self.headers.get(TOKEN_HEADER)
            if report is None:
                self._answer(400, b"not an ac-pipeline import callback")
            elif not owner.deliver(token, report):
                self._answer(403, b"unknown token")
            else:
                self._answer(200, b"ok")

        def do_POST(self) -> None:
            size = int(self.headers.get("Content-Length") or 0)
            if size > MAX_BODY_BYTES:
                self._answer(413, b"too big")
                return
            self._take(self.rfile.read(size))

        def do_GET(self) -> None:
            self._take(b"")

        def _answer(self, status: int, text: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the request line carries nothing secret, but a log line per batch is noise

    return CallbackHandler


_listeners: dict[tuple[str, int], CallbackListener] = {}
_listeners_lock = threading.Lock()


def listen(host: str, port: int, handler: Handler) -> tuple[CallbackListener, str]:
    """This process's listener on (host, port), started if none is, and a token whose callbacks go to `handler`.
    The listener closes when its last token is unregistered. Port 0 picks a free port. Raises OSError if the
    address cannot be bound."""
    with _listeners_lock:
        found = _listeners.get((host, port))
        if found is None:
            found = _listeners[(host, port)] = CallbackListener(host, port)
        return found, found.register(handler)


@dataclass(frozen=True)
class ImportCallbacks:
    """Where ActiveCampaign is to send a push's import callbacks: `public_url` reaches `listen_host:listen_port`
    (for a built-in sandbox both are loopback; for a real account, an address ActiveCampaign can reach, in front of
    this process). `public_url` None means the listener's own loopback address."""

    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    public_url: str | None = None

    def start(self, handler: Handler) -> tuple[CallbackListener, str, str]:
        """Take callbacks for one push (they go to `handler`): the listener, the URL to give ActiveCampaign and
        the push's token. Unregister the token when the push is over."""
        found, token = listen(self.listen_host, self.listen_port, handler)
        url = self.public_url or f"http://127.0.0.1:{found.port}/ac-pipeline/import-callback"
        return found, url, token


def callback_body(url: str, token: str, batch_key: str) -> dict[str, Any]:
    """The `callback` object of one bulk import."""
    return {
        "url": url,
        "requestType": "POST",
        "detailed_results": "true",
        "params": [{"key": BATCH_PARAM, "value": batch_key}],
        "headers": [{"key": TOKEN_HEADER, "value": token}],
    }
