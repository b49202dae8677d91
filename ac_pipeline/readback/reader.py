"""Read an audience's list back from ActiveCampaign: who is on it, in which list status, how that status came
about, and the values of the fields the audience maps.

One request per 100 contacts: GET contacts?listid=X with `include=contactLists,fieldValues,contactTags`,
paged by `id_greater` (the reference's advice for large sets). A read is either full, or incremental: only
the contacts ActiveCampaign updated after the last read (`filters[updated_after]`, by the server's clock),
merged into the last read. An incremental read then asks for the list's active total (one request): if the
merged read disagrees, something changed that did not move a contact's `udate` (a contact deleted, say),
and the read is done again in full. So an unchanged list costs three requests: the list by name, one
empty page, the total.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import duckdb
import polars as pl

from ac_pipeline.activecampaign import ActiveCampaignClient
from ac_pipeline.activecampaign.client import PAGE_SIZE
from ac_pipeline.audiences.config import Audience
from ac_pipeline.audiences.groups import grouped_hash_sql
from ac_pipeline.audiences.members import STANDARD_FIELDS, field_column, fields_hash_sql, tags_text
from ac_pipeline.sync.consent import someone_elses_mark

LIST_STATUSES = {0: "unconfirmed", 1: "active", 2: "unsubscribed", 3: "bounced"}
INCLUDE = "contactLists,fieldValues,contactTags"
# `filters[updated_after]` compares whole seconds, and the Date header has whole seconds: ask from a little
# earlier than the last read began. Contacts read twice are merged, so the overlap costs nothing but bytes.
OVERLAP = timedelta(seconds=2)
# The standard fields as /contacts names them.
_CONTACT_KEYS = {"first_name": "firstName", "last_name": "lastName", "phone": "phone"}
# The contactLists record's keys that say how a status came about (sync.consent reads them).
RECORD_KEYS = ("udate", "sdate", "unsubreason", "campaign", "message", "unsubscribeAutomation", "ip4Unsub")


def value_columns(audience: Audience) -> list[str]:
    """The members' columns the audience maps (and so the read-back holds): standard fields, then custom."""
    mapped = audience.fields.expressions()
    return [name for name in STANDARD_FIELDS if mapped.get(name)] + [
        field_column(title) for title in audience.fields.custom
    ]


def frame_schema(audience: Audience) -> dict[str, pl.DataType]:
    """The read-back's columns for this audience."""
    return {
        "contact_id": pl.String(),
        "email": pl.String(),
        "list_status": pl.Int8(),
        **{key: pl.String() for key in RECORD_KEYS},
        **{name: pl.String() for name in value_columns(audience)},
        "tags": pl.List(pl.String()),
        "contact_updated_at": pl.String(),
    }


@dataclass(frozen=True)
class Ids:
    """The account's ids for what the audience maps: its list, custom fields (title -> id) and tags (name -> id)."""

    list_id: str
    field_ids: dict[str, str]
    tag_ids: dict[str, str]


def _text(value: Any) -> str | None:
    # Answers give values as strings; whatever else comes is read as the text it would be sent as.
    return None if value is None else str(value)


def _page_rows(body: dict[str, Any], ids: Ids, audience: Audience) -> Iterator[dict[str, Any]]:
    records = {
        str(record.get("contact")): record
        for record in body.get("contactLists") or []
        if str(record.get("list")) == ids.list_id
    }
    field_titles = {field_id: title for title, field_id in ids.field_ids.items()}
    values: dict[str, dict[str, str | None]] = {}
    for value in body.get("fieldValues") or []:
        title = field_titles.get(str(value.get("field")))
        if title is not None:
            values.setdefault(str(value.get("contact")), {})[field_column(title)] = _text(value.get("value"))
    tag_names = {tag_id: name for name, tag_id in ids.tag_ids.items()}
    tags: dict[str, list[str]] = {}
    for link in body.get("contactTags") or []:
        name = tag_names.get(str(link.get("tag")))
        if name is not None:
            tags.setdefault(str(link.get("contact")), []).append(name)
    mapped = audience.fields.expressions()
    for contact in body.get("contacts") or []:
        contact_id = str(contact.get("id"))
        record = records.get(contact_id)
        if record is None:
            # listid filters on membership: a contact without its record is not on the list after all.
            continue
        row: dict[str, Any] = {
            "contact_id": contact_id,
            "email": str(contact.get("email") or "").strip().lower(),
            "list_status": int(record.get("status") or 0),
            **{key: None if record.get(key) is None else str(record.get(key)) for key in RECORD_KEYS},
            **{name: _text(contact.get(key)) for name, key in _CONTACT_KEYS.items() if mapped.get(name)},
            **{field_column(title): None for title in audience.fields.custom},
            **values.get(contact_id, {}),
            "tags": sorted(tags.get(contact_id, [])),
            "contact_updated_at": contact.get("udate"),
        }
        yield row


def read_pages(
    client: ActiveCampaignClient,
    ids: Ids,
    audience: Audience,
    updated_after: datetime | None = None,
    lanes: int = 1,
) -> tuple[pl.DataFrame, datetime | None]:
    """The list's contacts (all, or those updated after `updated_after`), and the server's clock when the
    read began.

    `lanes` > 1 reads that many id ranges side by side (one more request first, for the highest id): each page
    waits for its answer before the next can be asked for (its last id starts the next), so one lane leaves the
    account's budget idle while an answer travels and parses. The lanes share the client and its rate limit;
    an exception in any of them fails the read."""
    params: dict[str, Any] = {"listid": ids.list_id, "include": INCLUDE, "orders[id]": "ASC", "limit": PAGE_SIZE}
    if updated_after is not None:
        params["filters[updated_after]"] = updated_after.isoformat(timespec="seconds")
    if lanes <= 1:
        return _read_lane(client, ids, audience, params, 0, None)
    probe, began = client.get_dated("contacts", {"listid": ids.list_id, "orders[id]": "DESC", "limit": 1})
    highest = int((probe.get("contacts") or [{"id": 0}])[0]["id"])
    total = int((probe.get("meta") or {}).get("total") or 0)
    if total <= PAGE_SIZE * lanes:  # a few pages: side by side would only add requests
        return _read_lane(client, ids, audience, params, 0, None)[0], began
    # Contacts added after the probe, with higher ids, are left to the next (incremental) read: their udate is
    # after this read began.
    bounds = [highest * lane // lanes for lane in range(lanes + 1)]
    with ThreadPoolExecutor(lanes, thread_name_prefix="read-back") as pool:
        futures = [
            pool.submit(_read_lane, client, ids, audience, params, low, high + 1)
            for low, high in itertools.pairwise(bounds)
        ]
        frames = [future.result()[0] for future in futures]
    return pl.concat(frames, how="vertical"), began


def _read_lane(
    client: ActiveCampaignClient,
    ids: Ids,
    audience: Audience,
    params: dict[str, Any],
    after_id: int,
    before_id: int | None,
) -> tuple[pl.DataFrame, datetime | None]:
    """The contacts with after_id < id < before_id, page by page."""
    bounded = {**params, "id_less": before_id} if before_id is not None else params
    rows: list[dict[str, Any]] = []
    began: datetime | None = None
    last_id = after_id
    while True:
        body, server_time = client.get_dated("contacts", {**bounded, "id_greater": last_id})
        began = began or server_time
        rows.extend(_page_rows(body, ids, audience))
        contacts = body.get("contacts") or []
        if len(contacts) < PAGE_SIZE:
            break
        last_id = int(contacts[-1]["id"])
    return pl.DataFrame(rows, schema=frame_schema(audience), orient="row"), began


def list_total(client: ActiveCampaignClient, list_id: str, status: int = 1) -> int:
    """How many contacts the list holds with this list status, by ActiveCampaign's count (one request)."""
    answer = client.request("GET", "contacts", params={"listid": list_id, "status": status, "limit": 1})
    return int((answer.get("meta") or {}).get("total") or 0)


def merge(previous: pl.DataFrame, changed: pl.DataFrame) -> pl.DataFrame:
    """The last read with the contacts read since replacing theirs."""
    if changed.is_empty():
        return previous
    kept = previous.join(changed.select("contact_id"), on="contact_id", how="anti")
    return pl.concat([kept, changed.select(previous.columns)], how="vertical").sort("contact_id")


def with_hash(frame: pl.DataFrame, audience: Audience) -> pl.DataFrame:
    """The read-back with `fields_hash`: the hash the audience's members would have, were their values the ones
    ActiveCampaign holds (audiences.members.fields_hash_sql). The audience's tags count only when the contact
    holds every one of them, so a tag removed by hand reads as an edit. A contact holding exactly one of the
    audience's group tags has it folded in as the members' hash does (audiences.groups.grouped_hash_sql)."""
    mapped = audience.fields.expressions()
    values: dict[str, str | None] = {name: f'"{name}"' if mapped.get(name) else None for name in STANDARD_FIELDS} | {
        field_column(title): '"' + field_column(title).replace('"', '""') + '"' for title in audience.fields.custom
    }
    wanted = sorted(audience.tags)
    holds_all = pl.col("tags").list.eval(pl.element().is_in(wanted)).list.sum() == len(wanted)
    group_tags = list(audience.group_tags.values())
    held = pl.col("tags").list.eval(pl.element().filter(pl.element().is_in(group_tags)))
    shaped = frame.with_columns(
        _tags=pl.when(holds_all).then(pl.lit(tags_text(wanted))).otherwise(pl.lit("missing tags")),
        _group_tag=pl.when(held.list.len() == 1).then(held.list.first()),
    )
    hashed = fields_hash_sql(values, "_tags")
    if group_tags:
        hashed = f"CASE WHEN _group_tag IS NULL THEN {hashed} ELSE {grouped_hash_sql(hashed, '_group_tag')} END"
    connection = duckdb.connect()
    try:
        connection.register("readback", shaped)
        hashes = connection.sql(f"SELECT {hashed} AS fields_hash FROM readback").pl()
    finally:
        connection.close()
    return frame.with_columns(hashes.get_column("fields_hash"))


def how(record: dict[str, Any]) -> tuple[str | None, str | None]:
    """(who, how) an unsubscribed or bounced membership came about, from its record, for the tables that
    come home: who is 'person', 'automation', 'bounce' or 'user_or_unknown' (an API or hand unsubscribe:
    the caller knows whether it was the sync's)."""
    status = int(record.get("status") or 0)
    if status == 3:
        return "bounce", "the address bounced"
    if status != 2:
        return None, None
    mark = someone_elses_mark(record)
    if mark is None:
        return "user_or_unknown", "unsubscribed through the API or by a user of the account"
    who = "automation" if mark.startswith("by automation") else "person"
    return who, f"unsubscribed {mark}"
