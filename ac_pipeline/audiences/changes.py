"""The diff between an audience and the last sync ActiveCampaign confirmed.

Each change row says what one contact needs:
- `add`: in the audience, not in the list (first sync: everyone);
- `readd`: in the audience again after the pipeline itself unsubscribed them: re-subscribed
  explicitly (bulk import will not re-subscribe anyone with status "unsubscribed");
- `update`: in both, and a mapped field changed (the fields hash differs);
- `remove`: in the list, no longer in the audience: unsubscribed from the list;
- `email_change`: a customer's address changed: their contact's email changes (audiences.identity), and the
  other ops follow from the moved row.

A contact who unsubscribed themselves (`opted_out` in the snapshot) is never added back, whatever
the audience says; they are counted as skipped. A contact ActiveCampaign refused (`rejected`) is
sent again only when its fields change.
"""

from __future__ import annotations

import polars as pl

from ac_pipeline.audiences.identity import email_changes, moved

OPS = ("add", "readd", "update", "remove")


def _members_only(members: pl.DataFrame) -> pl.Expr:
    # audience_members keeps every selected row with its status; a plain frame is all members.
    return (pl.col("status") == "member") if "status" in members.columns else pl.lit(True)


def diff(members: pl.DataFrame, snapshot: pl.DataFrame, *, follow_identity: bool = True) -> pl.DataFrame:
    """Changes that take `snapshot` to `members`: first the email changes (`follow_identity`), then what the
    rest needs against the snapshot as those changes leave it. See `_diff` for the columns."""
    moves = email_changes(members, snapshot) if follow_identity else pl.DataFrame()
    if moves.is_empty():
        return _diff(members, snapshot)
    return pl.concat([moves, _diff(members, moved(snapshot, moves))], how="diagonal_relaxed")


def _diff(members: pl.DataFrame, snapshot: pl.DataFrame) -> pl.DataFrame:
    """Changes that take `snapshot` to `members`, address by address.

    members: one row per contact (email, fields_hash, mapped fields), or the whole audience_members
    table, whose rows with status `member` count. snapshot: email, fields_hash, contact_id, status.
    Returns the members' columns plus `op` and `contact_id`; removals carry only email and contact_id.

    Rows are paired by joining row numbers on a 64-bit hash of the email (a join on strings costs several
    times more, and a join that carries the strings along twice as much), and a pair is kept only where the
    emails are equal, so a hash collision can never pair two people. What the comparison needs is then
    gathered by row number, and the changed rows' other columns at the end.
    """
    keys = (
        members.select(_h=pl.col("email").hash(), _member=_members_only(members))
        .with_row_index("_row")
        .filter(pl.col("_member"))
        .drop("_member")
    )
    known = snapshot.select(_h=pl.col("email").hash()).with_row_index("_srow")
    pairs = keys.join(known, on="_h", how="inner").select("_row", "_srow")
    pairs = pairs.filter(
        members.get_column("email").gather(pairs.get_column("_row"))
        == snapshot.get_column("email").gather(pairs.get_column("_srow"))
    )
    row, srow = pairs.get_column("_row"), pairs.get_column("_srow")
    hash_changed = members.get_column("fields_hash").gather(row) != snapshot.get_column("fields_hash").gather(srow)
    synced_status = snapshot.get_column("status").gather(srow)
    returning = pairs.select(
        "_row",
        contact_id=snapshot.get_column("contact_id").gather(srow),
        op=pl.when(synced_status == "removed")
        .then(pl.lit("readd"))
        .when((synced_status == "member") & hash_changed)
        .then(pl.lit("update"))
        .when((synced_status == "rejected") & hash_changed)
        .then(pl.lit("add"))
        .otherwise(pl.lit(None, dtype=pl.String)),  # unchanged member, or opted out: nothing to send
    ).filter(pl.col("op").is_not_null())
    new = keys.filter(~pl.col("_row").is_in(row.implode())).select(
        "_row", contact_id=pl.lit(None, dtype=pl.String), op=pl.lit("add")
    )
    entering = pl.concat([returning, new]).sort("_row")
    changed = (
        members[entering.get_column("_row")]
        .drop([c for c in ("status", "reason") if c in members.columns])
        .with_columns(entering.select("op", "contact_id"))
    )
    leaving = (
        snapshot.select("email", "contact_id", "status")
        .with_row_index("_srow")
        .filter((pl.col("status") == "member") & ~pl.col("_srow").is_in(srow.implode()))
        .select("email", "contact_id", op=pl.lit("remove"))
    )
    return pl.concat([changed, leaving], how="diagonal_relaxed").select(
        "op", "email", "contact_id", pl.exclude("op", "email", "contact_id")
    )


def skipped_opt_outs(members: pl.DataFrame, snapshot: pl.DataFrame) -> int:
    """Audience members who unsubscribed themselves and so are left alone."""
    opted_out = snapshot.filter(pl.col("status") == "opted_out").get_column("email")
    return members.filter(_members_only(members) & pl.col("email").is_in(opted_out.implode())).height


def counts(changes: pl.DataFrame) -> dict[str, int]:
    by_op = dict(changes.group_by("op").len().iter_rows()) if not changes.is_empty() else {}
    return {op: int(by_op.get(op, 0)) for op in OPS}


def apply(snapshot: pl.DataFrame, changes: pl.DataFrame) -> pl.DataFrame:
    """The snapshot after every change was confirmed: members keep their new hash, removals become
    `removed`. The inverse of `diff`, used by tests (and to reason about resumes)."""
    touched = changes.select(
        "email",
        pl.when(pl.col("op") == "remove").then(pl.lit("removed")).otherwise(pl.lit("member")).alias("status"),
        pl.when(pl.col("op") == "remove")
        .then(pl.lit(None, dtype=pl.String))
        .otherwise(pl.col("fields_hash"))
        .alias("new_hash"),
    )
    kept = snapshot.join(touched, on="email", how="anti")
    updated = (
        snapshot.select("email", "fields_hash")
        .join(touched, on="email", how="right")
        .select(
            "email",
            pl.coalesce("new_hash", "fields_hash").alias("fields_hash"),
            "status",
        )
    )
    return pl.concat([kept.select("email", "fields_hash", "status"), updated], how="vertical")
