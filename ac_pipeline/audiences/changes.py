"""The diff between an audience and the last sync ActiveCampaign confirmed.

Each change row says what one contact needs:
- `add`: in the audience, not in the list (first sync: everyone);
- `readd`: in the audience again after the pipeline itself unsubscribed them: re-subscribed
  explicitly (bulk import will not re-subscribe anyone with status "unsubscribed");
- `update`: in both, and a mapped field changed (the fields hash differs);
- `remove`: in the list, no longer in the audience: unsubscribed from the list.

A contact who unsubscribed themselves (`opted_out` in the snapshot) is never added back, whatever
the audience says; they are counted as skipped. A contact ActiveCampaign refused (`rejected`) is
sent again only when its fields change.
"""

from __future__ import annotations

import polars as pl

OPS = ("add", "readd", "update", "remove")


def diff(members: pl.DataFrame, snapshot: pl.DataFrame) -> pl.DataFrame:
    """Changes that take `snapshot` to `members`.

    members: one row per contact (email, fields_hash, mapped fields). snapshot: email, fields_hash,
    contact_id, status. Returns members' columns plus `op` and `contact_id`; removals carry only
    email and contact_id. The comparison runs on (email, hash) alone; only the changed rows' other
    columns are gathered afterwards.
    """
    known = snapshot.select(
        "email",
        pl.col("fields_hash").alias("synced_hash"),
        "contact_id",
        pl.col("status").alias("synced_status"),
    )
    keys = members.select("email", "fields_hash").with_row_index("_row")
    entering = keys.join(known, on="email", how="left").select(
        "_row",
        "contact_id",
        op=pl.when(pl.col("synced_status").is_null()).then(pl.lit("add"))
        .when(pl.col("synced_status") == "removed").then(pl.lit("readd"))
        .when((pl.col("synced_status") == "member") & (pl.col("synced_hash") != pl.col("fields_hash")))
        .then(pl.lit("update"))
        .when((pl.col("synced_status") == "rejected") & (pl.col("synced_hash") != pl.col("fields_hash")))
        .then(pl.lit("add"))
        .otherwise(pl.lit(None, dtype=pl.String)),  # unchanged member, or opted out: nothing to send
    ).filter(pl.col("op").is_not_null()).sort("_row")
    changed = members[entering.get_column("_row")].with_columns(entering.select("op", "contact_id"))
    leaving = (
        known.filter(pl.col("synced_status") == "member")
        .join(keys.select("email"), on="email", how="anti")
        .select("email", "contact_id", pl.lit("remove").alias("op"))
    )
    return pl.concat([changed, leaving], how="diagonal_relaxed").select(
        "op", "email", "contact_id", pl.exclude("op", "email", "contact_id")
    )


def skipped_opt_outs(members: pl.DataFrame, snapshot: pl.DataFrame) -> int:
    """Audience members who unsubscribed themselves and so are left alone."""
    opted_out = snapshot.filter(pl.col("status") == "opted_out").select("email")
    return members.join(opted_out, on="email", how="semi").height


def counts(changes: pl.DataFrame) -> dict[str, int]:
    by_op = dict(changes.group_by("op").len().iter_rows()) if not changes.is_empty() else {}
    return {op: int(by_op.get(op, 0)) for op in OPS}


def apply(snapshot: pl.DataFrame, changes: pl.DataFrame) -> pl.DataFrame:
    """The snapshot after every change was confirmed: members keep their new hash, removals become
    `removed`. The inverse of `diff`, used by tests (and to reason about resumes)."""
    touched = changes.select(
        "email",
        pl.when(pl.col("op") == "remove").then(pl.lit("removed")).otherwise(pl.lit("member")).alias("status"),
        pl.when(pl.col("op") == "remove").then(pl.lit(None, dtype=pl.String)).otherwise(pl.col("fields_hash"))
        .alias("new_hash"),
    )
    kept = snapshot.join(touched, on="email", how="anti")
    updated = snapshot.select("email", "fields_hash").join(touched, on="email", how="right").select(
        "email",
        pl.coalesce("new_hash", "fields_hash").alias("fields_hash"),
        "status",
    )
    return pl.concat([kept.select("email", "fields_hash", "status"), updated], how="vertical")
