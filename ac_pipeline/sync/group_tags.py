"""A member moved between two groups by a share change loses the old group's tag.

Bulk import and contact/sync only add tags, so the new group's tag arrives with the update the move causes (the
group tag is part of `fields_hash`), and the old one is taken off here: one request to find the contact's tags
(GET contacts?email=...&include=contactTags) and one DELETE per stale tag, for movers only, whose number is what
the share change moved. Without it an A/B contact would be in both variants, and the read-back would see drift.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from ac_pipeline.activecampaign import ActiveCampaignClient
from ac_pipeline.audiences.config import Audience


def strip_moved_group_tags(
    client: ActiveCampaignClient, audience: Audience, sent: pl.DataFrame, log: Callable[[str], None]
) -> int:
    """Take other groups' tags off the contacts in `sent` (change rows) that moved group; the number taken off."""
    if "moved_from" not in sent.columns or not audience.group_tags:
        return 0
    movers = sent.filter(pl.col("moved_from").is_not_null() & (pl.col("op") != "remove")).get_column("email")
    if movers.is_empty():
        return 0
    own = {name: tag.casefold() for name, tag in audience.group_tags.items()}
    # Tag id -> name, for the audience's group tags (names match regardless of case, as in ActiveCampaign).
    names = {str(tag["id"]): str(tag.get("tag", "")).casefold() for tag in client.list_tags()}
    names = {tag_id: name for tag_id, name in names.items() if name in own.values()}
    groups = dict(sent.select("email", "group").iter_rows())
    removed = 0
    for email in movers:
        body = client.request("GET", "contacts", params={"email": email, "include": "contactTags"})
        for link in body.get("contactTags") or []:
            tag_id = str(link.get("tag"))
            if tag_id in names and names[tag_id] != own.get(groups.get(email) or ""):
                client.request("DELETE", f"contactTags/{link['id']}")
                removed += 1
    if removed:
        log(f"took {removed:,} old group tags off {movers.len():,} members a share change moved")
    return removed
