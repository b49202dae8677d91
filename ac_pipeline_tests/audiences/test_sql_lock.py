"""Audience SQL reaches only the customer 360's own tables.

Every DuckDB function or statement that reaches outside, placed in every setting that holds SQL, is refused
with a message naming the audience and the setting, and the secret file it aims at is never read: first by
the parser check when audiences.yaml loads, then (with that check switched off) by the locked connection.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from ac_pipeline.audiences import config as config_module
from ac_pipeline.audiences.config import (
    Audience,
    AudienceConfigError,
    AudienceFile,
    Source,
    check_against_columns,
    parse_audiences,
)
from ac_pipeline.audiences.members import compute_members, member_emails, select_sql
from ac_pipeline.audiences.sql import is_locked, locked_connection

MARKER = "SECRET-7f3c9e"

# The settings that hold an SQL expression, as audiences.yaml names them.
EXPRESSION_PLACES = [
    "condition",
    "fields.email",
    "fields.first_name",
    "fields.last_name",
    "fields.phone",
    "fields.custom",
]
TABLE_PLACES = ["source.table", "exclude.suppression_table"]


def reachers(secret: Path) -> dict[str, str]:
    """Name -> an SQL expression that reaches outside the customer 360 (aimed at the secret file)."""
    folder = secret.parent
    return {
        "read_csv": f"(SELECT string_agg(column0, '|') FROM read_csv('{secret}', header = false))",
        "read_csv_auto": f"(SELECT string_agg(column0, '|') FROM read_csv_auto('{secret}', header = false))",
        "read_parquet": f"(SELECT count(*) FROM read_parquet('{secret}'))",
        "read_json": f"(SELECT count(*) FROM read_json('{secret}'))",
        "read_text": f"(SELECT max(content) FROM read_text('{secret}'))",
        "read_blob": f"(SELECT max(content)::VARCHAR FROM read_blob('{secret}'))",
        "glob": f"(SELECT string_agg(file, '|') FROM glob('{folder}/*'))",
        "replacement-scan": f"(SELECT string_agg(column0, '|') FROM '{secret}')",
        "quoted-replacement-scan": f"(SELECT string_agg(column0, '|') FROM \"{secret}\")",
        "url": "(SELECT count(*) FROM read_csv('https://example.com/customers.csv'))",
        "url-scan": "(SELECT count(*) FROM 'https://example.com/customers.parquet')",
        "query": f"(SELECT * FROM query('SELECT content FROM read_text(''{secret}'')'))",
        "other-database": "(SELECT count(*) FROM system.main.duckdb_settings)",
        "in-join": f"(SELECT max(c.email) FROM customers c, read_text('{secret}') t)",
        "in-cte": f"(WITH t AS (SELECT * FROM read_text('{secret}')) SELECT max(content) FROM t)",
        "attach": f"1; ATTACH '{folder}/other.duckdb' AS other",
        "copy": f"1; COPY customers TO '{folder}/stolen.csv'",
        "install": "1; INSTALL httpfs",
        "load": "1; LOAD httpfs",
        "set": "1; SET enable_external_access = true",
        "pragma": "1; PRAGMA enable_profiling",
        "union-smuggled": f"1) UNION SELECT content FROM read_text('{secret}') WHERE (1",
    }


# Table settings: what someone might write instead of a table name.
def table_reachers(secret: Path) -> dict[str, str]:
    return {
        "read_csv": f"read_csv('{secret}')",
        "path": str(secret),
        "quoted-path": f"'{secret}'",
        "comma-join": "customers, (SELECT 1) x",
        "file-suffix": "secret.csv",
        "url": "https://example.com/x.csv",
        "three-parts": "system.main.duckdb_settings",
        "statement": "customers; ATTACH 'x.duckdb'",
        "subquery": "(SELECT 1)",
    }


@pytest.fixture
def secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A file audience SQL must never read; also reachable as `secret.csv` from the working directory."""
    path = tmp_path / "secret.csv"
    path.write_text(f"{MARKER}\n{MARKER}\n")
    monkeypatch.chdir(tmp_path)
    return path


@pytest.fixture
def customer_360(tmp_path: Path, sample_360: Path) -> Path:
    path = tmp_path / "customer_360.duckdb"
    shutil.copy(sample_360, path)
    return path


def _audience_yaml(place: str, sql: str) -> str:
    """An audience with `sql` in one setting and plain SQL everywhere else."""
    values = {
        "condition": "email_consent",
        "fields.email": "email",
        "fields.first_name": "first_name",
        "fields.last_name": "last_name",
        "fields.phone": "phone",
        "fields.custom": "city",
        "source.table": "customers",
        "exclude.suppression_table": "suppressed_emails",
    }
    if place == "condition":
        sql = f"{sql} IS NOT NULL" if not sql.startswith("1;") else sql
    values[place] = sql
    q = {k: json.dumps(v) for k, v in values.items()}  # JSON strings are YAML strings
    return f"""
source: {{table: {q["source.table"]}}}
audiences:
  - key: target
    list: {{name: Target}}
    condition: {q["condition"]}
    exclude: {{suppression_table: {q["exclude.suppression_table"]}}}
    fields:
      email: {q["fields.email"]}
      first_name: {q["fields.first_name"]}
      last_name: {q["fields.last_name"]}
      phone: {q["fields.phone"]}
      custom: {{Secret: {q["fields.custom"]}}}
"""


def _setting_named(message: str, place: str) -> bool:
    if place == "fields.custom":
        return "fields.custom['Secret']" in message or "audiences.0.fields.custom" in message
    if place == "exclude.suppression_table":
        return "exclude.suppression_table" in message
    return place in message


@pytest.mark.parametrize("place", EXPRESSION_PLACES)
def test_sql_reaching_outside_is_refused_when_the_file_loads(place: str, secret: Path) -> None:
    for name, sql in reachers(secret).items():
        with pytest.raises(AudienceConfigError) as raised:
            parse_audiences(_audience_yaml(place, sql))
        message = str(raised.value)
        assert "'target'" in message, (name, message)
        assert _setting_named(message, place), (name, message)
        assert MARKER not in message
        # What is allowed is said, unless the SQL simply does not parse.
        assert "customer 360" in message or "does not parse" in message or "one SQL expression" in message, message
    assert not (secret.parent / "stolen.csv").exists()


@pytest.mark.parametrize("place", TABLE_PLACES)
def test_table_settings_must_be_table_names(place: str, secret: Path) -> None:
    for name, table in table_reachers(secret).items():
        with pytest.raises(AudienceConfigError) as raised:
            parse_audiences(_audience_yaml(place, table))
        message = str(raised.value)
        assert place.split(".")[-1] in message, (name, message)
        if place != "source.table":  # source.table belongs to the file, not to one audience
            assert "'target'" in message, (name, message)
        assert "table name" in message or "file name" in message, (name, message)
        assert MARKER not in message


def _unchecked_audience(place: str, sql: str) -> tuple[Audience, Source]:
    """The audience as the model reads it, without the parser check (as if that check had missed it)."""
    values = {
        "key": "target",
        "list": {"name": "Target"},
        "condition": "email_consent",
        "fields": {"email": "email", "first_name": "first_name", "custom": {"Secret": "city"}},
    }
    if place == "condition":
        values["condition"] = f"{sql} IS NOT NULL"
    elif place == "fields.custom":
        values["fields"]["custom"] = {"Secret": sql}  # type: ignore[index]
    else:
        values["fields"][place.split(".")[1]] = sql  # type: ignore[index]
    return Audience.model_validate(values), Source()


def _audience_steps(connection: duckdb.DuckDBPyConnection, audience: Audience, source: Source) -> list:
    """What the members asset does with an audience's SQL: check it, then compute the members."""
    return [
        lambda: check_against_columns(audience, connection, source),
        lambda: compute_members(connection, audience, {audience.key: audience}, source),
    ]


def _lock_cases(secret: Path) -> list[tuple[str, str]]:
    # Statements cannot run inside an expression at all; the rest are what the lock must stop.
    # `other-database` names DuckDB's own catalog, which holds nothing to read.
    skipped = ("smuggled", "other-database")
    return [
        (name, sql)
        for name, sql in reachers(secret).items()
        if not sql.startswith("1;") and not any(word in name for word in skipped)
    ]


@pytest.mark.parametrize("place", EXPRESSION_PLACES)
def test_the_locked_connection_refuses_what_the_parser_check_missed(
    place: str, secret: Path, customer_360: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Switch the parser check off: the lock alone must hold.
    monkeypatch.setattr(config_module, "snippet_tables", lambda snippet, connection=None: set())
    with locked_connection(str(customer_360)) as connection:
        assert is_locked(connection)
        for name, sql in _lock_cases(secret):
            audience, source = _unchecked_audience(place, sql)
            for step in _audience_steps(connection, audience, source):
                with pytest.raises(AudienceConfigError) as raised:
                    step()
                message = str(raised.value)
                assert "'target'" in message and _setting_named(message, place), (name, message)
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
    audience, source = _unchecked_audience("fields.first_name", "'x'")
    member_emails(connection, audience, {"target": audience}, source)
    assert is_locked(connection)
    with pytest.raises(duckdb.Error):
        connection.sql(f"SELECT * FROM read_csv('{secret}')").fetchall()
    connection.close()


def test_table_names_are_checked_and_quoted_at_run_time(customer_360: Path, secret: Path) -> None:
    """Names that slipped past the model (built without validation) are refused before any SQL runs."""
    with locked_connection(str(customer_360)) as connection:
        for table in table_reachers(secret).values():
            audience, _ = _unchecked_audience("fields.first_name", "first_name")
            with pytest.raises(AudienceConfigError, match=r"'target', source\.table") as raised:
                check_against_columns(audience, connection, Source.model_construct(table=table))
            assert MARKER not in str(raised.value)
            excluding = audience.model_copy(
                update={"exclude": audience.exclude.model_construct(suppression_table=table, audiences=[], emails=[])}
            )
            for step in _audience_steps(connection, excluding, Source()):
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
