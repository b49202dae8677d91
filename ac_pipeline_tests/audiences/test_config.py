"""audiences.yaml errors name the audience, the setting and the fix."""

from __future__ import annotations

import duckdb
import pytest

from ac_pipeline.audiences.config import AudienceConfigError, check_against_columns, load_audiences, parse_audiences

GOOD = """
audiences:
  - key: vip
    list: {name: VIP}
    condition: lifetime_value > 100
    fields: {email: email, first_name: first_name}
  - key: lapsed
    list: {name: Lapsed}
    condition: order_count > 1
    exclude: {audiences: [vip]}
    fields: {email: email}
"""


def test_the_sample_file_loads() -> None:
    from ac_pipeline_tests.conftest import SAMPLE_AUDIENCES

    catalog = load_audiences(SAMPLE_AUDIENCES)
    assert len(catalog.keys) >= 4
    assert catalog.get("vip_customers").list.name == "VIP customers"


def test_a_good_file_parses() -> None:
    catalog = parse_audiences(GOOD)
    assert catalog.keys == ["vip", "lapsed"]
    assert catalog.get("lapsed").exclude.audiences == ["vip"]
    assert catalog.source.table == "customers"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(GOOD.replace("key: lapsed", "key: vip"), ["duplicate audience key", "'vip'"], id="duplicate-keys"),
        pytest.param(
            GOOD.replace("fields: {email: email}", "fields: {first_name: first_name}"),
            ["'lapsed'", "fields.email is required"],
            id="missing-email",
        ),
        pytest.param(
            GOOD.replace("lifetime_value > 100", "lifetime_value >> AND 3"),
            ["'vip'", "condition", "does not parse"],
            id="sql-does-not-parse",
        ),
        pytest.param(
            GOOD.replace("audiences: [vip]", "audiences: [vips]"),
            ["'lapsed'", "exclude.audiences", "'vips' names no audience"],
            id="exclusion-names-no-audience",
        ),
        pytest.param(
            GOOD.replace("key: vip\n", "key: vip\n    exclude: {audiences: [lapsed]}\n"),
            ["cycle"],
            id="exclusion-cycle",
        ),
        pytest.param(GOOD.replace("key: vip", "key: VIP list"), ["'VIP list'", "lower-case"], id="bad-key"),
        pytest.param(
            GOOD.replace("lifetime_value > 100", "1=1; DROP TABLE customers"),
            ["'vip'", "';'"],
            id="statement-smuggled-in",
        ),
        pytest.param(
            GOOD.replace("list: {name: VIP}", "list: {name: VIP, colour: red}"),
            ["'vip'", "colour", "Extra inputs"],
            id="unknown-setting",
        ),
        pytest.param("audiences: []", ["non-empty list"], id="no-audiences"),
        pytest.param("audiences: [", ["not valid YAML"], id="not-yaml"),
    ],
)
def test_configuration_errors_name_the_problem(text: str, expected: list[str]) -> None:
    with pytest.raises(AudienceConfigError) as raised:
        parse_audiences(text)
    for fragment in expected:
        assert fragment in str(raised.value)


def test_a_missing_file_says_where_to_find_an_example(tmp_path) -> None:
    with pytest.raises(AudienceConfigError, match=r"data/audiences\.yaml"):
        load_audiences(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("replace", "expected"),
    [
        (
            ("lifetime_value > 100", "lifetime_valu > 100"),
            ["'vip'", "condition", "unknown column 'lifetime_valu'", "lifetime_value"],
        ),
        (
            ("first_name: first_name", "first_name: given_name"),
            ["'vip'", "fields.first_name", "unknown column 'given_name'"],
        ),
    ],
)
def test_unknown_columns_are_named_with_the_columns_there_are(sample_360, replace, expected) -> None:
    catalog = parse_audiences(GOOD.replace(*replace))
    with duckdb.connect(str(sample_360), read_only=True) as connection:
        with pytest.raises(AudienceConfigError) as raised:
            check_against_columns(catalog.get("vip"), connection)
    for fragment in expected:
        assert fragment in str(raised.value)


def test_a_missing_suppression_table_is_named(sample_360) -> None:
    catalog = parse_audiences(GOOD.replace("exclude: {audiences: [vip]}", "exclude: {suppression_table: do_not_mail}"))
    with duckdb.connect(str(sample_360), read_only=True) as connection:
        with pytest.raises(AudienceConfigError, match=r"'lapsed'.*suppression_table.*do_not_mail"):
            check_against_columns(catalog.get("lapsed"), connection)
