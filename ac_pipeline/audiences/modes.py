"""Field write modes and sync modes: how an audience's members become the changes a sync sends.

Field write modes (`fields.<name>: {column, mode}`):
- `overwrite` (default): the customer 360's value is sent, an empty one too (it clears ActiveCampaign's).
- `never_clear`: an empty customer 360 value is not sent (the field is left out of the payload, which leaves
  ActiveCampaign's value as it is); a non-empty one is sent as with `overwrite`.
- `fill`: the value is sent only where ActiveCampaign's is empty, as the last read-back of the list saw it. A
  contact the read-back never saw is new to the list, and gets the value (there is nothing to overwrite). A
  contact the snapshot knows but the read-back has not seen (no read-back yet, or one older than the contact)
  keeps ActiveCampaign's value, whatever it is: the safe choice when it is unknown. It is filled once a
  read-back shows it empty.

`settle` puts this in the members frame before the diff. A field's column then holds what is sent (null: left
out of the payload), and `fields_hash` fingerprints the values ActiveCampaign holds once the change is applied:
the sent value, or ActiveCampaign's own where nothing is sent. That is the hash the read-back computes from
the list (readback.reader.with_hash), so a `fill` field whose value in ActiveCampaign differs from the customer
360 matches the snapshot and is never sent again, and a hand edit of it is taken in by reconciliation without
being undone. Where ActiveCampaign's value is unknown, the customer 360's stands in (for `never_clear`, '').

Sync modes (`sync_mode`): `mirror` adds, updates and removes; `upsert` never removes: leavers stay on the list,
and stay `member` in the snapshot, which is what they are; `update_only` never removes either, and never
creates a contact: the push sends only to contacts the account holds (sync.existing). The consent rules are
the same in every mode: nobody who unsubscribed themselves is subscribed again.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import polars as pl

from ac_pipeline.audiences import changes as audience_changes
from ac_pipeline.audiences.config import Audience
from ac_pipeline.audiences.members import STANDARD_FIELDS, field_column, fields_hash_sql, tags_text
from ac_pipeline.state.readback import ReadBackState
from ac_pipeline.state.store import SyncState

# What the modes held back, as counted in metadata (each a number of contacts).
SKIPS = ("leavers_kept", "fill_kept", "never_clear_kept", "not_contacts")


def field_modes(audience: Audience) -> dict[str, str]:
    """Members column -> write mode, for every mapped field whose mode is not `overwrite`."""
    mapped = audience.fields.expressions()
    modes = {name: audience.fields.mode(name) for name in STANDARD_FIELDS if mapped.get(name)}
    modes |= {field_column(title): audience.fields.mode(title) for title in audience.fields.custom}
    return {column: mode for column, mode in modes.items() if mode != "overwrite"}


def describe_fields(audience: Audience) -> dict[str, str]:
    """Each mapped field, as audiences.yaml names it, with its write mode (for plans and metadata)."""
    mapped = audience.fields.expressions()
    names = [name for name in STANDARD_FIELDS if mapped.get(name)] + list(audience.fields.custom)
    return {name: audience.fields.mode(name) for name in names}


def last_values(state: SyncState, audience: Audience) -> pl.DataFrame | None:
    """The mapped fields' values as the last read-back of the audience's list saw them, or None when there is no
    read-back of the list the snapshot describes (or the audience needs none: all its fields overwrite)."""
    if not field_modes(audience):
        return None
    store = ReadBackState(state)
    read = store.last_read(audience.key)
    if read is None or state.destination(audience.key) != (read.account, read.list_id):
        return None
    # A custom field the read did not know (mapped since) has no value in it, which is not the same as empty.
    unknown = [field_column(title) for title in audience.fields.custom if title not in read.field_ids]
    return store.members(audience).drop(unknown)


def _empty(value: pl.Expr) -> pl.Expr:
    return value.is_null() | (value == "")


def settle(
    members: pl.DataFrame, audience: Audience, snapshot: pl.DataFrame, read_back: pl.DataFrame | None
) -> tuple[pl.DataFrame, dict[str, int]]:
    """The members with each non-`overwrite` field's column set to what is sent (null: left out) and
    `fields_hash` over the values ActiveCampaign holds after the send (see the module docstring); and how many
    members had a value held back, per mode (`fill_kept`, `never_clear_kept`).

    `read_back`: the last read of the list (`last_values`), None when there is none. `snapshot`: the sync
    snapshot, whose contacts are not new even when no read-back has seen them."""
    modes = field_modes(audience)
    if not modes:
        return members, {}
    # The columns whose values the read-back holds (a column it lacks is unknown for every contact).
    columns = [c for c in modes if read_back is not None and c in read_back.columns]
    seen = (
        read_back.select("email", *[pl.col(c).alias(f"_ac:{c}") for c in columns])
        .unique("email", keep="first")
        .with_columns(_seen=pl.lit(True))
        if read_back is not None
        else pl.DataFrame(schema={"email": pl.String, **{f"_ac:{c}": pl.String for c in columns}, "_seen": pl.Boolean})
    )
    known = snapshot.select("email").unique().with_columns(_known=pl.lit(True))
    frame = members.join(seen, on="email", how="left", maintain_order="left").join(
        known, on="email", how="left", maintain_order="left"
    )
    is_new = ~pl.col("_seen").fill_null(False) & pl.col("_known").is_null()
    sent: list[pl.Expr] = []
    held: dict[str, list[pl.Expr]] = {"fill": [pl.lit(False)], "never_clear": [pl.lit(False)]}
    effective: dict[str, pl.Expr] = {}
    for column, mode in modes.items():
        value = pl.col(column)
        known_here = column in columns
        theirs = pl.col(f"_ac:{column}").fill_null("") if known_here else pl.lit("")
        was_seen = pl.col("_seen").fill_null(False) if known_here else pl.lit(False)
        if mode == "fill":
            send = ~_empty(value) & (is_new | (was_seen & (theirs == "")))
            effective[column] = pl.when(was_seen & (theirs != "")).then(theirs).otherwise(value.fill_null(""))
            held["fill"].append(~_empty(value) & ~send)
        else:  # never_clear
            send = ~_empty(value)
            effective[column] = pl.when(send).then(value).when(was_seen).then(theirs).otherwise(pl.lit(""))
            held["never_clear"].append(~send)
        sent.append(pl.when(send).then(value).otherwise(pl.lit(None, dtype=pl.String)).alias(column))
    hashes = _hash(frame.select(*[effective.get(c, pl.col(c)).alias(c) for c in _hashed_columns(audience)]), audience)
    member = pl.col("status") == "member" if "status" in members.columns else pl.lit(True)
    kept = frame.select(
        **{f"{mode}_kept": (member & pl.any_horizontal(flags)).sum() for mode, flags in held.items()}
    ).row(0, named=True)
    settled = frame.with_columns(*sent, fields_hash=hashes).select(members.columns)
    return settled, {name: int(n) for name, n in kept.items()}


def _hashed_columns(audience: Audience) -> list[str]:
    return list(STANDARD_FIELDS) + [field_column(title) for title in audience.fields.custom]


def _hash(values: pl.DataFrame, audience: Audience) -> pl.Series:
    """`fields_hash` (audiences.members.fields_hash_sql) over these values: the same md5 the members' query and
    the read-back compute, so the three agree on equal values."""
    mapped = audience.fields.expressions()
    expressions: dict[str, str | None] = {
        column: '"' + column.replace('"', '""') + '"' if column.startswith("field:") or mapped.get(column) else None
        for column in _hashed_columns(audience)
    }
    tags = "'" + tags_text(audience.tags).replace("'", "''") + "'"
    connection = duckdb.connect()
    try:
        connection.register("effective", values)
        return connection.sql(f"SELECT {fields_hash_sql(expressions, tags)} AS h FROM effective").pl().to_series()
    finally:
        connection.close()


@dataclass(frozen=True)
class ModeChanges:
    changes: pl.DataFrame  # audience_changes, as the sync mode and field modes make them
    skipped: dict[str, int]  # SKIPS -> contacts (not_contacts is counted by the push)


def changes_for(
    members: pl.DataFrame,
    snapshot: pl.DataFrame,
    audience: Audience,
    read_back: pl.DataFrame | None,
    *,
    follow_identity: bool = True,
) -> ModeChanges:
    """The changes that take the list from `snapshot` to `members` under the audience's sync and field modes
    (`follow_identity`: see audiences.changes.diff)."""
    settled, kept = settle(members, audience, snapshot, read_back)
    changes = audience_changes.diff(settled, snapshot, follow_identity=follow_identity)
    leaving = pl.col("op") == "remove"
    leavers = changes.filter(leaving).height if audience.sync_mode != "mirror" else 0
    if leavers:
        changes = changes.filter(~leaving)
    skipped = dict.fromkeys(SKIPS, 0) | kept | {"leavers_kept": leavers}
    return ModeChanges(changes, skipped)
