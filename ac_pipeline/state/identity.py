"""The sync state's part of identity following the customer (audiences.identity, sync.identity): moving a
snapshot row to a contact's new address, and learning contact and customer ids for rows that lack them.

A move is one transaction: the row at the new address (everything the old row knew: status, hash, contact id,
removed_at, customer id), the old row gone, the journal intent cleared, and the ledger row that says why.
"""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from ac_pipeline.state.schema import LEDGER_COLUMNS
from ac_pipeline.state.store import SyncState, append_ledger


def move_row(
    state: SyncState,
    audience: str,
    run_id: str,
    *,
    old: str,
    new: str,
    contact_id: str | None,
    customer_id: str | None,
    reason: str,
) -> None:
    """Move the snapshot row of `old` to `new` (op `email_change`, status `confirmed` in the ledger).

    A row already at `new` is replaced: ActiveCampaign just said that this contact holds the address, and
    addresses are unique there, so that row described a contact that no longer has it."""
    now = datetime.now(UTC)
    params = {
        "audience": audience,
        "old": old,
        "new": new,
        "contact_id": contact_id,
        "customer_id": customer_id,
        "run_id": run_id,
        "now": now,
    }
    ledger = pl.DataFrame(
        [{"email": new, "op": "email_change", "batch": None, "status": "confirmed", "reason": reason}],
        schema=LEDGER_COLUMNS,
    )
    with state.connect() as session, session.transaction():
        session.execute(
            """INSERT INTO snapshot (audience, email, fields_hash, contact_id, status, reason, run_id, updated_at,
                                     removed_at, customer_id)
               SELECT audience, $new, fields_hash, coalesce($contact_id, contact_id), status, reason, $run_id, $now,
                      removed_at, coalesce($customer_id, customer_id)
               FROM snapshot WHERE audience = $audience AND email = $old
               ON CONFLICT (audience, email) DO UPDATE SET
                   fields_hash = excluded.fields_hash, contact_id = excluded.contact_id, status = excluded.status,
                   reason = excluded.reason, run_id = excluded.run_id, updated_at = excluded.updated_at,
                   removed_at = excluded.removed_at, customer_id = excluded.customer_id""",
            params,
        )
        where = {"audience": audience, "old": old, "new": new}
        session.execute(
            "DELETE FROM snapshot WHERE audience = $audience AND email = $old", {"audience": audience, "old": old}
        )
        session.execute("DELETE FROM journal WHERE audience = $audience AND email IN ($old, $new)", where)
        append_ledger(session, audience, run_id, ledger, now)


def settle(state: SyncState, audience: str, run_id: str, *, email: str, status: str, reason: str) -> None:
    """Clear the email change intent of `email` (it did not happen), with a ledger row saying why."""
    ledger = pl.DataFrame(
        [{"email": email, "op": "email_change", "batch": None, "status": status, "reason": reason}],
        schema=LEDGER_COLUMNS,
    )
    now = datetime.now(UTC)
    with state.connect() as session, session.transaction():
        session.execute(
            "DELETE FROM journal WHERE audience = $audience AND email = $email", {"audience": audience, "email": email}
        )
        append_ledger(session, audience, run_id, ledger, now)


def learn(state: SyncState, audience: str, rows: pl.DataFrame) -> int:
    """Fill the contact ids and customer ids (rows: email, contact_id, customer_id) the snapshot does not know
    yet; a known id is never overwritten, and nothing else about the row changes. Returns the rows given."""
    if rows.is_empty():
        return 0
    rows = rows.select(
        pl.col("email").cast(pl.String), pl.col("contact_id").cast(pl.String), pl.col("customer_id").cast(pl.String)
    )
    with state.connect() as session, session.transaction():
        session.stage("learnt_ids", rows)
        session.execute(
            """UPDATE snapshot SET
                   contact_id = coalesce(snapshot.contact_id, learnt_ids.contact_id),
                   customer_id = coalesce(snapshot.customer_id, learnt_ids.customer_id)
               FROM learnt_ids
               WHERE snapshot.audience = $audience AND snapshot.email = learnt_ids.email""",
            {"audience": audience},
        )
    return rows.height
