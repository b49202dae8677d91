"""SQL that reaches outside the customer 360, for test_sql_lock.py: expressions and table settings aimed at
a secret file, and audiences that carry them in one setting (checked by the parser, or not at all).
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from ac_pipeline.audiences.config import Audience, Source, check_against_columns
from ac_pipeline.audiences.members import compute_members

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


def audience_yaml(place: str, sql: str) -> str:
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


def setting_named(message: str, place: str) -> bool:
    if place == "fields.custom":
        return "fields.custom['Secret']" in message or "audiences.0.fields.custom" in message
    if place == "exclude.suppression_table":
        return "exclude.suppression_table" in message
    return place in message


def unchecked_audience(place: str, sql: str) -> tuple[Audience, Source]:
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


def audience_steps(connection: duckdb.DuckDBPyConnection, audience: Audience, source: Source) -> list:
    """What the members asset does with an audience's SQL: check it, then compute the members."""
    return [
        lambda: check_against_columns(audience, connection, source),
        lambda: compute_members(connection, audience, {audience.key: audience}, source),
    ]


def lock_cases(secret: Path) -> list[tuple[str, str]]:
    # Statements cannot run inside an expression at all; the rest are what the lock must stop.
    # `other-database` names DuckDB's own catalog, which holds nothing to read.
    skipped = ("smuggled", "other-database")
    return [
        (name, sql)
        for name, sql in reachers(secret).items()
        if not sql.startswith("1;") and not any(word in name for word in skipped)
    ]
