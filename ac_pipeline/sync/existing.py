"""`sync_mode: update_only`: the push sends only to contacts the account already holds.

Whether an address is a contact is asked of ActiveCampaign at push time, not taken from the snapshot or the
last read-back: a contact deleted since, or one created since by a form, would otherwise be created or missed.
The cost is bounded: one request per address (`GET contacts?email=`), or one per 100 contacts of the account
(paging through all of them by id), whichever is fewer, plus one request for the account's count.

A customer who is not a contact is skipped: counted in the push's metadata and written to the ledger with the
reason (op as diffed, status `skipped`), never silently dropped, and looked up again by the next sync (they may
have become a contact by then). Bulk import and contact/sync are upserts, so a contact deleted by hand in the
seconds between the look-up and the send would be created again: the window is one push, not the time since
the last read-back.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from ac_pipeline.activecampaign import ActiveCampaignClient
from ac_pipeline.activecampaign.client import PAGE_SIZE
from ac_pipeline.state.store import SyncState

NOT_A_CONTACT = "not a contact in the account: sync_mode update_only never creates contacts"
ARRIVING = ("add", "readd", "update")


def existing_contacts(client: ActiveCampaignClient, emails: list[str]) -> dict[str, str]:
    """Email -> contact id, for the emails (normalised, lower-case) that are contacts of the account."""
    if not emails:
        return {}
    answer = client.request("GET", "contacts", params={"limit": 1})
    pages = -(-int((answer.get("meta") or {}).get("total") or 0) // PAGE_SIZE)
    if len(emails) <= pages:
        found = {email: client.find_contact(email) for email in emails}
        return {email: str(contact["id"]) for email, contact in found.items() if contact is not None}
    wanted, ids, last_id = set(emails), {}, 0
    while True:
        page = (
            client.request(
                "GET", "contacts", params={"orders[id]": "ASC", "id_greater": last_id, "limit": PAGE_SIZE}
            ).get("contacts")
            or []
        )
        for contact in page:
            email = str(contact.get("email") or "").strip().lower()
            if email in wanted:
                ids[email] = str(contact["id"])
        if len(page) < PAGE_SIZE:
            return ids
        last_id = int(page[-1]["id"])


def keep_existing(
    client: ActiveCampaignClient,
    state: SyncState,
    audience: str,
    run_id: str,
    todo: pl.DataFrame,
    log: Callable[[str], None],
) -> tuple[pl.DataFrame, int]:
    """The changes to send to contacts that exist (their contact ids filled in), and how many were skipped; the
    skipped are written to the ledger."""
    arriving = todo.filter(pl.col("op").is_in(ARRIVING))
    if arriving.is_empty():
        return todo, 0
    ids = existing_contacts(client, arriving.get_column("email").to_list())
    found = pl.DataFrame(
        {"email": list(ids), "_found_id": list(ids.values())}, schema={"email": pl.String, "_found_id": pl.String}
    )
    checked = todo.join(found, on="email", how="left", maintain_order="left")
    missing = checked.filter(pl.col("op").is_in(ARRIVING) & pl.col("_found_id").is_null())
    if missing.height:
        ledger = missing.select("email", "op", status=pl.lit("skipped"), reason=pl.lit(NOT_A_CONTACT))
        state.commit_confirmed(audience, run_id, pl.DataFrame(schema={"email": pl.String}), ledger)
        log(f"{missing.height:,} customers are not contacts of the account; update_only skips them (see the ledger)")
    kept = checked.filter(~pl.col("op").is_in(ARRIVING) | pl.col("_found_id").is_not_null())
    kept = kept.with_columns(contact_id=pl.coalesce("_found_id", "contact_id")).drop("_found_id")
    return kept, missing.height
