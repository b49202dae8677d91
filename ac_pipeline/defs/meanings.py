"""What each metadata key of the audience and ActiveCampaign assets means, for the `what_these_mean` table
that defs/metadata.py adds to each materialization. A `*` entry covers the keys made from a name (a group, a
skip, a client figure); within one asset's table the first matching entry wins."""

_COMMON = {
    "seconds": "how long the step took to compute this, in seconds",
    "list": "the ActiveCampaign list this audience is synced to (audiences.yaml)",
    "preview": "the first rows, as they were computed (columns empty in every row shown are left out)",
    "sync_mode": "the audience's sync mode: `mirror` adds and removes, `upsert` and `update_only` remove nobody",
}

# What the IO manager adds when it stores an asset's rows: one of the two, by where they are stored.
STORED_AT = {
    "path": "where the rows are stored: a Parquet file",
    "url": "where the rows are stored: an object in S3-compatible storage (no password shown)",
}

AUDIENCE_MEMBERS = {
    **_COMMON,
    **STORED_AT,
    "members": "people in the audience (one per email): who the list should hold",
    "rejected": "rows with an email ActiveCampaign would refuse (the reason is in not_members_by_reason)",
    "duplicates": "rows whose email another row of the audience already has",
    "excluded": "rows left out by a suppression table or an excluded audience",
    "selected_rows": "customer 360 rows the audience's condition selected, members or not",
    "not_members_by_reason": "why selected rows are not members, most common first",
    "groups": "the audience's groups: members in each, and how many moved group in this run",
    "group_*_moved": "members of this group that were in another group before this run",
    "group_*": "members in this group",
    "control": "members of a group that is not sent (a control group)",
}

AUDIENCE_CHANGES = {
    **_COMMON,
    **STORED_AT,
    "adds": "people new to the list",
    "readds": "people back in the audience after the sync removed them",
    "updates": "people whose fields sent to ActiveCampaign changed",
    "removals": "people who left the audience: unsubscribed from the list (held back by the removal guard when "
    "too many)",
    "email_changes": "customers whose address changed: their contact keeps its id and takes the new address",
    "changes": "all changes above, together",
    "members": "people in the audience now",
    "synced_members": "people the list holds after the last sync ActiveCampaign confirmed (the snapshot)",
    "skipped_opted_out": "people who unsubscribed themselves: never added back",
    "field_modes": "fields not simply overwritten, and how they are written (`fill`, `never_clear`)",
    "skipped_*": "changes held back by the audience's sync mode or field modes",
}

ACTIVECAMPAIGN_SYNC = {
    **_COMMON,
    "adds": "adds this push had to send (not yet confirmed before it)",
    "readds": "re-adds this push had to send",
    "updates": "updates this push had to send",
    "removals": "unsubscribes this push had to send",
    "confirmed": "contacts ActiveCampaign confirmed; the snapshot now holds them",
    "opted_out": "contacts found opted out (by their own hand): recorded, never sent again",
    "failed": "contacts that failed for a passing reason: the next try sends them again",
    "rejected": "contacts ActiveCampaign refused for good, each with its reason in the ledger",
    "skipped": "changes a previous attempt already had confirmed: not sent again",
    "requests": "requests sent to ActiveCampaign",
    "batches": "bulk imports sent",
    "batches_resubmitted": "bulk imports sent again after ActiveCampaign failed them",
    "batches_called_back": "bulk imports ActiveCampaign reported through their callback, so nobody had to ask",
    "contacts_per_minute": "changes sent per minute",
    "requests_per_change": "requests per change sent (lower is cheaper on the account's rate limit)",
    "list_id": "the list's id in ActiveCampaign",
    "resynced": "whether the snapshot was rebuilt from the list first (the list was new, recreated or moved)",
    "list_created": "whether this push created the list",
    "fields_created": "custom fields this push created in ActiveCampaign",
    "settled_from_journal": "batches an interrupted earlier push left in flight, settled from ActiveCampaign",
    "email_changes": "contacts whose address was changed in place",
    "email_changes_fallen_back": "address changes sent as a removal and an add (the old contact was gone)",
    "destination": "the ActiveCampaign account written to (its address; the built-in sandbox by default)",
    "skipped_*": "changes held back by the audience's sync mode or field modes",
    "client_*": "the API client's own figures: retries, transport errors, rate-limit waits",
}

DRY_RUN = {
    **_COMMON,
    "dry_run": "nothing was sent: this is what a sync would send now",
    "requests": "requests the sync would send, about",
    "plan": "the plan: changes per operation and how they would be sent, with sample payloads",
    "bulk import: *": "changes that would go in bulk imports, by operation",
    "one by one: *": "changes that would be sent one contact at a time, by operation",
    "group_*": "members of this group the sync would send",
}

LIST_MEMBERS = {
    **_COMMON,
    **STORED_AT,
    "contacts": "contacts on the list, whatever their status",
    "unconfirmed": "contacts on the list awaiting double opt-in",
    "active": "contacts subscribed to the list",
    "unsubscribed": "contacts unsubscribed from the list (by the sync or by themselves)",
    "bounced": "contacts whose address bounced",
    "drift_opted_out": "people who opted out since the last read",
    "drift_bounced": "people whose address bounced since the last read",
    "drift_gone": "contacts deleted from the list by hand: the next sync sends them again",
    "drift_unmanaged": "contacts added to the list by hand",
    "drift_edited": "contacts whose mapped fields were edited by hand: the next sync sets them back",
    "adopted": "contacts the snapshot did not know, found on the list and taken in",
    "contacts_read": "contacts read in this read-back",
    "full_read": "whether the whole list was read (otherwise only what changed since the last read)",
    "read": "why the read-back read what it read",
    "resynced": "whether the snapshot was rebuilt from the list",
    "requests": "requests sent to ActiveCampaign",
    "drift_sample": "a few contacts of each kind of drift",
    "list_id": "the list's id in ActiveCampaign",
}
