"""Field-value length limits of the ActiveCampaign API, in characters.

The pipeline checks values against these before it sends them (a value over a limit is the row's fault and
must be reported as such, not discovered as a failed batch), and the sandbox enforces the same numbers so the
two cannot drift apart. ActiveCampaign does not publish these limits; each constant says where its number comes
from and, where it is an assumption, why the assumption is the safe side. `docs/sandbox.md` lists them too.

The bulk import caps (`MAX_BULK_CONTACTS`, `MAX_BULK_BODY_BYTES`) are request limits, not field limits, and
live with the client in `ac_pipeline.activecampaign.client`.
"""

from __future__ import annotations

__all__ = [
    "MAX_CUSTOM_FIELD_VALUE_LENGTH",
    "MAX_EMAIL_LENGTH",
    "MAX_FIRST_NAME_LENGTH",
    "MAX_LAST_NAME_LENGTH",
    "MAX_PHONE_LENGTH",
]

# ActiveCampaign's own MySQL schema (the `em_subscriber` table of its self-hosted product, whose data model
# the hosted API still exposes: `first_name`, `ip4Sub` and friends) declares `email`, `first_name` and
# `last_name` as varchar(250). The hosted service may have widened them; 250 is the number on record and
# the strict side: a value the pipeline lets through is then one the real API accepts.
MAX_EMAIL_LENGTH = 250
MAX_FIRST_NAME_LENGTH = 250
MAX_LAST_NAME_LENGTH = 250

# Assumed: no published figure. Phone is a plain varchar column beside the names, so it gets their size; the
# strict side again, so nothing the pipeline passes is rejected upstream.
MAX_PHONE_LENGTH = 250

# A "Text input" custom field value. Assumed from ActiveCampaign's Salesforce field-mapping sheet, which maps
# Salesforce Text area (255 characters) onto a Text input field but Text area long only onto a Text area
# field: a Text input holds 255 characters. Longer text belongs in a Text area field, which the sync does
# not use.
MAX_CUSTOM_FIELD_VALUE_LENGTH = 255
