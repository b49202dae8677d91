"""Exceptions raised by the ActiveCampaign client.

Each one says what went wrong and what to do about it. None of them carries the API key, nor any httpx
object (an httpx request holds the `Api-Token` header), so they are safe to log and to show in Dagster.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ActiveCampaignError",
    "AuthError",
    "BulkImportFailure",
    "BulkImportRejected",
    "NotFoundError",
    "RetriesExhausted",
    "ValidationError",
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
