"""The longest value ActiveCampaign keeps in each contact field, as the sandbox enforces it.

The numbers live in `ac_pipeline.activecampaign.limits`, shared with the pipeline's own pre-send check, so the
sandbox and the pipeline cannot disagree. Pure: the endpoints turn a problem into a 422, bulk import into a
per-contact failure.
"""

from __future__ import annotations

from ac_pipeline.activecampaign.limits import (
    MAX_CUSTOM_FIELD_VALUE_LENGTH,
    MAX_EMAIL_LENGTH,
    MAX_FIRST_NAME_LENGTH,
    MAX_LAST_NAME_LENGTH,
    MAX_PHONE_LENGTH,
)

# Attribute names as /contacts takes them (camelCase) and as bulk import takes them (snake_case).
CONTACT_LIMITS = {
    "email": MAX_EMAIL_LENGTH,
    "firstName": MAX_FIRST_NAME_LENGTH,
    "lastName": MAX_LAST_NAME_LENGTH,
    "phone": MAX_PHONE_LENGTH,
}
BULK_LIMITS = {
    "email": MAX_EMAIL_LENGTH,
    "first_name": MAX_FIRST_NAME_LENGTH,
    "last_name": MAX_LAST_NAME_LENGTH,
    "phone": MAX_PHONE_LENGTH,
}
FIELD_VALUE_LIMIT = MAX_CUSTOM_FIELD_VALUE_LENGTH
TOO_LONG_CODE = "field_too_long"  # assumed: ActiveCampaign documents no code for this


def too_long(name: str, value: str, limit: int) -> str | None:
    """Why `value` is too long for the field `name`, or None if it fits (lengths in characters)."""
    if len(value) <= limit:
        return None
    return f"{name} is {len(value)} characters long; ActiveCampaign keeps at most {limit}"
