"""audiences.yaml for the modes: the short and long forms read alike, and every bad value is an error that names
the audience, the setting and the fix."""

from __future__ import annotations

import pytest

from ac_pipeline.audiences.config import AudienceConfigError, parse_audiences
from ac_pipeline.audiences.modes import describe_fields, field_modes


def _yaml(fields: str, extra: str = "") -> str:
    return f"""
audiences:
  - key: shop
    list: {{name: Shop}}
    condition: email_consent
    fields:
      email: email
{fields}
{extra}"""


def test_short_and_long_forms() -> None:
    audience = parse_audiences(
        _yaml(
            """\
      first_name: first_name
      last_name: {column: last_name}
      phone: {column: phone, mode: never_clear}
      custom:
        City: {column: city, mode: fill}
        Tier: loyalty_tier""",
            "    sync_mode: upsert",
        )
    ).audiences[0]
    # The mapping holds expressions only, as before: the long form is taken apart on reading.
    assert audience.fields.expressions() == {"first_name": "first_name", "last_name": "last_name", "phone": "phone"}
    assert audience.fields.custom == {"City": "city", "Tier": "loyalty_tier"}
    assert audience.sync_mode == "upsert"
    assert field_modes(audience) == {"phone": "never_clear", "field:City": "fill"}
    assert describe_fields(audience) == {
        "first_name": "overwrite",
        "last_name": "overwrite",
        "phone": "never_clear",
        "City": "fill",
        "Tier": "overwrite",
    }
    default = parse_audiences(_yaml("      first_name: first_name")).audiences[0]
    assert default.sync_mode == "mirror" and field_modes(default) == {}


@pytest.mark.parametrize(
    ("fields", "extra", "says"),
    [
        (
            "      first_name: first_name",
            "    sync_mode: sync",
            ["'shop'", "sync_mode 'sync'", "mirror", "update_only"],
        ),
        ("      custom: {City: {column: city, mode: fil}}", "", ["'shop'", "custom['City']", "'fil'", "fill"]),
        ("      phone: {col: phone}", "", ["'shop'", "phone", "'col'", "mode: never_clear"]),
        ("      phone: {mode: fill}", "", ["'shop'", "phone", "`column` (required)"]),
        ("      first_name: first_name\n      modes: {first_name: fill}", "", ["'shop'", "go with their field"]),
        (
            "      first_name: first_name",
            "    sync_mode: upsert\n    unmanaged: remove",
            ["'shop'", "unmanaged: remove", "never removes", "unmanaged: keep"],
        ),
    ],
)
def test_bad_values_name_the_audience_and_the_fix(fields: str, extra: str, says: list[str]) -> None:
    with pytest.raises(AudienceConfigError) as raised:
        parse_audiences(_yaml(fields, extra))
    for words in says:
        assert words in str(raised.value), str(raised.value)


def test_email_has_no_write_mode() -> None:
    text = _yaml("      first_name: first_name").replace("email: email", "email: {column: email, mode: fill}")
    with pytest.raises(AudienceConfigError, match="email takes a column or expression only"):
        parse_audiences(text)
