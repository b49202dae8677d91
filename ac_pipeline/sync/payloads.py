"""Contacts in the shapes ActiveCampaign takes, and bulk-import batches within its limits."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ac_pipeline.activecampaign.client import MAX_BULK_BODY_BYTES, MAX_BULK_CONTACTS
from ac_pipeline.audiences.members import field_column

# Room for the envelope around the contacts ({"contacts": [...], "exclude_automations": true}).
_ENVELOPE_BYTES = 50


@dataclass(frozen=True)
class ContactShape:
    """What an audience sends for each contact: its list, mapped standard fields, custom field ids, tags."""

    list_id: str
    standard_fields: tuple[str, ...]
    # custom field title (as in audiences.yaml) -> ActiveCampaign field id
    field_ids: dict[str, str]
    tags: tuple[str, ...]


@dataclass
class Batch:
    """Up to 250 contacts sent in one bulk-import request, with the change rows they came from."""

    contacts: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    batch_id: str | None = None
    attempts: int = 0
    submitted_at: float = 0.0
    next_poll_at: float = 0.0
    polls: int = 0


def _text(value: Any) -> str:
    # A field that became empty must be cleared in ActiveCampaign, not left as it was.
    return "" if value is None else str(value)


def bulk_contact(row: dict[str, Any], shape: ContactShape) -> dict[str, Any]:
    """One contact of a bulk import (snake_case, unlike /contacts). Only mapped fields are sent, so
    fields the audience does not own are left as they are in ActiveCampaign."""
    if row["op"] == "remove":
        return {"email": row["email"], "unsubscribe": [{"listid": shape.list_id}]}
    contact: dict[str, Any] = {"email": row["email"]}
    for name in shape.standard_fields:
        contact[name] = _text(row.get(name))
    if shape.field_ids:
        contact["fields"] = [
            {"id": fid, "value": _text(row.get(field_column(title)))} for title, fid in shape.field_ids.items()
        ]
    if shape.tags:
        contact["tags"] = list(shape.tags)
    # Bulk import never re-subscribes someone who unsubscribed: it lists them as a failure instead,
    # which is how the push learns that a person opted out.
    contact["subscribe"] = [{"listid": shape.list_id}]
    return contact


def _body_size(contacts: list[dict[str, Any]]) -> int:
    # The client's own encoding (compact, UTF-8), plus the envelope around the contacts.
    return len(json.dumps(contacts, ensure_ascii=False, separators=(",", ":")).encode()) + _ENVELOPE_BYTES


def batches(
    rows: Iterable[dict[str, Any]],
    shape: ContactShape,
    max_contacts: int = MAX_BULK_CONTACTS,
    max_bytes: int = MAX_BULK_BODY_BYTES,
) -> Iterator[Batch]:
    """Group change rows into batches of at most `max_contacts` contacts and under `max_bytes`.

    Contacts are a few hundred bytes, so a full batch is far under the byte limit: each batch is
    measured once as a whole, and only one that is too big is split.
    """
    pending: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for row in rows:
        pending.append((row, bulk_contact(row, shape)))
        if len(pending) == max_contacts:
            yield from _within_bytes(pending, max_bytes)
            pending = []
    if pending:
        yield from _within_bytes(pending, max_bytes)


def _within_bytes(pairs: list[tuple[dict[str, Any], dict[str, Any]]], max_bytes: int) -> Iterator[Batch]:
    contacts = [contact for _, contact in pairs]
    size = _body_size(contacts)
    if size < max_bytes:
        yield Batch(contacts=contacts, rows=[row for row, _ in pairs])
    elif len(pairs) == 1:
        raise ValueError(
            f"the contact {pairs[0][0]['email']} alone is {size:,} bytes, over bulk import's limit; "
            "map fewer or shorter custom fields"
        )
    else:
        half = len(pairs) // 2
        yield from _within_bytes(pairs[:half], max_bytes)
        yield from _within_bytes(pairs[half:], max_bytes)


def sync_fields(row: dict[str, Any], shape: ContactShape) -> dict[str, Any]:
    """Keyword arguments of `client.sync_contact` for a change row (mapped fields only)."""
    fields: dict[str, Any] = {name: _text(row.get(name)) for name in shape.standard_fields}
    fields["field_values"] = {fid: _text(row.get(field_column(t))) for t, fid in shape.field_ids.items()} or None
    return fields
