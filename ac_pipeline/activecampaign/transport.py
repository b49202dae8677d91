"""The way out to ActiveCampaign: one httpx pool, one rate-limit budget, retries, errors and stats.

Every request goes through `Transport.send`, which waits for the budget, sends, retries what usually passes
(5xx, timeouts, dropped connections) with exponential backoff and full jitter, waits out 429s without
spending a retry, and turns every other error answer into an exception that says what to do. The endpoints
(`ActiveCampaignClient`) are built on top and know nothing of this.

The retry loop is hand-written rather than built on tenacity: a 429 must re-send without counting as a
retry and must pause every other request too, and a plain `while` loop says that in a dozen lines, where
tenacity would need custom stop/wait/retry callbacks sharing state with the limiter.
"""

from __future__ import annotations

import functools
import json as jsonlib
import random
import re
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from ac_pipeline.activecampaign.errors import ActiveCampaignError, RetriesExhausted, error_from_answer
from ac_pipeline.activecampaign.ratelimit import BulkKind, RateLimiter, RateLimits, RateLimitTimeout

__all__ = ["ClientStats", "Transport", "encode_json"]

# Failures of the connection itself that usually pass. UnsupportedProtocol, LocalProtocolError and the
# like are bugs or configuration errors: retrying them would only delay the message.
_RETRYABLE_TRANSPORT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


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


@functools.cache
def _certificates() -> ssl.SSLContext:
    """httpx's default TLS context (certifi's CAs), made once per process: loading the CA file took 0.25 s
    of every client, and a run makes one per step that talks to ActiveCampaign. It is only read afterwards."""
    return httpx.create_ssl_context()


class Transport:
    """Requests to one ActiveCampaign account, at its rate limit, retried, with errors that say what to do.

    The API key goes into the `Api-Token` header of the httpx client and nowhere else: not into messages,
    reprs or stats. `http_transport` replaces httpx's network transport (tests use httpx.MockTransport).
    See `ActiveCampaignClient` for the other arguments.
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
        http_transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not api_key or not api_key.strip():
            raise ValueError("the ActiveCampaign API key is empty: set ACTIVECAMPAIGN_API_KEY")
        if max_retries < 0:
            raise ValueError(f"max_retries must be 0 or more, got {max_retries}")
        self.api_url = normalise_api_url(api_url)
        self.limits = limits or RateLimits()
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.rate_limit_timeout = rate_limit_timeout
        self.clock = clock
        self.sleep = sleep
        self._rng = random.Random(seed)
        self._limiter = RateLimiter(self.limits, clock=clock, sleep=sleep)
        self._stats = ClientStats()
        self._stats_lock = threading.Lock()
        self._http = httpx.Client(
            base_url=self.api_url + "/api/3/",
            headers={"Api-Token": api_key.strip(), "Accept": "application/json", "User-Agent": "ac-pipeline"},
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=10, max_keepalive_connections=10),
            transport=http_transport,
            verify=_certificates(),
        )

    def __repr__(self) -> str:
        return f"Transport(api_url={self.api_url!r}, limits={self.limits!r})"

    def close(self) -> None:
        self._http.close()

    @property
    def stats(self) -> ClientStats:
        """A copy of the totals so far."""
        with self._stats_lock:
            return replace(
                self._stats,
                requests_by_endpoint=dict(self._stats.requests_by_endpoint),
                responses_by_status=dict(self._stats.responses_by_status),
            )

    def request(
        self, method: str, path: str, params: dict[str, Any] | None = None, json: Any | None = None
    ) -> dict[str, Any]:
        """Send one request and return its parsed JSON body ({} when empty).

        `path` is relative to /api/3 ("lists", "/api/3/lists" and "contacts/12" all work).
        Raises AuthError, NotFoundError, ValidationError, ActiveCampaignError or RetriesExhausted.
        """
        method, path = method.upper(), api_path(path)
        body = None if json is None else encode_json(json)
        return self.parse_body(self.send(method, path, params=params, body=body), method, path)

    def send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: bytes | None = None,
        bulk: BulkKind | None = None,
        max_retries: int | None = None,
    ) -> httpx.Response:
        """Send until a final answer: return a 2xx response or raise the matching exception.

        `bulk` says which bulk-import budget the request also draws on. Re-sending a POST after a dropped
        connection may apply it twice. That is harmless for the calls the sync makes (contact/sync, bulk
        import and contactLists status are upserts), so POSTs are retried too.
        """
        max_retries = self.max_retries if max_retries is None else max_retries
        headers = {"Content-Type": "application/json"} if body is not None else None
        deadline = self.clock() + self.rate_limit_timeout
        endpoint = f"{method} {path_template(path)}"
        retries = 0
        bulk_throttled = 0
        while True:
            self._wait_for_budget(method, path, bulk, deadline)
            self._count_request(endpoint)
            server_delay = 0.0
            outcome = self._attempt(method, path, params=params, body=body, headers=headers)
            if bulk is not None:
                if isinstance(outcome, httpx.Response) and outcome.status_code == 429:
                    self._limiter.refused(bulk)
                else:
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
            self.sleep(max(server_delay, self._backoff(retries)))

    def parse_body(self, response: httpx.Response, method: str, path: str) -> dict[str, Any]:
        """A 2xx answer's JSON object ({} when the body is empty); ActiveCampaignError if it is not one."""
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

    def redact(self, text: str) -> str:
        """`text` with the API key blanked out, for anything the server said that goes into a message."""
        key = self._http.headers.get("Api-Token", "")
        return text.replace(key, "[api key]") if key else text

    # -- inside the loop ---------------------------------------------------------------------------------

    def _attempt(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None,
        body: bytes | None,
        headers: dict[str, str] | None,
    ) -> httpx.Response | str:
        """Send once: the response, or what went wrong with the connection if that usually passes."""
        try:
            return self._http.request(method, path, params=params, content=body, headers=headers)
        except _RETRYABLE_TRANSPORT_ERRORS as exc:
            with self._stats_lock:
                self._stats.transport_errors += 1
            return self.redact(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        except httpx.HTTPError as exc:
            failure = self.redact(f"{type(exc).__name__}: {exc}")
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

    def _error_body(self, response: httpx.Response) -> dict[str, Any]:
        """An error answer's JSON object ({} if none), with the key blanked out should the server echo it."""
        try:
            body = jsonlib.loads(self.redact(response.text))
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    def _count_request(self, endpoint: str) -> None:
        with self._stats_lock:
            self._stats.requests += 1
            by_endpoint = self._stats.requests_by_endpoint
            by_endpoint[endpoint] = by_endpoint.get(endpoint, 0) + 1

    def _count_response(self, status: int) -> None:
        with self._stats_lock:
            by_status = self._stats.responses_by_status
            by_status[status] = by_status.get(status, 0) + 1


# -- small helpers ---------------------------------------------------------------------------------------


def normalise_api_url(api_url: str) -> str:
    """The account's base URL without a trailing slash or /api/3; ValueError unless it is http(s)."""
    url = api_url.strip().rstrip("/")
    if url.endswith("/api/3"):
        url = url[: -len("/api/3")]
    if not url.startswith(("https://", "http://")):
        raise ValueError(
            f"the ActiveCampaign API URL must start with https://, got {url!r}: copy it from"
            " Settings -> Developer (like https://youraccount.api-us1.com) into ACTIVECAMPAIGN_API_URL"
        )
    return url


def api_path(path: str) -> str:
    """ "lists", "/lists" and "/api/3/lists" all become "lists"."""
    path = path.strip().lstrip("/")
    return path[len("api/3/") :] if path.startswith("api/3/") else path


def path_template(path: str) -> str:
    """ "contacts/12/contactLists" -> "contacts/{id}/contactLists", so that stats group by endpoint."""
    return re.sub(r"(?<=/)\d+(?=/|$)", "{id}", path.split("?", 1)[0])


def encode_json(value: Any) -> bytes:
    """The same compact encoding httpx uses, done here so that bulk import can measure the exact body."""
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
