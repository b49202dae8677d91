"""Who unsubscribed a contact from a list: the sync, or the person (or someone else on their behalf).

Status 2 alone does not say. ActiveCampaign's `contactLists` record does: an unsubscribe through a
campaign's link carries the `campaign` and `message`, often an `unsubreason` and the person's
`ip4Unsub`; an automation's carries `unsubscribeAutomation`; an API or bulk-import unsubscribe (ours)
carries none of them. And its `udate` says when.

The rule, on the side of the person: an unsubscribe is ours only when the record carries no mark of
anyone else AND its `udate` falls where our own unsubscribe does (not before we meant to send it, not
after we saw it confirmed). Anything else, or a record we cannot read, is theirs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ac_pipeline.activecampaign import ActiveCampaignClient

# ActiveCampaign's dates have whole seconds and its clock is not ours: allow this much either way.
CLOCK_SKEW = timedelta(seconds=2)

OPTED_OUT = "unsubscribed from the list themselves; never re-subscribed by the sync"


def _blank(value: Any) -> bool:
    return value is None or str(value).strip() in ("", "0")


def parse_date(value: Any) -> datetime | None:
    """An ActiveCampaign date (`2018-09-28T13:50:41-05:00`) as an aware UTC datetime; None if absent."""
    if _blank(value):
        return None
    try:
        parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def someone_elses_mark(record: dict[str, Any]) -> str | None:
    """What in a status-2 record shows the unsubscribe was not the sync's, or None if nothing does."""
    if not _blank(record.get("campaign")) or not _blank(record.get("message")):
        return f"through the unsubscribe link of campaign {record.get('campaign')}"
    if not _blank(record.get("unsubscribeAutomation")):
        return f"by automation {record.get('unsubscribeAutomation')}"
    if not _blank(record.get("unsubreason")):
        return f"giving the reason {str(record.get('unsubreason'))[:80]!r}"
    if not _blank(record.get("ip4Unsub")):
        return "from their own address (ip4Unsub is set)"
    return None


@dataclass(frozen=True)
class Verdict:
    ours: bool
    reason: str  # why not ours (for the ledger and the snapshot), or what made it ours


def judge_unsubscribe(
    record: dict[str, Any] | None, *, not_before: datetime | None = None, not_after: datetime | None = None
) -> Verdict:
    """Whether the unsubscribe this list record shows is one the sync made.

    `not_before`: when the sync meant to send its unsubscribe (the journal); `not_after`: when it saw it
    confirmed (the snapshot). At least one bound must be known, or nothing proves the unsubscribe ours.
    """
    if record is None or str(record.get("status")) != "2":
        return Verdict(False, "not unsubscribed from the list")
    mark = someone_elses_mark(record)
    if mark is not None:
        return Verdict(False, f"{OPTED_OUT}: unsubscribed {mark}")
    when = parse_date(record.get("udate"))
    if when is None:
        return Verdict(False, f"{OPTED_OUT}: the list record does not say when they unsubscribed")
    if not_before is None and not_after is None:
        return Verdict(False, f"{OPTED_OUT}: no record of the sync unsubscribing them, so it was not the sync")
    if not_before is not None and when < not_before - CLOCK_SKEW:
        return Verdict(False, f"{OPTED_OUT}: unsubscribed at {when:%Y-%m-%d %H:%M:%S}Z, before the sync meant to")
    if not_after is not None and when > not_after + CLOCK_SKEW:
        return Verdict(
            False, f"{OPTED_OUT}: unsubscribed again at {when:%Y-%m-%d %H:%M:%S}Z, after the sync removed them"
        )
    return Verdict(True, "the list record shows the sync's own unsubscribe")


def list_record(client: ActiveCampaignClient, contact_id: Any, list_id: str) -> dict[str, Any] | None:
    """The contact's `contactLists` record for the list, or None when they are not on it."""
    for membership in client.contact_lists(contact_id):
        if str(membership.get("list")) == list_id:
            return membership
    return None
