"""Bulk import's `callback`: once a batch has run, the sandbox makes the request the batch asked for.

The reference documents the `callback` object (`url`, `requestType` GET or POST, `detailed_results`, `params`,
`headers`) and says that with `detailed_results` "true" and POST, "the callback will include the number of
successes and failures in the originating request, as well as an array of error messages for each failed
contact". It does not publish the body. The sandbox sends a form (as a PHP service posting parameters would):
the `params`, then `batchId`, `status` ("completed"), `success` and `failure` (the counts), and `failure_reasons[]`
("email: reason", one per failed contact). GET puts the `params` in the query string and carries no results.
All of this beyond the documented fields is assumed; the push trusts a callback only when it accounts for every
contact, and polls otherwise (ac_pipeline/activecampaign/import_callbacks.py).

Callbacks go out on a thread of their own, one at a time and at most once each, so a slow or unreachable URL never
holds back the imports. A callback that fails is counted and dropped: the real service's retries are not published.
"""

from __future__ import annotations

import logging
import threading
from queue import Empty, Queue
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

log = logging.getLogger("ac_pipeline.sandbox")

INCORRECT = (
    "Field' callback' incorrect format: an object with a url (http or https), requestType GET or POST, and "
    'params and headers as lists of {"key": ..., "value": ...}'
)


def callback_failure(callback: Any) -> str | None:
    """Why a batch's `callback` object cannot be used (the batch is then rejected), or None."""
    if not isinstance(callback, dict):
        return INCORRECT
    url = callback.get("url")
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        return INCORRECT
    if str(callback.get("requestType", "POST")).upper() not in ("GET", "POST"):
        return INCORRECT
    for name in ("params", "headers"):
        pairs = callback.get(name, [])
        if not isinstance(pairs, list) or not all(
            isinstance(p, dict) and isinstance(p.get("key"), str) and isinstance(p.get("value", ""), str | int)
            for p in pairs
        ):
            return INCORRECT
    return None


def _pairs(callback: dict[str, Any], name: str) -> list[tuple[str, str]]:
    return [(str(p["key"]), str(p.get("value", ""))) for p in callback.get(name) or [] if p.get("key")]


def callback_request(callback: dict[str, Any], batch_id: str, count: int, result: dict[str, Any]) -> httpx.Request:
    """The request one applied batch's callback makes."""
    params = _pairs(callback, "params")
    headers = dict(_pairs(callback, "headers"))
    if str(callback.get("requestType", "POST")).upper() == "GET":
        return httpx.Request("GET", callback["url"], params=urlencode(params), headers=headers)
    form = list(params)
    if str(callback.get("detailed_results", "")).lower() == "true":
        failed = result.get("failure") or []
        reasons = result.get("reasons") or {}
        form += [("batchId", batch_id), ("status", "completed")]
        form += [("success", str(count - len(failed))), ("failure", str(len(failed)))]
        form += [("failure_reasons[]", f"{email}: {reasons.get(email, 'not imported')}") for email in failed]
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    return httpx.Request("POST", callback["url"], content=urlencode(form).encode(), headers=headers)


class CallbackSender:
    """Sends the callbacks of applied batches, one at a time, on its own thread."""

    def __init__(self) -> None:
        self._queue: Queue[httpx.Request | None] = Queue()
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.failed = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sandbox-import-callbacks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=15)
            self._thread = None

    def send(self, request: httpx.Request) -> None:
        self._queue.put(request)

    def _run(self) -> None:
        with httpx.Client(timeout=10.0) as client:
            while True:
                try:
                    request = self._queue.get(timeout=1.0)
                except Empty:
                    continue
                if request is None:
                    return
                try:
                    response = client.send(request)
                    response.raise_for_status()
                    self.sent += 1
                except httpx.HTTPError as exc:  # dropped, as a callback nobody answers is
                    self.failed += 1
                    log.warning("import callback to %s failed: %s", request.url.copy_with(query=None), exc)
