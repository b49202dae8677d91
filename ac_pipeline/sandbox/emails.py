"""Email addresses as the sandbox compares and checks them."""

from __future__ import annotations

import re

from ac_pipeline.activecampaign.limits import MAX_EMAIL_LENGTH

# Deliberately plain: a local part without quotes or spaces, and a domain with a dot and a 2+ letter TLD.
# The real service rejects "invalid'character@example.com" and "invalid.email@invalidDomain"; so does this.
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&*+/=?^_`{|}~-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}$")


def normalize(email: str) -> str:
    """Emails match case-insensitively: they are stored trimmed and lower-case."""
    return email.strip().lower()


def is_valid(email: str) -> bool:
    return len(email) <= MAX_EMAIL_LENGTH and _EMAIL.match(email) is not None
