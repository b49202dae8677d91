"""Contacts in the shapes ActiveCampaign takes, and bulk-import batches within its limits."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ac_pipeline.activecampaign.client import MAX_BULK_BODY_BYTES, MAX_BULK_CONTACTS
from ac_pipeline.audiences.members import field_column

# Room for the envelope around the contacts ({"contacts": [...], "exclude_automations": true}).
_ENVELOPE_BYTES = 100


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
    size: int = _ENVELOPE_BYTES
    batch_id: str | None = None
    attempts: int = 0
    submitted_at: float = 0.0


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
        contact["fields"] = [{"id": fid, "value": _text(row.get(field_column(title)))}
                             for title, fid in shape.field_ids.items()]
    if shape.tags:
        contact["tags"] = list(shape.tags)
    # Bulk import never re-subscribes someone who unsubscribed: it lists them as a failure instead,
    # which is how the push learns that a person opted out.
    contact["subscribe"] = [{"listid": shape.list_id}]
    return contact


def batches(rows: list[dict[str, Any]], shape: ContactShape,
            max_contacts: int = MAX_BULK_CONTACTS, max_bytes: int = MAX_BULK_BODY_BYTES) -> Iterator[Batch]:
    """Group change rows into batches of at most `max_contacts` contacts and under `max_bytes`."""
    batch = Batch()
    for row in rows:
        contact = bulk_contact(row, shape)
        size = len(json.dumps(contact, separators=(",", ":"), ensure_ascii=False).encode()) + 1
        if size + _ENVELOPE_BYTES >= max_bytes:
            raise ValueError(f"the contact {row['email']} alone is {size:,} bytes, over bulk import's limit; "
                             "map fewer or shorter custom fields")
        if batch.contacts and (len(batch.contacts) >= max_contacts or batch.size + size >= max_bytes):
            yield batch
            batch = Batch()
        batch.contacts.append(contact)
        batch.rows.append(row)
        batch.size += size
    if batch.contacts:
        yield batch


def sync_fields(row: dict[str, Any], shape: ContactShape) -> dict[str, Any]:
    """Keyword arguments of `client.sync_contact` for a change row (mapped fields only)."""
    fields: dict[str, Any] = {name: _text(row.get(name)) for name in shape.standard_fields}
    fields["field_values"] = {fid: _text(row.get(field_column(t))) for t, fid in shape.field_ids.items()} or None
    return fields
