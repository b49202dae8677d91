"""ActiveCampaign API v3 client: the calls an audience-list sync needs, at the account's rate limit.

`ActiveCampaignClient` is the endpoints: account check, lists and user groups, custom fields and tags,
contacts, list memberships (contactLists) and bulk import. Each is a few lines over `Transport.request`
(transport.py), which owns the connection pool, the rate-limit budget, retries, error answers and stats.
Bulk import's size rules and batch polling live in bulk_import.py, the paged reads of a list's members in
list_reads.py.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from ac_pipeline.activecampaign import bulk_import as bulk
from ac_pipeline.activecampaign import list_reads as reads
from ac_pipeline.activecampaign.bulk_import import MAX_BULK_BODY_BYTES, MAX_BULK_CONTACTS, ImportInfo
from ac_pipeline.activecampaign.errors import (
    ActiveCampaignError,
    NotFoundError,
    RetriesExhausted,
    api_message,
    error_from_answer,
)
from ac_pipeline.activecampaign.list_reads import PAGE_SIZE, to_int
from ac_pipeline.activecampaign.ratelimit import BulkKind, RateLimiter, RateLimits, RateLimitTimeout
from ac_pipeline.activecampaign.transport import ClientStats, Transport, api_path

# The client's own names first; then names this module offered before the split into transport.py and
# bulk_import.py, kept importable from here because other modules import them from here.
__all__ = [
    "MAX_BULK_BODY_BYTES",
    "MAX_BULK_CONTACTS",
    "PAGE_SIZE",
    "ActiveCampaignClient",
    "ActiveCampaignError",
    "BulkKind",
    "ClientStats",
    "ImportInfo",
    "NotFoundError",
    "RateLimitTimeout",
    "RateLimiter",
    "RateLimits",
    "RetriesExhausted",
    "api_message",
    "error_from_answer",
]


class ActiveCampaignClient:
    """A client for one ActiveCampaign account.

    `api_url` is the account's API URL from Settings -> Developer (https://youraccount.api-us1.com).
    The API key goes into the `Api-Token` header and nowhere else: not into messages, reprs or stats.
    Use as a context manager, or call `close()`.

    `clock`, `sleep` and `transport` (an httpx transport) are for tests; `rate_limit_timeout` bounds the
    total time one call may spend waiting for the rate limit before it gives up with RetriesExhausted.
    """

    def __init__(
        self,
        api_url: str,
        api_key: str,
        *,
        limits: RateLimits | None = None,
        timeout: float = 30.0,
        max_retries: int = 8,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        seed: int | None = None,
        rate_limit_timeout: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._transport = Transport(
            api_url,
            api_key,
            limits=limits,
            timeout=timeout,
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            seed=seed,
            rate_limit_timeout=rate_limit_timeout,
            clock=clock,
            sleep=sleep,
            http_transport=transport,
        )

    def __repr__(self) -> str:
        return f"ActiveCampaignClient(api_url={self.api_url!r}, limits={self.limits!r})"

    def __enter__(self) -> ActiveCampaignClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._transport.close()

    @property
    def api_url(self) -> str:
        return self._transport.api_url

    @property
    def limits(self) -> RateLimits:
        return self._transport.limits

    @property
    def max_retries(self) -> int:
        return self._transport.max_retries

    @property
    def stats(self) -> ClientStats:
        """A copy of the request totals so far (see ClientStats)."""
        return self._transport.stats

    def request(
        self, method: str, path: str, params: dict[str, Any] | None = None, json: Any | None = None
    ) -> dict[str, Any]:
        """Send one request and return its parsed JSON body ({} when empty).

        `path` is relative to /api/3 ("lists", "/api/3/lists" and "contacts/12" all work).
        Raises AuthError, NotFoundError, ValidationError, ActiveCampaignError or RetriesExhausted.
        """
        return self._transport.request(method, path, params=params, json=json)

    def _paginate(self, path: str, key: str, params: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every item of a collection, PAGE_SIZE at a time by offset."""
        offset = 0
        while True:
            body = self.request("GET", path, params={**(params or {}), "limit": PAGE_SIZE, "offset": offset})
            page = body.get(key) or []
            yield from page
            offset += len(page)
            total = to_int(body.get("meta", {}).get("total"))
            if len(page) < PAGE_SIZE or (total is not None and offset >= total):
                return

    # -- account ---------------------------------------------------------------------------------------

    def check_connection(self) -> dict[str, Any]:
        """Prove that the URL, the key and its permissions work: read one list and the user groups.

        Returns {"api_url", "lists_total", "groups"} (group titles). Fails fast (2 retries at most).
        """
        retries = min(2, self.max_retries)

        def read(path: str, limit: int) -> dict[str, Any]:
            response = self._transport.send("GET", path, params={"limit": limit}, max_retries=retries)
            return self._transport.parse_body(response, "GET", path)

        try:
            lists = read("lists", 1)
            groups = read("groups", PAGE_SIZE)
        except NotFoundError as exc:
            raise ActiveCampaignError(
                f"{exc.method} {exc.path} answered 404 at {self.api_url}: ACTIVECAMPAIGN_API_URL is probably not"
                " the account's API URL. Copy it from Settings -> Developer (https://youraccount.api-us1.com).",
                method=exc.method,
                path=exc.path,
                status_code=404,
            ) from None
        return {
            "api_url": self.api_url,
            "lists_total": to_int(lists.get("meta", {}).get("total")) or len(lists.get("lists") or []),
            "groups": [group.get("title") for group in groups.get("groups") or []],
        }

    # -- lists and user groups -------------------------------------------------------------------------

    def find_list(self, name: str) -> dict[str, Any] | None:
        """The list with exactly this name, or None. (The API's name filter may also match similar names.)"""
        for candidate in self._paginate("lists", "lists", {"filters[name]": name}):
            if candidate.get("name") == name:
                return candidate
        return None

    def get_list(self, list_id: int | str) -> dict[str, Any]:
        """One list by id; NotFoundError if it does not exist or the key's user group cannot see it."""
        return self.request("GET", f"lists/{_id(list_id)}")["list"]

    def create_list(
        self, name: str, *, sender_url: str, sender_reminder: str, stringid: str | None = None
    ) -> dict[str, Any]:
        """Create a list. It stays invisible in the app until granted to a user group (`grant_list_to_group`)."""
        new_list = {
            "name": name,
            "stringid": stringid or _slug(name),
            "sender_url": sender_url,
            "sender_reminder": sender_reminder,
        }
        return self.request("POST", "lists", json={"list": new_list})["list"]

    def list_groups(self) -> list[dict[str, Any]]:
        return list(self._paginate("groups", "groups"))

    def find_group(self, title: str) -> dict[str, Any] | None:
        """The user group with exactly this title, or None."""
        return next((group for group in self.list_groups() if group.get("title") == title), None)

    def grant_list_to_group(self, list_id: int | str, group_id: int | str) -> dict[str, Any]:
        """Let a user group see a list (POST listGroups)."""
        list_group = {"listid": int(_id(list_id)), "groupid": int(_id(group_id))}
        return self.request("POST", "listGroups", json={"listGroup": list_group})["listGroup"]

    # -- custom fields and tags ------------------------------------------------------------------------

    def list_fields(self) -> list[dict[str, Any]]:
        """Every custom field (id, title, perstag, type...)."""
        return list(self._paginate("fields", "fields"))

    def list_tags(self) -> list[dict[str, Any]]:
        return list(self._paginate("tags", "tags"))

    def create_tag(self, name: str) -> dict[str, Any]:
        tag = {"tag": name, "tagType": "contact", "description": ""}
        return self.request("POST", "tags", json={"tag": tag})["tag"]

    def ensure_tags(self, names: Iterable[str]) -> dict[str, str]:
        """Map each tag name to its id, creating the tags that do not exist yet.

        Names match regardless of case, as ActiveCampaign treats "VIP" and "vip" as one tag.
        """
        existing = {str(tag.get("tag", "")).casefold(): str(tag["id"]) for tag in self.list_tags()}
        ids: dict[str, str] = {}
        for name in dict.fromkeys(names):
            key = name.casefold()
            if key not in existing:
                existing[key] = str(self.create_tag(name)["id"])
            ids[name] = existing[key]
        return ids

    # -- contacts --------------------------------------------------------------------------------------

    def find_contact(self, email: str) -> dict[str, Any] | None:
        """The contact with this email (compared without regard to case), or None."""
        contacts = self.request("GET", "contacts", params={"email": email}).get("contacts") or []
        wanted = email.strip().lower()
        return next((c for c in contacts if str(c.get("email", "")).lower() == wanted), None)

    def get_contact(self, contact_id: int | str) -> dict[str, Any]:
        """One contact by id; NotFoundError if it does not exist (deleted)."""
        return self.request("GET", f"contacts/{_id(contact_id)}")["contact"]

    def change_email(self, contact_id: int | str, email: str) -> dict[str, Any]:
        """Give the contact a new email address (PUT contacts/{id}); it keeps its id, lists and history.

        ValidationError with code `duplicate` when another contact has the address; NotFoundError when the
        contact does not exist."""
        return self.request("PUT", f"contacts/{_id(contact_id)}", json={"contact": {"email": email}})["contact"]

    def sync_contact(
        self,
        email: str,
        *,
        first_name: str | None = None,
        last_name: str | None = None,
        phone: str | None = None,
        field_values: dict[int | str, str] | None = None,
    ) -> dict[str, Any]:
        """Create or update the contact with this email (POST contact/sync); return the contact."""
        contact: dict[str, Any] = {"email": email}
        for key, value in (("firstName", first_name), ("lastName", last_name), ("phone", phone)):
            if value is not None:
                contact[key] = value
        if field_values:
            contact["fieldValues"] = [{"field": str(fid), "value": value} for fid, value in field_values.items()]
        return self.request("POST", "contact/sync", json={"contact": contact})["contact"]

    def add_contact_tag(self, contact_id: int | str, tag_id: int | str) -> dict[str, Any]:
        # The types of the published request schema: integers here (its example's strings are taken too).
        contact_tag = {"contact": int(_id(contact_id)), "tag": int(_id(tag_id))}
        return self.request("POST", "contactTags", json={"contactTag": contact_tag})["contactTag"]

    # -- list memberships (contactLists) ---------------------------------------------------------------

    def set_list_status(self, contact_id: int | str, list_id: int | str, status: int) -> dict[str, Any]:
        """Subscribe (1) or unsubscribe (2) a contact on a list; return ActiveCampaign's contactList record.

        The record (`list`, `contact`, `status`, `udate`, `unsubreason`...) is what ActiveCampaign stored:
        keep its `udate` to prove later that an unsubscribe was ours. Careful: status 1 re-subscribes
        someone who unsubscribed themselves.
        """
        if status not in (1, 2):
            raise ValueError(f"status must be 1 (subscribe) or 2 (unsubscribe), got {status!r}")
        # The types of the published request schema: strings here (its example's integers are taken too).
        contact_list = {"list": _id(list_id), "contact": _id(contact_id), "status": str(status)}
        answer = self.request("POST", "contactLists", json={"contactList": contact_list})
        record = answer.get("contactList")
        if not isinstance(record, dict):
            raise ActiveCampaignError(
                f"POST contactLists (contact {contact_id}, list {list_id}, status {status}) answered without"
                " the contactList record, so whether the status changed is unknown: read the contact's"
                " memberships (contact_lists) before acting on it.",
                method="POST",
                path="contactLists",
            )
        return record

    def contact_lists(self, contact_id: int | str) -> list[dict[str, Any]]:
        """The contact's list memberships (list, status...)."""
        return self.request("GET", f"contacts/{_id(contact_id)}/contactLists").get("contactLists") or []

    def get_dated(self, path: str, params: dict[str, Any]) -> tuple[dict[str, Any], datetime | None]:
        """GET one page, with the server's clock from the answer's `Date` header (None when absent): a
        read-back asks next time for what changed since then, by the server's clock, not ours."""
        response = self._transport.send("GET", api_path(path), params=params)
        date = response.headers.get("date")
        return self._transport.parse_body(response, "GET", path), parsedate_to_datetime(date) if date else None

    def iter_list_members(self, list_id: int | str, status: int = 1) -> Iterator[dict[str, Any]]:
        """Every contact with this status on the list, in id order, paged by `id_greater` (not offsets)."""
        for page in reads.member_pages(self.request, _id(list_id), status):
            yield from page.get("contacts") or []

    def iter_list_memberships(self, list_id: int | str, status: int) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        """Every contact with this list status, with its contactList record for the list, in id order (one
        request per 100 contacts; see `list_reads.list_memberships`)."""
        return reads.list_memberships(self.request, _id(list_id), status)

    def contacts_with_memberships(self, ids: Sequence[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """These contacts and their side-loaded contactList records (all lists), in one request (at most
        PAGE_SIZE ids; see `list_reads.contacts_with_memberships`)."""
        return reads.contacts_with_memberships(self.request, ids)

    # -- bulk import -----------------------------------------------------------------------------------

    def bulk_import(
        self,
        contacts: list[dict[str, Any]],
        *,
        exclude_automations: bool = True,
        callback: dict[str, Any] | None = None,
    ) -> str:
        """Queue up to 250 contacts (bulk-import shape, snake_case) and return the batch id. `callback`: the
        request ActiveCampaign makes when the batch has run (`import_callbacks.callback_body`).

        Raises ValueError before sending anything if the batch is too big, and BulkImportRejected when
        ActiveCampaign refuses the whole batch; its `failures` index into `contacts`.
        """
        return bulk.submit(self._transport, contacts, exclude_automations=exclude_automations, callback=callback)

    def bulk_import_json(
        self,
        contacts: Sequence[str],
        *,
        exclude_automations: bool = True,
        callback: dict[str, Any] | None = None,
    ) -> str:
        """`bulk_import` for contacts already encoded, each the JSON text of one bulk-import contact."""
        return bulk.submit_json(self._transport, contacts, exclude_automations=exclude_automations, callback=callback)

    def import_info(self, batch_id: str) -> ImportInfo:
        """Where a bulk-import batch stands; poll until `done` or `failed` (or use `wait_for_import`)."""
        return bulk.import_info(self._transport, batch_id)

    def wait_for_import(self, batch_id: str, *, poll_interval: float = 1.0, timeout: float = 600.0) -> ImportInfo:
        """Poll `import_info` until the batch completed, failed or was interrupted."""
        return bulk.wait_for_import(self._transport, batch_id, poll_interval=poll_interval, timeout=timeout)


# -- small helpers ---------------------------------------------------------------------------------------


def _id(value: int | str) -> str:
    text = str(value).strip()
    if not text.isdigit():
        raise ValueError(f"ActiveCampaign ids are numbers, got {value!r}")
    return text


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "list"
