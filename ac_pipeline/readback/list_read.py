"""Read one audience's list back and reconcile the snapshot with it: the read-back asset's work, and the
push's when it finds that its destination changed.

A read is full when asked, when there is no earlier read of this list, when the audience maps a field or tag
the earlier read did not know, or when the list is not the one the snapshot describes (a recreated list,
another account, a lost state file). Then the snapshot is rebuilt from the list (a resync, see
reconcile.ownership) and the destination recorded anew. Otherwise the read is incremental (reader).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import polars as pl

from ac_pipeline.activecampaign import ActiveCampaignClient
from ac_pipeline.audiences.config import Audience
from ac_pipeline.readback.reader import OVERLAP, Ids, frame_schema, list_total, merge, read_pages, with_hash
from ac_pipeline.readback.reconcile import Reconciliation, ownership, reconcile
from ac_pipeline.state.readback import ListRead, ReadBackState
from ac_pipeline.state.store import SyncState
from ac_pipeline.sync.destination import match_fields

# A full read pages through this many id ranges side by side (reader.read_pages).
FULL_READ_LANES = 3
# Without a Date header the server's clock is unknown: ask from this far back by ours.
UNKNOWN_CLOCK_MARGIN = timedelta(minutes=10)


@dataclass
class ReadBackResult:
    members: pl.DataFrame  # the list as ActiveCampaign holds it (reader.frame_schema plus fields_hash)
    reconciliation: Reconciliation
    list_id: str | None  # None: the list does not exist (deleted, or never created)
    full: bool
    why: str  # why the read was full, or "incremental"
    resynced: bool
    changed_contacts: int  # contacts read (all of them in a full read)
    removed_by_sync: pl.Series  # emails the snapshot, reconciled, says the sync itself unsubscribed
    requests: int
    seconds: float


def resolve_ids(client: ActiveCampaignClient, audience: Audience, list_id: str) -> Ids:
    """The ids of the audience's custom fields and tags, as far as they exist; nothing is created."""
    field_ids = match_fields(client.list_fields(), audience)[0] if audience.fields.custom else {}
    wanted = {name.casefold(): name for name in [*audience.tags, *audience.group_tags.values()]}
    tag_ids = {}
    if wanted:
        for tag in client.list_tags():
            name = wanted.get(str(tag.get("tag", "")).casefold())
            if name is not None:
                tag_ids[name] = str(tag["id"])
    return Ids(list_id, field_ids, tag_ids)


def read_back(
    client: ActiveCampaignClient,
    state: SyncState,
    audience: Audience,
    run_id: str,
    *,
    account: str,
    full: bool = False,
    resync: bool = False,
    list_id: str | None = None,
    audience_emails: pl.Series | None = None,
    log: Callable[[str], None] = print,
    held: bool = False,
) -> ReadBackResult:
    """Read the audience's list, reconcile the snapshot with it and commit both (see the module docstring).

    `list_id`: the list, when the caller resolved it already (the push); otherwise it is looked up by name.
    `audience_emails`: the audience's members, when the caller has them (the push): in a resync, those on the
    list are taken as the audience's, so that a list in step costs no write even when the state was lost.
    `held`: the caller holds the audience already (the push); otherwise the read-back holds it, so that a push
    of the same audience cannot move the snapshot between the read and the commit."""
    if not held:
        with state.hold(audience.key, holder=f"read-back of run {run_id}"):
            return read_back(
                client,
                state,
                audience,
                run_id,
                account=account,
                full=full,
                resync=resync,
                list_id=list_id,
                audience_emails=audience_emails,
                log=log,
                held=True,
            )
    started, requests_before = time.monotonic(), client.stats.requests
    key = audience.key
    store = ReadBackState(state)
    if list_id is None:
        found = client.find_list(audience.list.name)
        list_id = str(found["id"]) if found is not None else None
    recorded = state.destination(key)
    snapshot = state.snapshot(key)
    here = (account, list_id) if list_id is not None else None
    moved = recorded != here if recorded is not None else snapshot.is_empty()
    resync = resync or (moved and list_id is not None)
    last = store.last_read(key)
    why = _why_full(full, resync, recorded, here, last, audience)
    members: pl.DataFrame | None

    if list_id is None:
        log(f"list {audience.list.name!r} does not exist in {account}: everyone the snapshot has on it is gone")
        members = pl.DataFrame(schema={**frame_schema(audience), "fields_hash": pl.String()})
        changed, read, changed_contacts = members, None, 0
    elif why is None and last is not None:
        members, changed, read = _incremental(client, store, audience, last)
        changed_contacts = changed.height
        if members is None:
            why = "the list's active count disagreed with the incremental read (a contact deleted?)"
    if list_id is not None and why is not None:
        ids = resolve_ids(client, audience, list_id)
        pages, began = read_pages(client, ids, audience, lanes=FULL_READ_LANES)
        members, changed_contacts = with_hash(pages, audience), pages.height
        began = began or datetime.now(UTC) - UNKNOWN_CLOCK_MARGIN
        read = ListRead(account, list_id, ids.field_ids, ids.tag_ids, began, began, members.height)
    assert members is not None

    in_flight = state.journal(key).get_column("email")
    adopt = None
    if resync:
        known = store.confirmed_sends(key)
        if audience_emails is not None:
            known = pl.concat([known, audience_emails])
        adopt = ownership(members, snapshot, known, audience.unmanaged)
    elif audience.unmanaged == "remove":
        adopt = members.get_column("email")
    outcome = reconcile(
        members, snapshot, in_flight=in_flight, adopt=adopt, same_destination=recorded == here or recorded is None
    )
    store.commit(
        audience,
        run_id,
        read,
        members=members if why is not None else changed,
        full=why is not None,
        upserts=outcome.upserts,
        forgotten=outcome.forgotten,
        ledger=outcome.ledger(),
        record_destination=resync and read is not None,
    )
    return ReadBackResult(
        members=members,
        reconciliation=outcome,
        list_id=list_id,
        full=why is not None,
        why=why or "incremental",
        resynced=resync and list_id is not None,
        changed_contacts=changed_contacts,
        removed_by_sync=_removed_by_sync(snapshot, outcome),
        requests=client.stats.requests - requests_before,
        seconds=time.monotonic() - started,
    )


def _why_full(
    asked: bool,
    resync: bool,
    recorded: tuple[str, str] | None,
    here: tuple[str, str | None] | None,
    last: ListRead | None,
    audience: Audience,
) -> str | None:
    if resync:
        if recorded is not None and recorded != here:
            return f"the snapshot describes list {recorded[1]} in {recorded[0]}, not this one: resync"
        return "resync asked for" if recorded is not None else "no destination recorded yet: resync"
    if asked:
        return "full read asked for"
    if last is None:
        return "first read of this list"
    if here is None or (last.account, last.list_id) != here:
        return "the last read was of another list"
    tags = {*audience.tags, *audience.group_tags.values()}
    if set(audience.fields.custom) - set(last.field_ids) or tags - set(last.tag_ids):
        return "the audience maps a field or tag the last read did not know"
    return None


def _incremental(
    client: ActiveCampaignClient, store: ReadBackState, audience: Audience, last: ListRead
) -> tuple[pl.DataFrame | None, pl.DataFrame, ListRead]:
    """The last read with what changed since merged in (None when the list's own count disagrees with it),
    what changed, and the read's record."""
    ids = Ids(last.list_id, last.field_ids, last.tag_ids)
    pages, began = read_pages(client, ids, audience, updated_after=last.began_at - OVERLAP)
    changed = with_hash(pages, audience)
    merged = merge(store.members(audience), changed)
    read = ListRead(
        last.account,
        last.list_id,
        last.field_ids,
        last.tag_ids,
        began or datetime.now(UTC) - UNKNOWN_CLOCK_MARGIN,
        last.full_at,
        merged.height,
    )
    if list_total(client, last.list_id) != merged.filter(pl.col("list_status") == 1).height:
        return None, changed, read
    return merged, changed, read


def _removed_by_sync(snapshot: pl.DataFrame, outcome: Reconciliation) -> pl.Series:
    """The snapshot's `removed` emails after the reconciliation: those it neither re-labelled nor forgot."""
    moved = pl.concat([outcome.upserts.get_column("email"), outcome.forgotten]).implode()
    removed = snapshot.filter((pl.col("status") == "removed") & ~pl.col("email").is_in(moved))
    return removed.get_column("email")
