"""Audience SQL reaches only the customer 360's own tables.

Every DuckDB function or statement that reaches outside, placed in every setting that holds SQL, is refused
with a message naming the audience and the setting, and the secret file it aims at is never read: first by
the parser check when audiences.yaml loads, then (with that check switched off) by the locked connection.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from ac_pipeline.audiences import config as config_module
from ac_pipeline.audiences.config import (
    AudienceConfigError,
    AudienceFile,
    Source,
    check_against_columns,
    parse_audiences,
)
from ac_pipeline.audiences.members import compute_members, member_emails, select_sql
from ac_pipeline.audiences.sql import is_locked, locked_connection
from ac_pipeline_tests.audiences.sql_lock_helpers import (
    EXPRESSION_PLACES,
    MARKER,
    TABLE_PLACES,
    audience_steps,
    audience_yaml,
    lock_cases,
    reachers,
    setting_named,
    table_reachers,
    unchecked_audience,
)


@pytest.mark.parametrize("place", EXPRESSION_PLACES)
def test_sql_reaching_outside_is_refused_when_the_file_loads(place: str, secret: Path) -> None:
    for name, sql in reachers(secret).items():
        with pytest.raises(AudienceConfigError) as raised:
            parse_audiences(audience_yaml(place, sql))
        message = str(raised.value)
        assert "'target'" in message, (name, message)
        assert setting_named(message, place), (name, message)
        assert MARKER not in message
        # What is allowed is said, unless the SQL simply does not parse.
        assert "customer 360" in message or "does not parse" in message or "one SQL expression" in message, message
    assert not (secret.parent / "stolen.csv").exists()


@pytest.mark.parametrize("place", TABLE_PLACES)
def test_table_settings_must_be_table_names(place: str, secret: Path) -> None:
    for name, table in table_reachers(secret).items():
        with pytest.raises(AudienceConfigError) as raised:
            parse_audiences(audience_yaml(place, table))
        message = str(raised.value)
        assert place.split(".")[-1] in message, (name, message)
        if place != "source.table":  # source.table belongs to the file, not to one audience
            assert "'target'" in message, (name, message)
        assert "table name" in message or "file name" in message, (name, message)
        assert MARKER not in message


@pytest.mark.parametrize("place", EXPRESSION_PLACES)
def test_the_locked_connection_refuses_what_the_parser_check_missed(
    place: str, secret: Path, customer_360: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Switch the parser check off: the lock alone must hold.
    monkeypatch.setattr(config_module, "snippet_tables", lambda snippet, connection=None: set())
    with locked_connection(str(customer_360)) as connection:
        assert is_locked(connection)
        for name, sql in lock_cases(secret):
            audience, source = unchecked_audience(place, sql)
            for step in audience_steps(connection, audience, source):
                with pytest.raises(AudienceConfigError) as raised:
                    step()
                message = str(raised.value)
                assert "'target'" in message and setting_named(message, place), (name, message)
                assert "customer 360" in message, (name, message)
                assert MARKER not in message
            # Even the raw query, with no check of ours in front of it, cannot read the file.
            with pytest.raises(duckdb.Error):
                connection.sql(select_sql(audience, source)).fetchall()


def test_the_lock_cannot_be_undone_from_sql(customer_360: Path, secret: Path) -> None:
    with locked_connection(str(customer_360)) as connection:
        for statement in (
            "SET enable_external_access = true",
            "RESET enable_external_access",
            "SET lock_configuration = false",
            "PRAGMA threads = 1",
            f"ATTACH '{secret.parent}/other.duckdb' AS other",
            f"COPY customers TO '{secret.parent}/stolen.csv'",
            "INSTALL httpfs",
            "LOAD httpfs",
            f"SELECT * FROM read_csv('{secret}')",
            "SELECT * FROM secret.csv",
        ):
            with pytest.raises(duckdb.Error):
                connection.execute(statement).fetchall()
        assert is_locked(connection)
    assert not (secret.parent / "stolen.csv").exists()
    assert not (secret.parent / "other.duckdb").exists()


def test_audience_functions_lock_any_connection_they_are_given(secret: Path) -> None:
    connection = duckdb.connect()
    connection.execute(
        "CREATE TABLE customers AS SELECT 1 AS customer_id, now() AS updated_at, 'a@b.co' AS email, "
        "true AS email_consent, 'Ada' AS first_name, 'X' AS city"
    )
    audience, source = unchecked_audience("fields.first_name", "'x'")
    member_emails(connection, audience, {"target": audience}, source)
    assert is_locked(connection)
    with pytest.raises(duckdb.Error):
        connection.sql(f"SELECT * FROM read_csv('{secret}')").fetchall()
    connection.close()


def test_table_names_are_checked_and_quoted_at_run_time(customer_360: Path, secret: Path) -> None:
    """Names that slipped past the model (built without validation) are refused before any SQL runs."""
    with locked_connection(str(customer_360)) as connection:
        for table in table_reachers(secret).values():
            audience, _ = unchecked_audience("fields.first_name", "first_name")
            with pytest.raises(AudienceConfigError, match=r"'target', source\.table") as raised:
                check_against_columns(audience, connection, Source.model_construct(table=table))
            assert MARKER not in str(raised.value)
            excluding = audience.model_copy(
                update={"exclude": audience.exclude.model_construct(suppression_table=table, audiences=[], emails=[])}
            )
            for step in audience_steps(connection, excluding, Source()):
                with pytest.raises(AudienceConfigError, match=r"'target', exclude\.suppression_table") as raised:
                    step()
                assert MARKER not in str(raised.value)


LEGITIMATE = """
audiences:
  - key: careful
    list: {name: Careful}
    condition: >-
      email_consent
      AND customer_id NOT IN (SELECT customer_id FROM main.customers WHERE country = 'XX')  -- a note
    exclude: {suppression_table: main.suppressed_emails}
    fields:
      email: email
      first_name: "coalesce(first_name, 'there')"
      last_name: "(WITH s AS (SELECT email FROM suppressed_emails) SELECT count(*) FROM s)::VARCHAR"
      custom:
        Semicolon: "'a;b'"
        Orders: "(SELECT count(*) FROM customers c2 WHERE c2.email = customers.email)"
        'x", (SELECT max(content) FROM read_text(''secret.csv'')) AS "y': "'title'"
"""


def test_a_legitimate_audience_still_works(customer_360: Path) -> None:
    catalog = parse_audiences(LEGITIMATE)
    audience = catalog.get("careful")
    with locked_connection(str(customer_360)) as connection:
        check_against_columns(audience, connection, catalog.source)
        rows = compute_members(connection, audience, catalog.by_key, catalog.source)
    members = rows.filter(pl.col("status") == "member")
    assert members.height > 100
    assert set(members.get_column("field:Semicolon")) == {"a;b"}
    # A custom field title is a column name, never SQL: this one stays one column, and reads nothing.
    [title] = [c for c in members.columns if "read_text" in c]
    assert set(members.get_column(title)) == {"title"}
    assert "y" not in members.columns
    assert rows.filter(pl.col("status") == "excluded").height > 0


def test_the_sample_audiences_run_on_the_locked_connection(customer_360: Path) -> None:
    from ac_pipeline_tests.conftest import SAMPLE_AUDIENCES

    catalog: AudienceFile = config_module.load_audiences(SAMPLE_AUDIENCES)
    with locked_connection(str(customer_360), {"threads": 1}) as connection:
        for audience in catalog.audiences:
            check_against_columns(audience, connection, catalog.source)
            rows = compute_members(connection, audience, catalog.by_key, catalog.source)
            assert rows.filter(pl.col("status") == "member").height > 0, audience.key


def test_the_members_asset_runs_audience_sql_locked(home, monkeypatch: pytest.MonkeyPatch, secret: Path) -> None:
    """Through a real Dagster run: with the parser check off, the asset's own connection refuses the file."""
    from ac_pipeline.definitions import build_definitions

    monkeypatch.setattr(config_module, "snippet_tables", lambda snippet, connection=None: set())
    text = home.audiences.read_text()
    home.audiences.write_text(
        text.replace("first_name: first_name", f'first_name: "{reachers(secret)["read_text"]}"', 1)
    )
    defs = build_definitions()
    result = dg.materialize(
        [defs.resolve_assets_def("audience_members")],
        partition_key="vip_customers",
        raise_on_error=False,
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.event_specific_data.error.to_string()
    assert "'vip_customers', fields.first_name" in message and "DuckDB refused" in message
    assert MARKER not in message
