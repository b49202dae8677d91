"""Exceptions raised by the ActiveCampaign client.

Each one says what went wrong and what to do about it. None of them carries the API key, nor any httpx
object (an httpx request holds the `Api-Token` header), so they are safe to log and to show in Dagster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "ActiveCampaignError",
    "AuthError",
    "BulkImportFailure",
    "BulkImportRejected",
    "NotFoundError",
    "RetriesExhausted",
    "ValidationError",
    "api_message",
    "error_from_answer",
]


class ActiveCampaignError(Exception):
    """Base class: a request to ActiveCampaign did not give the answer the caller needed.

    Raised as such for answers no subclass covers (a plain 400, an unexpected 4xx, a body that is not JSON).
    """

    def __init__(
        self, message: str, *, method: str | None = None, path: str | None = None, status_code: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.method = method
        self.path = path
        self.status_code = status_code


class AuthError(ActiveCampaignError):
    """HTTP 401/403: the API key is wrong, or its user lacks permission for what was asked."""


class NotFoundError(ActiveCampaignError):
    """HTTP 404: the list, contact or other object does not exist (or the key's user cannot see it)."""


@dataclass(frozen=True)
class FieldError:
    """One entry of a 422 answer's `errors` array."""

    title: str
    detail: str
    code: str | None
    field: str | None  # the last part of source.pointer, e.g. "email" for "/data/attributes/email"


class ValidationError(ActiveCampaignError):
    """HTTP 422: ActiveCampaign refused the values sent, e.g. an email that already exists or is malformed."""

    def __init__(
        self, message: str, *, errors: list[FieldError], method: str, path: str, status_code: int = 422
    ) -> None:
        super().__init__(message, method=method, path=path, status_code=status_code)
        self.errors = errors
        first = errors[0] if errors else FieldError(title="", detail="", code=None, field=None)
        self.code = first.code
        self.title = first.title
        self.field = first.field


@dataclass(frozen=True)
class BulkImportFailure:
    """Why bulk import refused one contact: `index` is its position in the list sent (0-based)."""

    index: int | None
    reason: str


class BulkImportRejected(ActiveCampaignError):
    """Bulk import refused the whole batch (HTTP 400, nothing queued) because some contacts did not validate.

    `failures` names each offending contact by its index in the list passed to `bulk_import`, so the caller
    can record those rows as rejected and send the rest again.
    """

    def __init__(self, message: str, *, failures: list[BulkImportFailure], method: str, path: str) -> None:
        super().__init__(message, method=method, path=path, status_code=400)
        self.failures = failures

    @property
    def failed_indexes(self) -> set[int]:
        return {failure.index for failure in self.failures if failure.index is not None}


class RetriesExhausted(ActiveCampaignError):
    """The request kept failing for reasons that usually pass (5xx, timeouts, dropped connections, rate limit).

    Everything confirmed before this point stays confirmed; running the step again later resumes.
    """

    def __init__(self, message: str, *, method: str, path: str, attempts: int, last_error: str) -> None:
        super().__init__(message, method=method, path=path)
        self.attempts = attempts
        self.last_error = last_error


# -- from an error answer to the exception ----------------------------------------------------------------


def error_from_answer(
    status: int, body: dict[str, Any], method: str, path: str, *, location: str | None = None
) -> ActiveCampaignError:
    """The exception for a final (not retried) error answer: `status` and its JSON `body` ({} if none)."""
    said = f": {api_message(body)}" if api_message(body) else ""
    if status in (401, 403):
        resource = path.split("/", 1)[0]
        return AuthError(
            f"ActiveCampaign refused {method} {path} (HTTP {status}{said}). Check ACTIVECAMPAIGN_API_KEY and"
            f" that the key's user has permission for {resource}.",
            method=method,
            path=path,
            status_code=status,
        )
    if status == 404:
        return NotFoundError(
            f"ActiveCampaign found nothing for {method} {path} (HTTP 404{said}).",
            method=method,
            path=path,
            status_code=status,
        )
    if status == 422:
        errors = _field_errors(body)
        return ValidationError(
            "; ".join(_describe(error, method, path) for error in errors)
            or f"ActiveCampaign rejected {method} {path} (HTTP 422)",
            errors=errors,
            method=method,
            path=path,
        )
    if status == 400 and path == "import/bulk_import" and isinstance(body.get("failureReasons"), list):
        failures = _bulk_failures(body["failureReasons"])
        shown = "; ".join(f"#{failure.index}: {failure.reason}" for failure in failures[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        return BulkImportRejected(
            f"Bulk import rejected the whole batch, nothing was queued{said}. {len(failures)} contact(s) failed"
            f" validation: {shown}{more}. Fix or leave out those contacts and send the rest again.",
            failures=failures,
            method=method,
            path=path,
        )
    if 300 <= status < 400:
        return ActiveCampaignError(
            f"{method} {path} was redirected (HTTP {status}) to {location or '?'}. Set ACTIVECAMPAIGN_API_URL"
            " to the account's API URL exactly as Settings -> Developer shows it.",
            method=method,
            path=path,
            status_code=status,
        )
    return ActiveCampaignError(
        f"ActiveCampaign rejected {method} {path} (HTTP {status}{said}). The request is not retried: the"
        " values sent need fixing.",
        method=method,
        path=path,
        status_code=status,
    )


def api_message(body: dict[str, Any]) -> str:
    """The human part of an error body: `message`, or the titles and details in `errors`."""
    if isinstance(body.get("message"), str) and body["message"]:
        return body["message"]
    errors = body.get("errors")
    if not isinstance(errors, list):
        return ""
    texts = [f"{e.get('title') or ''} {e.get('detail') or ''}".strip() for e in errors if isinstance(e, dict)]
    return "; ".join(filter(None, texts))


def _field_errors(body: dict[str, Any]) -> list[FieldError]:
    """The entries of a 422 body: {"errors": [{"title", "detail", "code", "source": {"pointer"}}]}."""
    errors = body.get("errors")
    if not isinstance(errors, list):
        return []
    result = []
    for error in errors:
        if not isinstance(error, dict):
            continue
        source = error.get("source")
        pointer = source.get("pointer") if isinstance(source, dict) else None
        result.append(
            FieldError(
                title=str(error.get("title") or ""),
                detail=str(error.get("detail") or ""),
                code=str(error["code"]) if error.get("code") is not None else None,
                field=str(pointer).rstrip("/").rsplit("/", 1)[-1] if pointer else None,
            )
        )
    return result


def _describe(error: FieldError, method: str, path: str) -> str:
    """ "ActiveCampaign rejected email: Email address already exists in the system (code duplicate)"."""
    text = error.title or "invalid value"
    if error.detail:
        text += f" ({error.detail})"
    code = f" (code {error.code})" if error.code else ""
    return f"ActiveCampaign rejected {error.field or f'{method} {path}'}: {text}{code}"


def _bulk_failures(reasons: list[Any]) -> list[BulkImportFailure]:
    """failureReasons: [{"contact": index, "failureReason": "..."}], or plain strings about the whole batch."""
    failures = []
    for reason in reasons:
        if isinstance(reason, dict):
            index = str(reason.get("contact"))
            failures.append(
                BulkImportFailure(
                    index=int(index) if index.isdigit() else None, reason=str(reason.get("failureReason", ""))
                )
            )
        else:
            failures.append(BulkImportFailure(index=None, reason=str(reason)))
    return failures
