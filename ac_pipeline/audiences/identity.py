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
    known = snapshot.filter(pl.col("status").is_in(MOVABLE) & pl.col("customer_id").is_not_null())
    if known.is_empty():
        return pl.DataFrame(schema=COLUMNS)
    # Rows are matched on 64-bit hashes (several times cheaper than strings), then the strings are compared on
    # the few rows left. A collision can only make a customer look settled: no change, the fallback.
    current = members.filter(pl.col("status") == "member") if "status" in members.columns else members
    current = (
        current.select("email", customer_id=pl.col("customer_id").cast(pl.String))
        .drop_nulls("customer_id")
        .with_columns(_k=pl.struct("email", "customer_id").hash(), _c=pl.col("customer_id").hash())
    )
    # A customer with a row of theirs at their address did not move (older rows of theirs are history).
    settled = snapshot.select(_k=pl.struct("email", pl.col("customer_id").cast(pl.String)).hash())
    unsettled = current.filter(~pl.col("_k").is_in(settled.get_column("_k").implode()))
    candidates = (
        unsettled.join(
            known.select(
                "contact_id",
                _c=pl.col("customer_id").hash(),
                _customer="customer_id",
                _rank=pl.col("status").replace_strict(MOVABLE, list(range(len(MOVABLE)))),
                previous_email="email",
                previous_status="status",
            ),
            on="_c",
            how="inner",
        )
        .filter((pl.col("customer_id") == pl.col("_customer")) & (pl.col("email") != pl.col("previous_email")))
        .sort("_rank", "previous_email")
        .unique("customer_id", keep="first", maintain_order=True)
    )
    # A customer id on two member rows names nobody for sure.
    ambiguous = current.filter(pl.col("_c").is_in(candidates.get_column("_c").implode())).filter(
        pl.col("customer_id").is_duplicated()
    )
    candidates = candidates.join(ambiguous.select("customer_id"), on="customer_id", how="anti")
    if candidates.is_empty():
        return pl.DataFrame(schema=COLUMNS)
    held = candidates.filter(pl.col("email").is_in(snapshot.get_column("email").implode())).get_column("email")
    steps = _steps(dict(candidates.select("previous_email", "email").iter_rows()), set(held))
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
    out. `moves` maps old to new address (each appears once on each side); `held`: the new addresses the
    snapshot has a row at."""
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
    olds = changes.get_column("previous_email")
    leaving = pl.col("email").is_in(olds.implode())
    arriving = (
        snapshot.filter(leaving)
        .join(changes.select(email="previous_email", _new="email"), on="email")
        .with_columns(email="_new")
        .drop("_new")
    )
    return pl.concat([snapshot.filter(~leaving), arriving], how="vertical")
