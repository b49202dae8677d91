"""Endpoints for bulk import: submit a batch, summarise batches, and ask about one batch."""

from __future__ import annotations

import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from ac_pipeline.sandbox.bulk import MAX_BODY_BYTES, VALIDATION_MESSAGE, Failure, body_too_big, validation_failures
from ac_pipeline.sandbox.json_text import PARSED_BODY, loads
from ac_pipeline.sandbox.query import api_route
from ac_pipeline.sandbox.responses import answer, state_of
from ac_pipeline.sandbox.state import SandboxState

MULTI_LIMIT_REASON = (
    "Up to 100 imports may be requested per minute.Please batch contacts into larger requests, "
    "or retry this request in a minute."
)
SINGLE_LIMIT_REASON = (
    "Up to 20 single-contact imports may be requested per minute. Please use contact/sync for single "
    "contacts, or retry this request in a minute."
)


def rejected(message: str, failures: list[Failure]) -> JSONResponse:
    return answer({"success": 0, "message": message, "failureReasons": failures}, 400)


async def bulk_import(request: Request) -> JSONResponse:
    """Validate the whole batch (nothing is queued if any contact fails it), then take a per-minute slot."""
    state = state_of(request)
    raw = await request.body()
    if len(raw) >= MAX_BODY_BYTES:
        return rejected(VALIDATION_MESSAGE, body_too_big(len(raw)))
    if PARSED_BODY in request.scope:  # the request checks parsed it already
        payload = request.scope[PARSED_BODY]
    else:
        try:
            payload = loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return rejected(VALIDATION_MESSAGE, [f"The body is not valid JSON ({exc})."])
    # The rest reads and writes the store, whose lock the import worker holds while it applies a batch: on a thread
    # of its own, so the event loop goes on taking other requests meanwhile (the worker's SQLite work runs
    # without the GIL, so the two overlap on a second core).
    return await run_in_threadpool(_queue_import, state, raw, payload)


def _queue_import(state: SandboxState, raw: bytes, payload: Any) -> JSONResponse:
    list_ids = {row[0] for row in state.store.all("SELECT id FROM lists")}
    field_ids = {row[0] for row in state.store.all("SELECT id FROM fields")}
    failures = validation_failures(payload, list_ids, field_ids)
    if failures:
        return rejected(VALIDATION_MESSAGE, failures)
    count = len(payload["contacts"])
    window, reason = (
        (state.single_import_limit, SINGLE_LIMIT_REASON)
        if count == 1
        else (state.multi_import_limit, MULTI_LIMIT_REASON)
    )
    if not window.acquire().accepted:
        return rejected("Rate limit exceeded.", [reason])
    batch_id = state.imports.submit(raw, count, contacts=payload["contacts"], callback=payload.get("callback"))
    return answer({"Success": 1, "queued_contacts": count, "batchId": batch_id, "message": "Contact import queued"})


async def bulk_import_summary(request: Request) -> JSONResponse:
    return answer(state_of(request).imports.summary())


async def import_info(request: Request) -> JSONResponse:
    batch_id = request.query_params.get("batchId")
    if not batch_id:
        return answer({"success": 0, "message": "'batchId' is a required field."}, 400)
    info = state_of(request).imports.info(batch_id)
    if info is None:
        # Undocumented in the real API; the sandbox answers 404 in the same style as the 400.
        message = f"No import batch with batchId {batch_id}; use the batchId that POST import/bulk_import answered."
        return answer({"success": 0, "message": message}, 404)
    return answer({"status": info["status"], "success": info["success"], "failure": info["failure"]})


routes = [
    api_route("/api/3/import/bulk_import", bulk_import, "POST"),
    api_route("/api/3/import/bulk_import", bulk_import_summary, "GET"),
    api_route("/api/3/import/info", import_info, "GET", ("batchId",)),
]
