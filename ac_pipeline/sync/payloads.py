"""Contacts in the shapes ActiveCampaign takes, and bulk-import batches within its limits."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from ac_pipeline.activecampaign.client import MAX_BULK_BODY_BYTES, MAX_BULK_CONTACTS
from ac_pipeline.activecampaign.limits import (
    MAX_CUSTOM_FIELD_VALUE_LENGTH,
    MAX_FIRST_NAME_LENGTH,
    MAX_LAST_NAME_LENGTH,
    MAX_PHONE_LENGTH,
)
from ac_pipeline.audiences.members import field_column

STANDARD_LIMITS = {"first_name": MAX_FIRST_NAME_LENGTH, "last_name": MAX_LAST_NAME_LENGTH, "phone": MAX_PHONE_LENGTH}

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
    # group -> the tag its contacts carry besides `tags` (a change row's `group` column says whose it is)
    group_tags: dict[str, str] = field(default_factory=dict)
    # Members columns (standard names, `field:<title>`) whose null means "leave ActiveCampaign's value as it is":
    # the fields in `fill` or `never_clear` mode (audiences.modes). They are left out of the payload then, which
    # bulk import and contact/sync both take as "unchanged"; every other null is sent as '' and clears the value.
    leave_alone: frozenset[str] = frozenset()

    def tags_of(self, row: dict[str, Any]) -> list[str]:
        """The tags a contact gets: the audience's, and its group's."""
        group_tag = self.group_tags.get(row.get("group") or "")
        return [*self.tags, group_tag] if group_tag else list(self.tags)


@dataclass(eq=False)  # a batch is itself: found in flight by identity
class Batch:
    """Up to 250 contacts sent in one bulk-import request: the change rows they came from, and each
    contact as the JSON text that goes into the request (`contacts_json`), in the same order."""

    rows: pl.DataFrame
    contacts: list[str]
    batch_id: str | None = None
    attempts: int = 0
    submitted_at: float = 0.0
    next_poll_at: float = 0.0
    polls: int = 0
    callback_key: str | None = None  # names this submission in its import callback

    def subset(self, indexes: list[int]) -> Batch:
        """A new batch of these contacts only (indexes into this one, in order)."""
        return Batch(rows=self.rows[indexes], contacts=[self.contacts[i] for i in indexes])


def _text(value: Any) -> str:
    # A field that became empty must be cleared in ActiveCampaign, not left as it was.
    return "" if value is None else str(value)


def _sent(row: dict[str, Any], column: str, shape: ContactShape) -> bool:
    return row.get(column) is not None or column not in shape.leave_alone


def _field_id(field_id: str) -> int | str:
    """A custom field's id as bulk import takes it: an integer (its request schema, its example and the API
    reference agree), though answers give ids as strings. A dry run's placeholder stays as it is."""
    return int(field_id) if field_id.isdigit() else field_id


def bulk_contact(row: dict[str, Any], shape: ContactShape) -> dict[str, Any]:
    """One contact of a bulk import (snake_case, unlike /contacts). Only mapped fields are sent, so
    fields the audience does not own are left as they are in ActiveCampaign."""
    if row["op"] == "remove":
        return {"email": row["email"], "unsubscribe": [{"listid": shape.list_id}]}
    contact: dict[str, Any] = {"email": row["email"]}
    for name in shape.standard_fields:
        if _sent(row, name, shape):
            contact[name] = _text(row.get(name))
    fields = [
        {"id": _field_id(fid), "value": _text(row.get(field_column(title)))}
        for title, fid in shape.field_ids.items()
        if _sent(row, field_column(title), shape)
    ]
    if fields:
        contact["fields"] = fields
    tags = shape.tags_of(row)
    if tags:
        contact["tags"] = tags
    # Bulk import never re-subscribes someone who unsubscribed: it lists them as a failure instead,
    # which is how the push learns that a person opted out.
    contact["subscribe"] = [{"listid": shape.list_id}]
    return contact


def may_be_refused(frame: pl.DataFrame, shape: ContactShape) -> pl.Series:
    """A cheap, vectorised pre-filter for `refusal`: true for every row it could refuse (a value over a
    limit, or values long enough together to approach bulk import's body limit), false for the rest."""
    checks = [pl.lit(False)]
    sizes = [pl.lit(0)]
    for name in shape.standard_fields:
        if name in frame.columns and name in STANDARD_LIMITS:
            checks.append(pl.col(name).cast(pl.String).str.len_chars() > STANDARD_LIMITS[name])
            sizes.append(pl.col(name).cast(pl.String).str.len_bytes().fill_null(0))
    for title in shape.field_ids:
        column = field_column(title)
        if column in frame.columns:
            checks.append(pl.col(column).cast(pl.String).str.len_chars() > MAX_CUSTOM_FIELD_VALUE_LENGTH)
            sizes.append(pl.col(column).cast(pl.String).str.len_bytes().fill_null(0))
    # JSON escaping can at most multiply a value's bytes by six (\uXXXX): past a sixth of the limit, measure.
    big = pl.sum_horizontal(sizes) > MAX_BULK_BODY_BYTES // 6
    suspect = (pl.any_horizontal(checks).fill_null(False) | big) & (pl.col("op") != "remove")
    return frame.select(suspect.alias("suspect")).to_series()


def refusal(row: dict[str, Any], shape: ContactShape) -> str | None:
    """Why ActiveCampaign would refuse this change row, checked before sending; None when it would not.

    A value over a field's limit, or a contact too big for a bulk import on its own, can never be sent:
    the row is rejected with a reason naming the field and the limit, and the rest of the audience goes.
    """
    if row["op"] == "remove":
        return None
    for name in shape.standard_fields:
        value, limit = _text(row.get(name)), STANDARD_LIMITS.get(name)
        if limit is not None and len(value) > limit:
            return (
                f"{name} is {len(value):,} characters, over ActiveCampaign's limit of {limit}; shorten it in the "
                "customer 360 or map a shorter expression in audiences.yaml"
            )
    for title in shape.field_ids:
        value = _text(row.get(field_column(title)))
        if len(value) > MAX_CUSTOM_FIELD_VALUE_LENGTH:
            return (
                f"custom field {title!r} is {len(value):,} characters, over ActiveCampaign's limit of "
                f"{MAX_CUSTOM_FIELD_VALUE_LENGTH} for a text field; shorten it or map a shorter expression"
            )
    size = _body_size([bulk_contact(row, shape)])
    if size >= MAX_BULK_BODY_BYTES:
        return f"the contact alone is {size:,} bytes, over bulk import's limit of {MAX_BULK_BODY_BYTES:,} bytes"
    return None


def contacts_json(frame: pl.DataFrame, shape: ContactShape) -> pl.Series:
    """Each change row's bulk-import contact as JSON text: the text the client's encoding gives for
    `bulk_contact(row, shape)` (compact, UTF-8, keys in the same order), built by Polars for the whole frame.

    A contact is a few hundred bytes, and a sync sends up to a whole audience: a dict per contact, then
    Python's encoder, cost more CPU than everything else the client does. Rows with the same keys (a removal,
    or an add/update with the same mapped fields left out) are encoded together as one struct; usually that
    is two groups. Mapped values are text (the audience's SQL casts them to VARCHAR): a null is sent as ''
    (clear the value) unless its column is in `shape.leave_alone` (then the key is left out).
    """
    columns = set(frame.columns)
    custom = [(field_column(title), _field_id(fid)) for title, fid in shape.field_ids.items()]
    if len({type(fid) for _, fid in custom}) > 1:
        # Numeric ids beside a dry run's placeholders: a list of structs takes one type, so encode row by row.
        return pl.Series("json", [_encode(bulk_contact(row, shape)) for row in frame.iter_rows(named=True)], pl.String)

    def text(name: str) -> pl.Expr:
        value = pl.col(name).cast(pl.String) if name in columns else pl.lit(None, dtype=pl.String)
        return value.fill_null("")

    optional = [name for name in (*shape.standard_fields, *(c for c, _ in custom)) if name in shape.leave_alone]
    group_tags = {group: tag for group, tag in shape.group_tags.items() if tag}
    group_tag = (
        pl.col("group").cast(pl.String).replace_strict(group_tags, default=None, return_dtype=pl.String)
        if group_tags and "group" in columns
        else pl.lit(None, dtype=pl.String)
    )
    # What decides a contact's keys: removal or not, a group tag or not, which optional values are there.
    flags = {"_remove": pl.col("op") == "remove", "_group_tag": group_tag.is_not_null()}
    flags |= {
        f"_sent_{i}": pl.col(name).is_not_null() if name in columns else pl.lit(False)
        for i, name in enumerate(optional)
    }
    keyed = frame.with_row_index("_row").with_columns(**flags)
    encoded = []
    for pattern in keyed.select(list(flags)).unique().iter_rows(named=True):
        sent = {name for i, name in enumerate(optional) if pattern[f"_sent_{i}"]}
        rows = keyed.filter(pl.all_horizontal([pl.col(flag) == value for flag, value in pattern.items()]))
        if pattern["_remove"]:
            contact = pl.struct(email=pl.col("email"), unsubscribe=pl.lit([{"listid": shape.list_id}]))
        else:
            keys: dict[str, pl.Expr] = {"email": pl.col("email")}
            keys |= {
                name: text(name) for name in shape.standard_fields if name not in shape.leave_alone or name in sent
            }
            fields = [
                pl.struct(id=pl.lit(fid), value=text(column))
                for column, fid in custom
                if column not in shape.leave_alone or column in sent
            ]
            if fields:
                keys["fields"] = pl.concat_list(fields)
            tags = [pl.lit(tag, dtype=pl.String) for tag in shape.tags] + ([group_tag] if pattern["_group_tag"] else [])
            if tags:
                keys["tags"] = pl.concat_list(tags)
            keys["subscribe"] = pl.lit([{"listid": shape.list_id}])
            contact = pl.struct([expr.alias(name) for name, expr in keys.items()])
        encoded.append(rows.select("_row", json=contact.struct.json_encode()))
    if not encoded:
        return pl.Series("json", [], pl.String)
    return pl.concat(encoded).sort("_row").get_column("json")


def _encode(contact: Any) -> str:
    return json.dumps(contact, ensure_ascii=False, separators=(",", ":"))


def _body_size(contacts: list[dict[str, Any]]) -> int:
    # The client's own encoding (compact, UTF-8), plus the envelope around the contacts.
    return len(_encode(contacts).encode()) + _ENVELOPE_BYTES


# Change rows encoded at a time: enough for Polars to pay off, few enough to keep memory flat for any audience.
_ENCODE_ROWS = 5_000


def batches(
    rows: pl.DataFrame,
    shape: ContactShape,
    max_contacts: int = MAX_BULK_CONTACTS,
    max_bytes: int = MAX_BULK_BODY_BYTES,
) -> Iterator[Batch]:
    """Group change rows, in order, into batches of at most `max_contacts` contacts and under `max_bytes`.

    Each contact is encoded once (`contacts_json`), and its size is the length of that text, so a batch
    is measured without encoding it again: a contact joins the batch unless the batch is full or the
    contact would take it to the byte limit.
    """
    for start in range(0, rows.height, _ENCODE_ROWS):
        chunk = rows.slice(start, _ENCODE_ROWS)
        texts = contacts_json(chunk, shape)
        sizes = texts.str.len_bytes().to_list()
        contacts = texts.to_list()
        first, size = 0, _ENVELOPE_BYTES
        for index, contact_size in enumerate(sizes):
            if contact_size + _ENVELOPE_BYTES >= max_bytes:
                # `refusal` set such a contact aside before batching: reaching here is a bug, and it must be loud.
                raise ValueError(
                    f"the contact {chunk['email'][index]} alone is {contact_size + _ENVELOPE_BYTES:,} bytes, "
                    "over bulk import's limit"
                )
            if index - first == max_contacts or size + contact_size + 1 >= max_bytes:
                yield Batch(rows=chunk.slice(first, index - first), contacts=contacts[first:index])
                first, size = index, _ENVELOPE_BYTES
            size += contact_size + 1  # and its comma
        if first < len(contacts):
            yield Batch(rows=chunk.slice(first, len(contacts) - first), contacts=contacts[first:])


def sync_fields(row: dict[str, Any], shape: ContactShape) -> dict[str, Any]:
    """Keyword arguments of `client.sync_contact` for a change row (mapped fields only)."""
    # None leaves a standard field out of the request (the client sends only what is not None).
    fields: dict[str, Any] = {
        name: _text(row.get(name)) if _sent(row, name, shape) else None for name in shape.standard_fields
    }
    fields["field_values"] = {
        fid: _text(row.get(field_column(t))) for t, fid in shape.field_ids.items() if _sent(row, field_column(t), shape)
    } or None
    return fields
