"""ActiveCampaign API v3 client: rate-limited, retrying, with errors that say what to do."""

from ac_pipeline.activecampaign.client import ActiveCampaignClient, ClientStats, ImportInfo
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
