"""Email changes in ActiveCampaign: a customer's contact takes their new address (audiences.identity plans
them), before the push sends anything else.

Each change is journaled before its request and committed after it (state.identity.move_row), one at a time
in `step` order, so that a chain frees each address before the next contact takes it. A contact id the
snapshot lacks is looked up by the old address and written down first: after a crash, the next push asks
ActiveCampaign which address that contact has now (`settle_leftovers`), and moves the row if the change went
through.

When a change cannot be made (the new address belongs to another contact, or the contact is gone), the push
falls back to what it does without customer ids: the old address leaves the list (if it was a member), the
new one joins it. A customer who unsubscribed themselves under the old address stays out: their new address
is recorded as opted out, and not subscribed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl

from ac_pipeline.activecampaign import ActiveCampaignClient, NotFoundError, ValidationError
from ac_pipeline.audiences.identity import EMAIL_CHANGE
from ac_pipeline.state import identity as identity_state
from ac_pipeline.state.store import SyncState
from ac_pipeline.sync.consent import OPTED_OUT
from ac_pipeline.sync.outcomes import PushResult

FALLBACK = "fallback"


def learn_customer_ids(state: SyncState, audience: str, members: pl.DataFrame, snapshot: pl.DataFrame) -> pl.DataFrame:
    """Give snapshot rows without a customer id (written before they were kept) the id of the member who holds
    their address now, and return the snapshot. No request: the customer id is the customer 360's fact."""
    if "customer_id" not in members.columns:
        return snapshot
    current = members.filter(pl.col("status") == "member") if "status" in members.columns else members
    unknown = snapshot.filter(pl.col("customer_id").is_null()).select("email")
    found = unknown.join(current.select("email", "customer_id"), on="email", how="inner").drop_nulls("customer_id")
    if found.is_empty():
        return snapshot
    identity_state.learn(state, audience, found.with_columns(contact_id=pl.lit(None, dtype=pl.String)))
    return state.snapshot(audience)


class EmailChanges:
    """The email changes of one push. See the module docstring."""

    def __init__(
        self,
        client: ActiveCampaignClient,
        state: SyncState,
        audience: str,
        run_id: str,
        result: PushResult,
        log: Callable[[str], None],
    ):
        self.client, self.state, self.audience, self.run_id = client, state, audience, run_id
        self.result, self.log = result, log

    def settle_leftovers(self, snapshot: pl.DataFrame) -> bool:
        """Email changes an earlier attempt journaled and never committed: ask ActiveCampaign which address each
        contact has now. Returns whether any was found (then the snapshot moved or the journal changed)."""
        leftovers = self.state.journal(self.audience).filter(pl.col("op") == EMAIL_CHANGE).get_column("email")
        if leftovers.is_empty():
            return False
        contact_ids = dict(snapshot.select("email", "contact_id").iter_rows())
        for old in leftovers:
            contact_id = contact_ids.get(old)
            if contact_id is None:  # the row moved or went since: nothing of this intent is left to settle
                self._settle(old, "settled", "the snapshot no longer has this address")
                continue
            try:
                now = str(self.client.get_contact(contact_id).get("email", "")).strip().lower()
            except NotFoundError:
                self._settle(old, "gone", f"contact {contact_id} no longer exists in ActiveCampaign")
                continue
            if now == old:
                self._settle(old, "settled", f"contact {contact_id} still has {old}: the change was never made")
                continue
            customer = snapshot.filter(pl.col("email") == old).get_column("customer_id")[0]
            identity_state.move_row(
                self.state,
                self.audience,
                self.run_id,
                old=old,
                new=now,
                contact_id=contact_id,
                customer_id=customer,
                reason=f"{old} -> {now}: contact {contact_id} has the new address (an earlier attempt made the "
                "change and stopped before recording it)",
            )
            self.result.settled_from_journal += 1
        self.log(f"{leftovers.len():,} email changes were in flight when an earlier attempt stopped; settled")
        return True

    def send(self, moves: pl.DataFrame) -> None:
        """Make each change (rows of audiences.identity.email_changes), in `step` order."""
        self.log(f"changing the email of {moves.height:,} contacts (their customers' addresses changed)")
        not_freed: set[str] = set()  # old addresses whose contact could not move away
        for row in moves.sort("step").iter_rows(named=True):
            why_not = self._change(row, held_still=row["email"] in not_freed)
            if why_not is None:
                self.result.email_changes += 1
            else:
                not_freed.add(row["previous_email"])
                self._fall_back(row, why_not)

    def _change(self, row: dict[str, Any], *, held_still: bool) -> str | None:
        """Make one change; None when ActiveCampaign confirmed it, else why it could not be made."""
        old, new = row["previous_email"], row["email"]
        if held_still:
            return f"{new} still belongs to the contact of another customer, whose own change could not be made"
        contact_id = row["contact_id"]
        if contact_id is None:
            found = self.client.find_contact(old)
            if found is None:
                return f"ActiveCampaign has no contact with {old} (deleted, or its address edited by hand)"
            contact_id = str(found["id"])
            # Written down before the intent: after a crash, the contact is asked about by id.
            identity_state.learn(
                self.state,
                self.audience,
                pl.DataFrame({"email": [old], "contact_id": [contact_id], "customer_id": [None]}),
            )
        self.state.journal_intents(self.audience, pl.DataFrame({"email": [old], "op": [EMAIL_CHANGE]}), self.run_id)
        try:
            self.client.change_email(contact_id, new)
        except ValidationError as refused:
            if refused.code == "duplicate":
                return f"{new} already belongs to another contact in ActiveCampaign"
            return f"ActiveCampaign refused the new address: {refused}"
        except NotFoundError:
            return f"contact {contact_id} no longer exists in ActiveCampaign"
        identity_state.move_row(
            self.state,
            self.audience,
            self.run_id,
            old=old,
            new=new,
            contact_id=contact_id,
            customer_id=row["customer_id"],
            reason=f"{old} -> {new}: customer {row['customer_id']}'s address changed; contact {contact_id} kept",
        )
        return None

    def _fall_back(self, row: dict[str, Any], why_not: str) -> None:
        """The change was not made: the push diffs again without it (old leaves, new joins). Say so in the
        ledger; a customer who opted out under the old address is kept out under the new one."""
        old, new = row["previous_email"], row["email"]
        self.result.email_changes_fallen_back += 1
        then = {
            "member": f"{old} leaves the list and {new} joins it",
            "removed": f"{new} joins the list ({old} stays removed)",
            "opted_out": f"{old} stays opted out, and {new} is not subscribed: the customer unsubscribed themselves",
        }[row["previous_status"]]
        reason = f"{old} -> {new} not made: {why_not}; {then}"
        self.log(reason)
        identity_state.settle(self.state, self.audience, self.run_id, email=old, status=FALLBACK, reason=reason)
        if row["previous_status"] == "opted_out":
            kept_out = f"{OPTED_OUT}: as {old}, before their address changed to {new}"
            self.state.commit_confirmed(
                self.audience,
                self.run_id,
                pl.DataFrame(
                    {"email": [new], "status": ["opted_out"], "reason": [kept_out], "customer_id": [row["customer_id"]]}
                ),
            )

    def _settle(self, old: str, status: str, reason: str) -> None:
        identity_state.settle(self.state, self.audience, self.run_id, email=old, status=status, reason=reason)
