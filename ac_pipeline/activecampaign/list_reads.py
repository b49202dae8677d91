"""Reading a list's members page by page, with the contactList records that say how each status came about.

Functions over the client's `request` (so a subclass that changes what `request` answers changes these reads too);
the client's methods (`iter_list_members`, `iter_list_memberships`, `contacts_with_memberships`) are their public
face.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ac_pipeline.activecampaign.errors import ActiveCampaignError

Request = Callable[..., dict[str, Any]]
"""`ActiveCampaignClient.request`: (method, path, params=...) -> the answer's JSON object."""

PAGE_SIZE = 100  # the API's maximum `limit`

# Membership statuses of a contact on a list: unconfirmed, active, unsubscribed, bounced.
LIST_STATUSES = (0, 1, 2, 3)


def to_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def member_pages(request: Request, list_id: str, status: int, include: str | None = None) -> Iterator[dict[str, Any]]:
    """The answers of GET contacts for one list (its id, as digits) and status, PAGE_SIZE contacts each, paged by
    `id_greater` (not offsets)."""
    if status not in LIST_STATUSES:
        raise ValueError(f"a list status is one of {LIST_STATUSES}, got {status!r}")
    params: dict[str, Any] = {"listid": list_id, "status": status, "orders[id]": "ASC", "limit": PAGE_SIZE}
    if include:
        params["include"] = include
    last_id = 0
    while True:
        body = request("GET", "contacts", params={**params, "id_greater": last_id})
        yield body
        contacts = body.get("contacts") or []
        if len(contacts) < PAGE_SIZE:
            return
        last_id = int(contacts[-1]["id"])


def list_memberships(request: Request, list_id: str, status: int) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Every contact with this list status, with its contactList record for the list, in id order.

    One request per 100 contacts (GET contacts with include=contactLists, paged by `id_greater`). The
    record says how the status came about (`udate`, `unsubreason`, `campaign`, `message`,
    `unsubscribeAutomation`...), which status 2 alone does not. A contact whose record shows another
    status is left out: whether the API filters `status` by the list's status or the contact's is not
    documented, and the record is the truth. ActiveCampaignError if a record is missing from the answer.
    """
    for page in member_pages(request, list_id, status, include="contactLists"):
        records = {
            str(record.get("contact")): record
            for record in page.get("contactLists") or []
            if str(record.get("list")) == list_id
        }
        for contact in page.get("contacts") or []:
            record = records.get(str(contact.get("id")))
            if record is None:
                raise ActiveCampaignError(
                    f"GET contacts?listid={list_id}&include=contactLists answered contact"
                    f" {contact.get('id')} without its contactList record for list {list_id}, so how"
                    " its status came about is unknown. ActiveCampaign may have changed the answer's shape.",
                    method="GET",
                    path="contacts",
                )
            if to_int(record.get("status")) == status:
                yield contact, record


def contacts_with_memberships(
    request: Request, ids: Sequence[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """These contacts and their side-loaded contactList records (all lists), in one request
    (`GET contacts?ids[]=..&include=contactLists`; at most PAGE_SIZE ids). ActiveCampaignError if the answer
    holds a contact not asked for: an answer that ignored the filter must not be taken for these people."""
    params = {"ids[]": list(ids), "include": "contactLists", "limit": len(ids)}
    answer = request("GET", "contacts", params=params)
    contacts = answer.get("contacts") or []
    strays = {str(c.get("id")) for c in contacts} - {str(i) for i in ids}
    if strays:
        raise ActiveCampaignError(
            f"GET contacts?ids[]=... answered {len(strays):,} contacts that were not asked for (e.g. "
            f"{sorted(strays)[0]}): the ids[] filter was not applied, so no consent check can rest on it",
            method="GET",
            path="contacts",
        )
    return contacts, answer.get("contactLists") or []
