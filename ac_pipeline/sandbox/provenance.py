"""Who or what unsubscribed a contact from a list, and what the contactLists record shows for it.

A real account fills the unsubscribe fields of a membership (`unsubreason`, `campaign`, `message`, `ip4Unsub`,
`unsubscribeAutomation`) according to how the unsubscribe happened; the sandbox stores them with the membership.
What each kind fills is described in docs/sandbox.md ("Unsubscribe provenance"), with what is assumed.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

# `unsubscribed_by` values, shown by the admin surface.
BY_CONTACT = "contact"  # the person, through a campaign email's unsubscribe link
BY_API = "api"  # POST /contactLists status 2
BY_IMPORT = "import"  # bulk import `unsubscribe`
BY_AUTOMATION = "automation"  # an automation's "unsubscribe from list" action
BY_USER = "user"  # a user of the account, by hand in the app (the contact's page or the list)


def ip4_number(address: str) -> int:
    """A dotted IPv4 address as ActiveCampaign stores and shows it (`ip4Unsub`): the unsigned 32-bit number.

    ValueError if it is not an IPv4 address."""
    return int(ipaddress.IPv4Address(address))


@dataclass(frozen=True)
class Unsubscribe:
    """How a membership came to status 2; the columns the store keeps for it."""

    by: str
    # The API has no reason to give: its records show "" (the published POST /contactLists answer has a string).
    reason: str | None = ""
    campaign: int | None = None
    message: int | None = None
    ip4: int = 0
    automation: int | None = None

    @classmethod
    def by_campaign_link(cls, campaign: int, message: int, reason: str | None, ip: str) -> Unsubscribe:
        return cls(BY_CONTACT, reason=reason, campaign=campaign, message=message, ip4=ip4_number(ip))

    @classmethod
    def by_automation(cls, automation: int) -> Unsubscribe:
        return cls(BY_AUTOMATION, automation=automation)


# A subscribed membership: no unsubscribe fields.
SUBSCRIBED = Unsubscribe(by="")
API_UNSUBSCRIBE = Unsubscribe(BY_API)
IMPORT_UNSUBSCRIBE = Unsubscribe(BY_IMPORT)
USER_UNSUBSCRIBE = Unsubscribe(BY_USER)

# Set a contact's status on a list with how it was unsubscribed (above). Status 1 clears the
# unsubscribe columns (membership_params leaves them empty) and records how the subscription was made
# (`sourceid`), which an unsubscribe leaves alone. An integration (API, import) or a user unsubscribing someone
# already unsubscribed changes nothing: the first unsubscribe, and its provenance, stand.
MEMBERSHIP_UPSERT = (
    "INSERT INTO memberships (contact_id, list_id, status, unsubscribed_by, unsubreason, campaign_id, message_id,"
    " ip4_unsub, automation_id, sourceid, sdate, udate) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (contact_id, list_id) DO UPDATE SET status = excluded.status, udate = excluded.udate,"
    " unsubscribed_by = excluded.unsubscribed_by, unsubreason = excluded.unsubreason,"
    " campaign_id = excluded.campaign_id, message_id = excluded.message_id, ip4_unsub = excluded.ip4_unsub,"
    " automation_id = excluded.automation_id,"
    " sourceid = CASE WHEN excluded.status = 1 THEN excluded.sourceid ELSE memberships.sourceid END"
    " WHERE NOT (memberships.status = 2 AND excluded.status = 2 AND excluded.unsubscribed_by IN ('api', 'import', 'user'))"
)


def membership_params(
    contact_id: int, list_id: int, status: int, unsubscribe: Unsubscribe | None, now: str, sourceid: int = 0
) -> tuple[Any, ...]:
    """The MEMBERSHIP_UPSERT parameters; `unsubscribe` says how a status 2 came about (None for status 1)."""
    how = unsubscribe if status == 2 and unsubscribe is not None else SUBSCRIBED
    unsubscribed = (how.by or None, how.reason, how.campaign, how.message, how.ip4, how.automation)
    return (contact_id, list_id, status, *unsubscribed, sourceid, now, now)
