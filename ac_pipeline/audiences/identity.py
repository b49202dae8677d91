"""Identity follows the customer: which contacts change their email instead of leaving and joining.

The snapshot remembers the customer 360's id of each contact (`customer_id`). When a customer's address in the
audience is not the one their contact has, the contact's email is changed in ActiveCampaign (by contact id:
it keeps its history, automations and list status) and the snapshot row moves to the new address. What the
contact then needs (new fields, a re-add) follows from the moved row like any other change.

A move is planned only when it can succeed without taking an address from a contact that keeps it:
- the new address is in no snapshot row, or in the row of a contact that moves away first (a chain: a to b
  while b goes to c sends b to c, then a to b; `step` orders them);
- a cycle (a swap: a to b while b goes to a) would need a temporary address written into ActiveCampaign, which
  could fire automations or reach a stranger's mailbox: it is not planned, and the addresses stay with the
  contacts that hold them (today's behaviour: each gets the fields of the customer who now has its address);
- a row without a customer id (a snapshot from before they were kept) is never moved: today's behaviour.

Consent: a moved row keeps its status, so a contact that unsubscribed itself (`opted_out`) stays opted out at
its new address, and a contact the sync removed (`removed`) is re-added only through the usual proof.
"""

from __future__ import annotations

import polars as pl

EMAIL_CHANGE = "email_change"
# Rows that describe a contact ActiveCampaign holds, by preference when a customer has several (a consent
# first: a customer who opted out under any address keeps that contact). `rejected` rows may have no contact.
MOVABLE = ("opted_out", "member", "removed")

COLUMNS: dict[str, pl.DataType] = {
    "op": pl.String(),
    "email": pl.String(),
    "contact_id": pl.String(),
    "customer_id": pl.String(),
    "previous_email": pl.String(),
    "previous_status": pl.String(),
    "step": pl.Int64(),
}


def email_changes(members: pl.DataFrame, snapshot: pl.DataFrame) -> pl.DataFrame:
    """The email changes (COLUMNS) that take the snapshot's contacts to the members' addresses, in `step` order.

    members: audience_members (its `member` rows count) with `customer_id`; snapshot: the sync snapshot with
    `customer_id`. Either without the column: no changes."""
    if "customer_id" not in members.columns or "customer_id" not in snapshot.columns:
        return pl.DataFrame(schema=COLUMNS)
    current = members.filter(pl.col("status") == "member") if "status" in members.columns else members
    current = (
        current.select("email", customer_id=pl.col("customer_id").cast(pl.String))
        .drop_nulls("customer_id")
        .filter(~pl.col("customer_id").is_duplicated())  # a customer id on two rows names nobody for sure
    )
    known = (
        snapshot.filter(pl.col("status").is_in(MOVABLE) & pl.col("customer_id").is_not_null())
        .with_columns(_rank=pl.col("status").replace_strict(MOVABLE, list(range(len(MOVABLE)))))
        .select("customer_id", "contact_id", "_rank", previous_email="email", previous_status="status")
    )
    # A customer whose address already has a row of theirs did not move (older rows of theirs are history).
    settled = current.join(snapshot.select("email", "customer_id"), on=["email", "customer_id"], how="semi")
    candidates = (
        current.join(settled, on="customer_id", how="anti")
        .join(known, on="customer_id", how="inner")
        .filter(pl.col("email") != pl.col("previous_email"))
        .sort("_rank", "previous_email")
        .unique("customer_id", keep="first", maintain_order=True)
    )
    steps = _steps(dict(candidates.select("previous_email", "email").iter_rows()), set(snapshot.get_column("email")))
    if not steps:
        return pl.DataFrame(schema=COLUMNS)
    return (
        candidates.with_columns(
            op=pl.lit(EMAIL_CHANGE),
            step=pl.col("previous_email").replace_strict(steps, default=None, return_dtype=pl.Int64),
        )
        .drop_nulls("step")
        .sort("step", "email")
        .select(list(COLUMNS))
    )


def _steps(moves: dict[str, str], held: set[str]) -> dict[str, int]:
    """old address -> step of its move, for the moves that can be made: step 0 goes to a free address, step n
    to the address the move at step n-1 frees. Moves into an address that stays held, or in a cycle, are left
    out. `moves` maps old to new address (each appears once on each side); `held`: the snapshot's addresses."""
    steps: dict[str, int] = {}
    blocked: set[str] = set()
    for start in moves:
        path: list[str] = []
        current = start
        while current not in steps and current not in blocked:
            if current in path:  # a cycle: every move on it waits for another
                break
            path.append(current)
            target = moves[current]
            if target not in held:
                steps[current] = 0
                path.pop()
                break
            if target not in moves:  # held by a row that stays
                break
            current = target
        base = steps.get(current)
        for old in reversed(path):
            if base is None:
                blocked.add(old)
            else:
                base += 1
                steps[old] = base
    return steps


def moved(snapshot: pl.DataFrame, changes: pl.DataFrame) -> pl.DataFrame:
    """The snapshot as it will be once the email changes are made: each moved row at its new address."""
    if changes.is_empty():
        return snapshot
    to = changes.select(email="previous_email", _new="email")
    return snapshot.join(to, on="email", how="left").with_columns(email=pl.coalesce("_new", "email")).drop("_new")
