"""A key written twice in one mapping of audiences.yaml is an error naming the key and both lines, at every
level of the file and in flow style too; a merge key (`<<: *anchor`) may still be overridden.
"""

from __future__ import annotations

import random

import pytest

from ac_pipeline.audiences.config import AudienceConfigError, parse_audiences

# Duplicate keys, at every level of the file: a generated family from one block-style file.
BLOCK = """\
source:
  table: customers
  id_column: customer_id
audiences:
  - key: vip
    description: Best customers
    list:
      name: VIP
      create: true
    condition: lifetime_value > 100
    exclude:
      suppression_table: suppressed_emails
      emails:
        - a@example.com
    fields:
      email: email
      first_name: first_name
      custom:
        Tier: loyalty_tier
        City: city
    removal_guard:
      max_share: 0.5
  - key: other
    list:
      name: Other
    condition: "true"
    fields:
      email: email
"""


def test_the_block_file_loads() -> None:
    assert parse_audiences(BLOCK).keys == ["vip", "other"]


def _mapping_lines() -> list[int]:
    """Indexes of lines that hold one `key: value` pair (not list items, not nested-mapping openers)."""
    lines = BLOCK.splitlines()
    return [i for i, line in enumerate(lines) if ":" in line and not line.lstrip().startswith("-")]


@pytest.mark.parametrize("seed", range(6))
def test_a_key_written_twice_is_an_error_naming_the_key_and_its_line(seed: int) -> None:
    rng = random.Random(seed)
    lines = BLOCK.splitlines()
    for index in rng.sample(_mapping_lines(), 6):
        line = lines[index]
        key = line.strip().split(":")[0]
        # Written again just before itself (a mapping opener with an empty value, so the file stays YAML).
        copy = line + " {}" if line.rstrip().endswith(":") else line
        text = "\n".join([*lines[:index], copy, *lines[index:]]) + "\n"
        with pytest.raises(AudienceConfigError) as raised:
            parse_audiences(text)
        message = str(raised.value)
        assert f"duplicate key {key!r}" in message, (line, message)
        assert f"line {index + 2}" in message and f"first written on line {index + 1}" in message, message


@pytest.mark.parametrize(
    "text",
    [
        "audiences: [{key: a, key: b, list: {name: A}, condition: 'true', fields: {email: email}}]",
        "audiences:\n  - {key: a, list: {name: A, name: B}, condition: 'true', fields: {email: email}}",
        "audiences:\n  - key: a\n    list: {name: A}\n    condition: 'true'\n    condition: 'false'\n"
        "    fields: {email: email}\n",
    ],
    ids=["flow-audience", "flow-nested", "condition-twice"],
)
def test_duplicate_keys_in_flow_style_too(text: str) -> None:
    with pytest.raises(AudienceConfigError, match=r"duplicate key .* \(first written on line \d+\)"):
        parse_audiences(text)


def test_a_merge_key_may_be_overridden() -> None:
    text = """
audiences:
  - &first {key: a, list: {name: A}, condition: "true", fields: {email: email}}
  - <<: *first
    key: b
    condition: email_consent
"""
    catalog = parse_audiences(text)
    assert catalog.get("b").condition == "email_consent"
