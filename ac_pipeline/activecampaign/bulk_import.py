"""Bulk import: queue up to 250 contacts in one request, then poll the batch until ActiveCampaign ran it.

The size limits are checked here, before anything is sent, so that a batch too big fails at once with a
message that says how to fix it. `ActiveCampaignClient.bulk_import`, `import_info` and `wait_for_import`
are these functions on the client's transport.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ac_pipeline.activecampaign.errors import ActiveCampaignError, api_message
from ac_pipeline.activecampaign.ratelimit import BulkKind
from ac_pipeline.activecampaign.transport import Transport, encode_json

__all__ = [
    "MAX_BULK_BODY_BYTES",
    "MAX_BULK_CONTACTS",
    "ImportInfo",
    "import_info",
    "submit",
    "submit_json",
    "wait_for_import",
]

MAX_BULK_CONTACTS = 250
MAX_BULK_BODY_BYTES = 400_000

_PATH = "import/bulk_import"
_IMPORT_DONE = "completed"
_IMPORT_FAILED = frozenset({"failed", "interrupted"})


@dataclass(frozen=True)
class ImportInfo:
    """The state of one bulk-import batch, from `GET import/info`.

    `status` is None while ActiveCampaign still answers `false` (the first second or so after submitting).
    `success` holds the ids of contacts the batch created; `failure` the (lower-cased) emails it refused.
    """

    status: str | None
    success: list[str]
    failure: list[str]
    batch_id: str = ""

    @property
    def done(self) -> bool:
        return self.status == _IMPORT_DONE

    @property
    def failed(self) -> bool:
        """The batch failed or was interrupted: it is safe to submit again."""
        return self.status in _IMPORT_FAILED


def submit(
    transport: Transport,
    contacts: list[dict[str, Any]],
    *,
    exclude_automations: bool,
    callback: dict[str, Any] | None = None,
) -> str:
    """Queue `contacts` (bulk-import shape, snake_case) and return the batch id. `callback` asks ActiveCampaign
    to call a URL when the batch has run (see import_callbacks.py).

    Raises ValueError before sending anything if the batch is empty or too big, and BulkImportRejected when
    ActiveCampaign refuses the whole batch; its `failures` index into `contacts`.
    """
    _check_count(len(contacts))
    payload: dict[str, Any] = {"contacts": contacts, "exclude_automations": exclude_automations}
    if callback is not None:
        payload["callback"] = callback
    return _send(transport, _checked_size(encode_json(payload)), len(contacts))


def submit_json(
    transport: Transport,
    contacts: Sequence[str],
    *,
    exclude_automations: bool,
    callback: dict[str, Any] | None = None,
) -> str:
    """`submit` for contacts already encoded, each a JSON object in the bulk-import shape (the push builds
    them with Polars, a whole batch at a time). The body is the one `submit` sends for the same contacts."""
    _check_count(len(contacts))
    flag = "true" if exclude_automations else "false"
    tail = f',"callback":{encode_json(callback).decode()}' if callback is not None else ""
    body = _checked_size(f'{{"contacts":[{",".join(contacts)}],"exclude_automations":{flag}{tail}}}'.encode())
    return _send(transport, body, len(contacts))


def _send(transport: Transport, body: bytes, count: int) -> str:
    kind: BulkKind = "single" if count == 1 else "multi"
    response = transport.send("POST", _PATH, body=body, bulk=kind)
    answer = transport.parse_body(response, "POST", _PATH)
    batch_id = answer.get("batchId")
    if not batch_id:
        raise ActiveCampaignError(
            f"bulk import answered without a batchId: {transport.redact(api_message(answer))!r}",
            method="POST",
            path=_PATH,
            status_code=response.status_code,
        )
    return str(batch_id)


def import_info(transport: Transport, batch_id: str) -> ImportInfo:
    """Where a bulk-import batch stands (GET import/info)."""
    body = transport.request("GET", "import/info", params={"batchId": batch_id})
    status = body.get("status")
    return ImportInfo(
        status=str(status) if status else None,
        success=[str(contact_id) for contact_id in body.get("success") or []],
        failure=[str(email).lower() for email in body.get("failure") or []],
        batch_id=batch_id,
    )


def wait_for_import(transport: Transport, batch_id: str, *, poll_interval: float, timeout: float) -> ImportInfo:
    """Poll `import_info` until the batch completed, failed or was interrupted."""
    deadline = transport.clock() + timeout
    while True:
        info = import_info(transport, batch_id)
        if info.done or info.failed:
            return info
        if transport.clock() + poll_interval > deadline:
            raise ActiveCampaignError(
                f"import batch {batch_id} is still {info.status or 'not started'} after {timeout:.0f}s:"
                " ActiveCampaign may be busy. Poll it again later with import_info; do not resubmit it.",
                method="GET",
                path="import/info",
            )
        transport.sleep(poll_interval)


def _check_count(count: int) -> None:
    """ValueError unless ActiveCampaign takes this many contacts in one request."""
    if not count:
        raise ValueError("bulk_import needs at least one contact")
    if count > MAX_BULK_CONTACTS:
        raise ValueError(
            f"bulk_import takes at most {MAX_BULK_CONTACTS} contacts per request, got {count}:"
            " split them into several batches"
        )


def _checked_size(body: bytes) -> bytes:
    """The request body, or ValueError if ActiveCampaign would refuse it for its size."""
    if len(body) >= MAX_BULK_BODY_BYTES:
        raise ValueError(
            f"bulk_import body would be {len(body):,} bytes, ActiveCampaign accepts under"
            f" {MAX_BULK_BODY_BYTES:,}: send fewer contacts per request (or fewer fields per contact)"
        )
    return body
