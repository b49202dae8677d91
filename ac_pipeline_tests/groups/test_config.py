"""groups: in audiences.yaml: what is accepted, and the errors that name the audience and the fix."""

from __future__ import annotations

import pytest

from ac_pipeline.audiences.config import AudienceConfigError, parse_audiences

BASE = """
audiences:
  - key: spring
    list: {name: Spring}
    condition: email_consent
    fields: {email: email}
    tags: [spring]
"""


def _parse(extra: str):
    return parse_audiences(BASE + "".join(f"    {line}\n" for line in extra.strip().splitlines()))


def test_treatment_and_control() -> None:
    audience = _parse("groups: {treatment: {share: 0.9}, control: {share: 0.1, send: false}}").get("spring")
    assert [(n, g.share, g.send) for n, g in audience.groups.items()] == [
        ("treatment", 0.9, True),
        ("control", 0.1, False),
    ]
    assert audience.salt_or_key == "spring" and audience.group_tags == {}


def test_a_b_groups_with_a_tag_each_and_a_salt() -> None:
    audience = _parse(
        "groups: {a: {share: 0.5, tag: variant-a}, b: {share: 0.5, tag: variant-b}}\nsalt: spring-2026"
    ).get("spring")
    assert audience.group_tags == {"a": "variant-a", "b": "variant-b"} and audience.salt_or_key == "spring-2026"


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ("groups: {treatment: {share: 0.8}, control: {share: 0.1, send: false}}", "sum to 1"),
        ("groups: {a: {share: 0.6}, b: {share: 0.6}}", "sum to 1"),
        ("groups: {control: {share: 1.0, send: false}}", "nobody would be sent"),
        ("groups: {a: {share: 0.5, tag: x}, control: {share: 0.5, send: false, tag: y}}", "never sent carries no tag"),
        ("groups: {a: {share: 0.5, tag: X}, b: {share: 0.5, tag: x}}", "same tag"),
        ("groups: {a: {share: 0.5, tag: spring}, b: {share: 0.5}}", "audience's tags"),
        ("groups: {A B: {share: 1.0}}", "group name"),
        ("groups: {a: {share: 0}, b: {share: 1}}", "greater than 0"),
        ("salt: x", "no groups"),
    ],
)
def test_mistakes_name_the_audience_and_the_fix(extra: str, says: str) -> None:
    with pytest.raises(AudienceConfigError) as error:
        _parse(extra)
    assert "audience 'spring'" in str(error.value) and says in str(error.value)
