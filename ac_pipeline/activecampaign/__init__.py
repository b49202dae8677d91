"""ActiveCampaign API v3 client: rate-limited, retrying, with errors that say what to do.

client.py holds the endpoints (`ActiveCampaignClient`), transport.py the request loop under them (rate
limit, retries, error answers, stats), bulk_import.py bulk import's limits and polling, errors.py the
exceptions and ratelimit.py the account's budget.
"""

from ac_pipeline.activecampaign.bulk_import import ImportInfo
from ac_pipeline.activecampaign.client import ActiveCampaignClient
from ac_pipeline.activecampaign.errors import (
    ActiveCampaignError,
    AuthError,
    BulkImportFailure,
    BulkImportRejected,
    FieldError,
    NotFoundError,
    RetriesExhausted,
    ValidationError,
)
from ac_pipeline.activecampaign.ratelimit import RateLimiter, RateLimits
from ac_pipeline.activecampaign.transport import ClientStats

__all__ = [
    "ActiveCampaignClient",
    "ActiveCampaignError",
    "AuthError",
    "BulkImportFailure",
    "BulkImportRejected",
    "ClientStats",
    "FieldError",
    "ImportInfo",
    "NotFoundError",
    "RateLimiter",
    "RateLimits",
    "RetriesExhausted",
    "ValidationError",
]
