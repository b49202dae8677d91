"""ActiveCampaign API v3 client: the calls an audience-list sync needs, at the account's rate limit.

One `ActiveCampaignClient` holds one httpx connection pool and one rate-limit budget. Every call goes
through `request`, which waits for the budget, sends, retries what usually passes (5xx, timeouts, dropped
connections) with exponential backoff and full jitter, waits out 429s without spending a retry, and turns
every other error answer into an exception that says what to do.

The retry loop is hand-written rather than built on tenacity: a 429 must re-send without counting as a
retry and must pause every other request too, and a plain `while` loop says that in a dozen lines, where
tenacity would need custom stop/wait/retry callbacks sharing state with the limiter.
"""

from __future__ import annotations

import json as jsonlib
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from ac_pipeline.activecampaign.errors import (
    ActiveCampaignError,
    NotFoundError,
    RetriesExhausted,
    api_message,
    error_from_answer,
)
from ac_pipeline.activecampaign.ratelimit import BulkKind, RateLimiter, RateLimits, RateLimitTimeout

__all__ = ["ActiveCampaignClient", "ClientStats", "ImportInfo"]

MAX_BULK_CONTACTS = 250
MAX_BULK_BODY_BYTES = 400_000
PAGE_SIZE = 100  # the API's maximum `limit`

# Failures of the connection itself that usually pass. UnsupportedProtocol, LocalProtocolError and the
# like are bugs or configuration errors: retrying them would only delay the message.
_RETRYABLE_TRANSPORT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)

_IMPORT_DONE = "completed"
_IMPORT_FAILED = frozenset({"failed", "interrupted"})


@dataclass
class ClientStats:
    """What the client did, for logs and Dagster metadata. `client.stats` returns a copy."""

    requests: int = 0  # every request sent, retries and re-sends after 429 included
    requests_by_endpoint: dict[str, int] = field(default_factory=dict)  # "GET contacts/{id}/contactLists": n
    responses_by_status: dict[int, int] = field(default_factory=dict)
    transport_errors: int = 0  # timeouts and dropped or refused connections
    retries: int = 0  # re-sends after a 5xx or transport error (these use up max_retries)
    rate_limited: int = 0  # 429s, and bulk import's "Rate limit exceeded." 400s (these do not)
    rate_limit_waits: int = 0  # times a request waited for the budget before going out
    rate_limit_wait_seconds: float = 0.0

    def as_metadata(self) -> dict[str, int | float]:
        """The totals as flat numbers, ready for `MaterializeResult(metadata=...)`."""
        return {
            "requests": self.requests,
            "transport_errors": self.transport_errors,
            "retries": self.retries,
            "rate_limited": self.rate_limited,
            "rate_limit_waits": self.rate_limit_waits,
            "rate_limit_wait_seconds": round(self.rate_limit_wait_seconds, 3),
        }


@dataclass(frozen=True)
class ImportInfo:
    """The state of one bulk-import batch, from `GET import/info`.

    `status` is None while ActiveCampaign still answers `false` (the first second or so after submitting).
    `success` holds the ids of contacts the batch created; `failure` the (lower-cased) emails it refused.
    """

    status: str | None
    success: list[str]
    failure: list[str]
    batch_id: str = ""

    @property
    def done(self) -> bool:
        return self.status == _IMPORT_DONE

    @property
    def failed(self) -> bool:
        """The batch failed or was interrupted: it is safe to submit again."""
        return self.status in _IMPORT_FAILED


class ActiveCampaignClient:
    """A client for one ActiveCampaign account.

    `api_url` is the account's API URL from Settings -> Developer (https://youraccount.api-us1.com).
    The API key goes into the `Api-Token` header and nowhere else: not into messages, reprs or stats.
    Use as a context manager, or call `close()`.

    `clock`, `sleep` and `transport` are for tests; `rate_limit_timeout` bounds the total time one call may
    spend waiting for the rate limit before it gives up with RetriesExhausted.
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
        if not api_key or not api_key.strip():
            raise ValueError("the ActiveCampaign API key is empty: set ACTIVECAMPAIGN_API_KEY")
        if max_retries < 0:
            raise ValueError(f"max_retries must be 0 or more, got {max_retries}")
        self.api_url = _normalise_api_url(api_url)
        self.limits = limits or RateLimits()
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.rate_limit_timeout = rate_limit_timeout
        self._clock = clock
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._limiter = RateLimiter(self.limits, clock=clock, sleep=sleep)
        self._stats = ClientStats()
        self._stats_lock = threading.Lock()
        self._http = httpx.Client(
            base_url=self.api_url + "/api/3/",
            headers={"Api-Token": api_key.strip(), "Accept": "application/json", "User-Agent": "ac-pipeline"},
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=10, max_keepalive_connections=10),
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"ActiveCampaignClient(api_url={self.api_url!r}, limits={self.limits!r})"

    def __enter__(self) -> ActiveCampaignClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @property
    def stats(self) -> ClientStats:
        with self._stats_lock:
            return replace(
                self._stats,
                requests_by_endpoint=dict(self._stats.requests_by_endpoint),
                responses_by_status=dict(self._stats.responses_by_status),
            )

    # -- the one way out -------------------------------------------------------------------------------

    def request(
        self, method: str, path: str, params: dict[str, Any] | None = None, json: Any | None = None
    ) -> dict[str, Any]:
        """Send one request and return its parsed JSON body ({} when empty).

        `path` is relative to /api/3 ("lists", "/api/3/lists" and "contacts/12" all work).
        Raises AuthError, NotFoundError, ValidationError, ActiveCampaignError or RetriesExhausted.
        """
        method, path = method.upper(), _api_path(path)
        body = None if json is None else _encode_json(json)
        response = self._send(method, path, params=params, body=body)
        return self._parse_body(response, method, path)

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None,
        body: bytes | None,
        bulk: BulkKind | None = None,
        max_retries: int | None = None,
    ) -> httpx.Response:
        """Send until a final answer: return a 2xx response or raise the matching exception.

        Re-sending a POST after a dropped connection may apply it twice. That is harmless for the calls the
        sync makes (contact/sync, bulk import and contactLists status are upserts), so POSTs are retried too.
        """
        max_retries = self.max_retries if max_retries is None else max_retries
        headers = {"Content-Type": "application/json"} if body is not None else None
        deadline = self._clock() + self.rate_limit_timeout
        endpoint = f"{method} {_path_template(path)}"
        retries = 0
        bulk_throttled = 0
        while True:
            self._wait_for_budget(method, path, bulk, deadline)
            self._count_request(endpoint)
            server_delay = 0.0
            outcome = self._attempt(method, path, params=params, body=body, headers=headers)
            if bulk is not None:
                self._limiter.answered(bulk)
            if isinstance(outcome, str):
                last_error = outcome
            else:
                response = outcome
                self._count_response(response.status_code)
                retry_after = _retry_after(response)
                if response.status_code == 429:
                    # The server's window is full: hold back every request, then re-send without using a retry.
                    self._back_off_for_rate_limit(1.0 if retry_after is None else retry_after, bulk_only=False)
                    continue
                if bulk is not None and _is_bulk_rate_limit(response.status_code, self._error_body(response)):
                    bulk_throttled += 1
                    pause = self._bulk_pause(bulk, bulk_throttled) if retry_after is None else retry_after
                    self._back_off_for_rate_limit(pause, bulk_only=True)
                    continue
                if response.is_success:
                    return response
                if response.status_code < 500:
                    raise error_from_answer(
                        response.status_code,
                        self._error_body(response),
                        method,
                        path,
                        location=response.headers.get("location"),
                    )
                last_error = f"HTTP {response.status_code} {response.reason_phrase}".strip()
                server_delay = retry_after or 0.0
            if retries >= max_retries:
                raise self._retries_exhausted(method, path, retries, last_error)
            retries += 1
            with self._stats_lock:
                self._stats.retries += 1
            self._sleep(max(server_delay, self._backoff(retries)))

    def _attempt(
        self, method: str, path: str, *, params: dict[str, Any] | None, body: bytes | None, headers: dict | None
    ) -> httpx.Response | str:
        """Send once: the response, or what went wrong with the connection if that usually passes."""
        try:
            return self._http.request(method, path, params=params, content=body, headers=headers)
        except _RETRYABLE_TRANSPORT_ERRORS as exc:
            with self._stats_lock:
                self._stats.transport_errors += 1
            return self._redact(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        except httpx.HTTPError as exc:
            failure = self._redact(f"{type(exc).__name__}: {exc}")
        # Not worth retrying (e.g. an unsupported URL scheme). Raised outside the `except` so that the httpx
        # exception, which holds the request and so the Api-Token header, is not kept as its context.
        raise ActiveCampaignError(
            f"{method} {path} could not be sent ({failure}). Check ACTIVECAMPAIGN_API_URL ({self.api_url}).",
            method=method,
            path=path,
        )

    def _wait_for_budget(self, method: str, path: str, bulk: BulkKind | None, deadline: float) -> None:
        try:
            waited = self._limiter.acquire(bulk, deadline=deadline)
        except RateLimitTimeout as exc:
            raise RetriesExhausted(
                f"{method} {path} waited {exc.waited:.0f}s for ActiveCampaign's rate limit without getting"
                f" through (limit of {self.rate_limit_timeout:.0f}s). The account's budget is shared by every"
                " key and integration of the account: check whether something else is using it, then run again.",
                method=method,
                path=path,
                attempts=0,
                last_error="rate limit",
            ) from None
        if waited > 0:
            with self._stats_lock:
                self._stats.rate_limit_waits += 1
                self._stats.rate_limit_wait_seconds += waited

    def _back_off_for_rate_limit(self, seconds: float, *, bulk_only: bool) -> None:
        with self._stats_lock:
            self._stats.rate_limited += 1
        self._limiter.pause(seconds, bulk_only=bulk_only)

    def _bulk_pause(self, bulk: BulkKind, times: int) -> float:
        """How long to hold bulk imports back when the server says "Rate limit exceeded." without Retry-After.

        Starts at one slot of the per-minute budget and doubles, up to the whole minute.
        """
        per_minute = (
            self.limits.bulk_imports_per_minute if bulk == "multi" else self.limits.single_contact_imports_per_minute
        )
        return min(60.0, 60.0 / per_minute * 2 ** (times - 1))

    def _backoff(self, retry: int) -> float:
        """Exponential backoff with full jitter: uniform in [0, min(max, base * 2^(retry-1))]."""
        return self._rng.uniform(0.0, min(self.backoff_max, self.backoff_base * 2 ** (retry - 1)))

    def _retries_exhausted(self, method: str, path: str, retries: int, last_error: str) -> RetriesExhausted:
        hint = "ActiveCampaign may be down or overloaded: run again later; what was confirmed so far is kept."
        if last_error.startswith("ConnectError"):
            hint = f"Check that ACTIVECAMPAIGN_API_URL ({self.api_url}) is right and reachable."
        return RetriesExhausted(
            f"{method} {path} failed after {retries + 1} attempts ({retries} retries);"
            f" last error: {last_error}. {hint}",
            method=method,
            path=path,
            attempts=retries + 1,
            last_error=last_error,
        )

    def _parse_body(self, response: httpx.Response, method: str, path: str) -> dict[str, Any]:
        if not response.content.strip():
            return {}
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            content_type = response.headers.get("content-type", "no content type")
            raise ActiveCampaignError(
                f"{method} {path} answered HTTP {response.status_code} with a body that is not a JSON object"
                f" ({content_type}). Check that ACTIVECAMPAIGN_API_URL is the account's API URL from"
                " Settings -> Developer, like https://youraccount.api-us1.com.",
                method=method,
                path=path,
                status_code=response.status_code,
            )
        return body

    def _error_body(self, response: httpx.Response) -> dict[str, Any]:
        """An error answer's JSON object ({} if none), with the key blanked out should the server echo it."""
        try:
            body = jsonlib.loads(self._redact(response.text))
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    def _redact(self, text: str) -> str:
        key = self._http.headers.get("Api-Token", "")
        return text.replace(key, "[api key]") if key else text

    def _count_request(self, endpoint: str) -> None:
        with self._stats_lock:
            self._stats.requests += 1
            by_endpoint = self._stats.requests_by_endpoint
            by_endpoint[endpoint] = by_endpoint.get(endpoint, 0) + 1

    def _count_response(self, status: int) -> None:
        with self._stats_lock:
            by_status = self._stats.responses_by_status
            by_status[status] = by_status.get(status, 0) + 1

    def _paginate(self, path: str, key: str, params: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every item of a collection, PAGE_SIZE at a time by offset."""
        offset = 0
        while True:
            body = self.request("GET", path, params={**(params or {}), "limit": PAGE_SIZE, "offset": offset})
            page = body.get(key) or []
            yield from page
            offset += len(page)
            total = _to_int(body.get("meta", {}).get("total"))
            if len(page) < PAGE_SIZE or (total is not None and offset >= total):
                return

    # -- account ---------------------------------------------------------------------------------------

    def check_connection(self) -> dict[str, Any]:
        """Prove that the URL, the key and its permissions work: read one list and the user groups.

        Returns {"api_url", "lists_total", "groups"} (group titles). Fails fast (2 retries at most).
        """
        retries = min(2, self.max_retries)
        try:
            lists = self._parse_body(
                self._send("GET", "lists", params={"limit": 1}, body=None, max_retries=retries), "GET", "lists"
            )
            groups = self._parse_body(
                self._send("GET", "groups", params={"limit": PAGE_SIZE}, body=None, max_retries=retries),
                "GET",
                "groups",
            )
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
            "lists_total": _to_int(lists.get("meta", {}).get("total")) or len(lists.get("lists") or []),
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

    def set_list_status(self, contact_id: int | str, list_id: int | str, status: int) -> dict[str, Any]:
        """Subscribe (1) or unsubscribe (2) a contact on a list; return the contactList.

        Careful: status 1 re-subscribes someone who unsubscribed themselves.
        """
        if status not in (1, 2):
            raise ValueError(f"status must be 1 (subscribe) or 2 (unsubscribe), got {status!r}")
        contact_list = {"list": int(_id(list_id)), "contact": int(_id(contact_id)), "status": status}
        body = self.request("POST", "contactLists", json={"contactList": contact_list})
        return body.get("contactList", body)

    def contact_lists(self, contact_id: int | str) -> list[dict[str, Any]]:
        """The contact's list memberships (list, status...)."""
        return self.request("GET", f"contacts/{_id(contact_id)}/contactLists").get("contactLists") or []

    def add_contact_tag(self, contact_id: int | str, tag_id: int | str) -> dict[str, Any]:
        contact_tag = {"contact": str(_id(contact_id)), "tag": str(_id(tag_id))}
        return self.request("POST", "contactTags", json={"contactTag": contact_tag})["contactTag"]

    def iter_list_members(self, list_id: int | str, status: int = 1) -> Iterator[dict[str, Any]]:
        """Every contact with this status on the list, in id order, paged by `id_greater` (not offsets)."""
        last_id = 0
        while True:
            params = {
                "listid": _id(list_id),
                "status": status,
                "orders[id]": "ASC",
                "id_greater": last_id,
                "limit": PAGE_SIZE,
            }
            page = self.request("GET", "contacts", params=params).get("contacts") or []
            yield from page
            if len(page) < PAGE_SIZE:
                return
            last_id = int(page[-1]["id"])

    # -- bulk import -----------------------------------------------------------------------------------

    def bulk_import(self, contacts: list[dict[str, Any]], *, exclude_automations: bool = True) -> str:
        """Queue up to 250 contacts (bulk-import shape, snake_case) and return the batch id.

        Raises ValueError before sending anything if the batch is too big, and BulkImportRejected when
        ActiveCampaign refuses the whole batch; its `failures` index into `contacts`.
        """
        if not contacts:
            raise ValueError("bulk_import needs at least one contact")
        if len(contacts) > MAX_BULK_CONTACTS:
            raise ValueError(
                f"bulk_import takes at most {MAX_BULK_CONTACTS} contacts per request, got {len(contacts)}:"
                " split them into several batches"
            )
        body = _encode_json({"contacts": contacts, "exclude_automations": exclude_automations})
        if len(body) >= MAX_BULK_BODY_BYTES:
            raise ValueError(
                f"bulk_import body would be {len(body):,} bytes, ActiveCampaign accepts under"
                f" {MAX_BULK_BODY_BYTES:,}: send fewer contacts per request (or fewer fields per contact)"
            )
        kind: BulkKind = "single" if len(contacts) == 1 else "multi"
        response = self._send("POST", "import/bulk_import", params=None, body=body, bulk=kind)
        answer = self._parse_body(response, "POST", "import/bulk_import")
        batch_id = answer.get("batchId")
        if not batch_id:
            raise ActiveCampaignError(
                f"bulk import answered without a batchId: {self._redact(api_message(answer))!r}",
                method="POST",
                path="import/bulk_import",
                status_code=response.status_code,
            )
        return str(batch_id)

    def import_info(self, batch_id: str) -> ImportInfo:
        """Where a bulk-import batch stands; poll until `done` or `failed` (or use `wait_for_import`)."""
        body = self.request("GET", "import/info", params={"batchId": batch_id})
        status = body.get("status")
        return ImportInfo(
            status=str(status) if status else None,
            success=[str(contact_id) for contact_id in body.get("success") or []],
            failure=[str(email).lower() for email in body.get("failure") or []],
            batch_id=batch_id,
        )

    def wait_for_import(self, batch_id: str, *, poll_interval: float = 1.0, timeout: float = 600.0) -> ImportInfo:
        """Poll `import_info` until the batch completed, failed or was interrupted."""
        deadline = self._clock() + timeout
        while True:
            info = self.import_info(batch_id)
            if info.done or info.failed:
                return info
            if self._clock() + poll_interval > deadline:
                raise ActiveCampaignError(
                    f"import batch {batch_id} is still {info.status or 'not started'} after {timeout:.0f}s:"
                    " ActiveCampaign may be busy. Poll it again later with import_info; do not resubmit it.",
                    method="GET",
                    path="import/info",
                )
            self._sleep(poll_interval)


# -- small helpers ---------------------------------------------------------------------------------------


def _normalise_api_url(api_url: str) -> str:
    url = api_url.strip().rstrip("/")
    if url.endswith("/api/3"):
        url = url[: -len("/api/3")]
    if not url.startswith(("https://", "http://")):
        raise ValueError(
            f"the ActiveCampaign API URL must start with https://, got {url!r}: copy it from"
            " Settings -> Developer (like https://youraccount.api-us1.com) into ACTIVECAMPAIGN_API_URL"
        )
    return url


def _api_path(path: str) -> str:
    """ "lists", "/lists" and "/api/3/lists" all become "lists"."""
    path = path.strip().lstrip("/")
    return path[len("api/3/") :] if path.startswith("api/3/") else path


def _path_template(path: str) -> str:
    """ "contacts/12/contactLists" -> "contacts/{id}/contactLists", so that stats group by endpoint."""
    return re.sub(r"(?<=/)\d+(?=/|$)", "{id}", path.split("?", 1)[0])


def _encode_json(value: Any) -> bytes:
    # The same compact encoding httpx uses, done here so that bulk_import can measure the exact body.
    return jsonlib.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _is_bulk_rate_limit(status: int, body: dict[str, Any]) -> bool:
    """Bulk import's throttling answer: 400 {"message": "Rate limit exceeded.", ...}."""
    return status == 400 and "rate limit" in str(body.get("message", "")).lower()


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds from a `Retry-After` header ("2", "0.012"); None when absent or not a number."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare enough that the default wait will do
    return max(0.0, seconds)


def _to_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _id(value: int | str) -> str:
    text = str(value).strip()
    if not text.isdigit():
        raise ValueError(f"ActiveCampaign ids are numbers, got {value!r}")
    return text


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "list"
