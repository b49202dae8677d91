"""Reconciliation: what the read-back of a list says about the snapshot, and how the snapshot is corrected.

The snapshot is the pipeline's belief about the list; the read-back is the list. Each difference is a kind
of drift, and each kind has one answer:

| kind        | what the read-back shows                                   | what the snapshot becomes                 |
| ----------- | ---------------------------------------------------------- | ----------------------------------------- |
| `opted_out` | a member (or someone we removed) unsubscribed themselves   | `opted_out` with how: never sent again    |
| `bounced`   | a member's address bounced                                 | `opted_out` with the reason: never sent   |
| `gone`      | a member is no longer on the list (contact or list deleted) | forgotten: the next sync sends them again |
| `unmanaged` | an active contact the pipeline did not put there           | per policy: `keep` leaves them alone (reported), `remove` takes them in as members, so the next diff removes them unless the audience holds them |
| `edited`    | a mapped field differs from what the pipeline sent         | the hash ActiveCampaign's values give, so the next diff sends the audience's values again |

Consent first: an unsubscribe is the pipeline's own only when the snapshot says it removed them and the
list's record proves it (sync.consent); anything else is the person's. Contacts in the intent journal are
in flight (an earlier push crashed mid-batch): the next push settles them, reconciliation leaves them be.

A full resync (`adopt`) goes further: it rebuilds the snapshot from the read-back, taking active contacts in
as members (see `ownership`), so that the next diff sends only what makes the list equal to the audience.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import polars as pl

from ac_pipeline.readback.reader import RECORD_KEYS
from ac_pipeline.sync.consent import judge_unsubscribe

KINDS = ("opted_out", "bounced", "gone", "unmanaged", "edited")
BOUNCED = "the address bounced (list status 3); never sent again by the sync"


@dataclass(frozen=True)
class Reconciliation:
    drift: pl.DataFrame  # email, contact_id, kind, detail: one row per contact that drifted
    upserts: pl.DataFrame  # snapshot rows to write: email, fields_hash, contact_id, status, reason, removed_at
    forgotten: pl.Series  # emails to drop from the snapshot
    adopted: int  # unmanaged contacts taken in as members

    def counts(self) -> dict[str, int]:
        by_kind = dict(self.drift.group_by("kind").len().iter_rows()) if self.drift.height else {}
        return {kind: int(by_kind.get(kind, 0)) for kind in KINDS}

    def ledger(self) -> pl.DataFrame:
        """The ledger rows that say why the snapshot moved: drift that changed it, and refreshed rows (a contact
        id learnt, an adoption). Unmanaged contacts left alone are reported in the metadata, not written again
        at every read."""
        touched = pl.concat([self.upserts.get_column("email"), self.forgotten]).implode()
        return pl.concat(
            [
                self.drift.filter(pl.col("email").is_in(touched)).select(
                    "email", op=pl.lit("reconcile"), status="kind", reason="detail"
                ),
                self.upserts.join(self.drift.select("email"), on="email", how="anti").select(
                    "email", op=pl.lit("reconcile"), status=pl.lit("refreshed"), reason="reason"
                ),
            ],
            how="diagonal_relaxed",
        )


def ownership(read: pl.DataFrame, snapshot: pl.DataFrame, known: Iterable[str], policy: str) -> pl.Series:
    """For a full resync: the active contacts to take in as the audience's members.

    With `unmanaged: remove`, every active contact. With `keep`, those the pipeline has reason to call its own:
    in the snapshot, sent with success by an earlier sync (the ledger), or in the audience now (`known` holds
    the last two). Whoever else is on the list is unmanaged, and kept: with no record at all (a lost state
    file, a list filled before the first sync), nothing tells someone who left the audience from someone a
    colleague added, and an unsubscribe the sync cannot prove it owes is one it does not make. Removals that
    follow are held by the removal guard as always."""
    active = read.filter(pl.col("list_status").is_in([0, 1])).get_column("email")
    if policy == "remove":
        return active
    known_emails = pl.concat([snapshot.get_column("email"), pl.Series("email", list(known), dtype=pl.String)])
    return active.filter(active.is_in(known_emails.implode()))


def reconcile(
    read: pl.DataFrame,
    snapshot: pl.DataFrame,
    *,
    in_flight: Iterable[str] = (),
    adopt: pl.Series | None = None,
    same_destination: bool = True,
) -> Reconciliation:
    """Compare the read-back (reader.with_hash) with the snapshot; see the module docstring.

    `adopt`: emails of unmanaged active contacts to take in as members (`unmanaged: remove`, or a resync).
    `same_destination`: whether the snapshot describes the list read; if not, its `removed` rows prove nothing
    about this list's unsubscribes, which then all count as the people's own."""
    flying = pl.Series("email", list(in_flight), dtype=pl.String).implode()
    snap = snapshot.filter(~pl.col("email").is_in(flying)).select(
        "email",
        s_hash=pl.col("fields_hash"),
        s_contact_id=pl.col("contact_id"),
        s_status=pl.col("status"),
        s_removed_at=pl.col("removed_at"),
    )
    joined = read.filter(~pl.col("email").is_in(flying)).join(snap, on="email", how="full", coalesce=True)
    adopting = (adopt if adopt is not None else pl.Series([], dtype=pl.String)).implode()
    contact_id = pl.coalesce("contact_id", "s_contact_id").alias("contact_id")
    drift: list[pl.DataFrame] = []
    upserts: list[pl.DataFrame] = []

    def report(frame: pl.DataFrame, kind: str, detail: pl.Expr | str) -> None:
        detail = pl.lit(detail) if isinstance(detail, str) else detail
        drift.append(frame.select("email", contact_id, kind=pl.lit(kind), detail=detail))

    def keep(frame: pl.DataFrame, status: str, reason: pl.Expr | None = None) -> None:
        upserts.append(
            frame.select(
                "email",
                fields_hash=pl.col("fields_hash") if status == "member" else pl.lit(None, dtype=pl.String),
                contact_id=contact_id,
                status=pl.lit(status),
                reason=reason if reason is not None else pl.lit(None, dtype=pl.String),
                removed_at=pl.lit(None, dtype=pl.Datetime("us", "UTC")),
            )
        )

    # Gone: a member no longer on the list. Someone removed who is gone needs nothing more.
    gone = joined.filter(pl.col("list_status").is_null() & pl.col("s_status").is_in(["member", "removed"]))
    report(
        gone.filter(pl.col("s_status") == "member"),
        "gone",
        "no longer on the list (the contact or the list was deleted)",
    )

    active = joined.filter(pl.col("list_status").is_in([0, 1]))
    members = active.filter(pl.col("s_status") == "member")
    same_hash = pl.col("fields_hash") == pl.col("s_hash").fill_null("")
    edited = members.filter(~same_hash)
    report(edited, "edited", "a mapped field differs from what the sync sent (edited by hand)")
    keep(edited, "member")
    # Contact ids learnt (a contact deleted and created again has a new one).
    keep(members.filter(same_hash & (pl.col("contact_id") != pl.col("s_contact_id")).fill_null(True)), "member")

    strangers = active.filter(pl.col("s_status").is_null() | (pl.col("s_status") != "member"))
    report(
        strangers,
        "unmanaged",
        pl.col("s_status").replace_strict(
            {
                "rejected": "on the list, though ActiveCampaign refused the sync's add",
                "removed": "subscribed again after the sync removed them (by hand or by a form)",
                "opted_out": "subscribed again after unsubscribing themselves; the sync leaves them alone",
            },
            default="on the list, not put there by the sync (added by hand or by a form)",
            return_dtype=pl.String,
        ),
    )
    taken = strangers.filter((pl.col("s_status").fill_null("") != "opted_out") & pl.col("email").is_in(adopting))
    keep(taken, "member")

    bounced = joined.filter((pl.col("list_status") == 3) & (pl.col("s_status").fill_null("") != "opted_out"))
    report(bounced.filter(pl.col("s_status").is_in(["member", "removed"])), "bounced", BOUNCED)
    keep(bounced, "opted_out", pl.lit(BOUNCED))

    judged: list[dict[str, Any]] = []
    unsubscribed = joined.filter((pl.col("list_status") == 2) & (pl.col("s_status").fill_null("") != "opted_out"))
    for row in unsubscribed.iter_rows(named=True):
        record = {"status": "2", **{key: row[key] for key in RECORD_KEYS}}
        bound = row["s_removed_at"] if row["s_status"] == "removed" and same_destination else None
        verdict = judge_unsubscribe(record, not_after=bound) if bound is not None else judge_unsubscribe(record)
        if row["s_status"] == "removed" and verdict.ours:
            continue
        judged.append({"email": row["email"], "reason": verdict.reason})
    theirs = unsubscribed.join(pl.DataFrame(judged, schema={"email": pl.String, "reason": pl.String}), on="email")
    report(theirs.filter(pl.col("s_status").is_in(["member", "removed"])), "opted_out", pl.col("reason"))
    keep(theirs, "opted_out", pl.col("reason"))

    return Reconciliation(
        drift=pl.concat(drift, how="vertical"),
        upserts=pl.concat(upserts, how="vertical"),
        forgotten=gone.get_column("email"),
        adopted=taken.height,
    )


DRIFT_SCHEMA = {"email": pl.String, "contact_id": pl.String, "kind": pl.String, "detail": pl.String}
UPSERT_SCHEMA = {
    "email": pl.String,
    "fields_hash": pl.String,
    "contact_id": pl.String,
    "status": pl.String,
    "reason": pl.String,
    "removed_at": pl.Datetime("us", "UTC"),
}
