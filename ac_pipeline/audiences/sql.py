"""Audience SQL is configuration, not a key to the machine: it reaches only the customer 360's own tables.

Two guards, one inside the other:
- `snippet_tables` (when audiences.yaml loads, no data needed): each snippet must parse, on its own, as one
  SQL expression, and every table it reads must be a plain name (`customers`, `schema.table`). Table
  functions (`read_csv`, `glob`, `query`...), file paths and URLs (`FROM '/etc/passwd'`), other catalogs
  and statements (`ATTACH`, `COPY`, `SET`...) are refused, naming what was found.
- `locked_connection` / `lock` (the real guard): audience SQL runs only on a connection with DuckDB's external
  access off and its configuration locked. DuckDB then refuses every file, URL, `ATTACH`, `COPY`, `INSTALL`,
  `LOAD`, `SET` and `PRAGMA` itself, whatever the parser check missed, and the SQL cannot `SET` it back.

Besides the customer 360, a locked connection may reach the databases it was given to attach (`attach`: alias ->
file, e.g. the ActiveCampaign account tables as `activecampaign`): each is attached read-only before the lock,
and audience SQL names their tables `alias.table`. Nothing else can be attached once the lock is on.

Table and column names from the file are checked against a pattern and quoted where they are used.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

ALLOWED = (
    "audience SQL may use the customer 360's columns, scalar functions, and subqueries over the customer 360's "
    "own tables (plain names: customers, or schema.table) and over what the read-back brings home from "
    "ActiveCampaign (activecampaign.opt_outs, ...); not table functions (read_csv, read_parquet, "
    "read_json, glob, ...), file paths or URLs, other databases, ATTACH, COPY, INSTALL, LOAD, SET or PRAGMA"
)

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
IDENTIFIER = re.compile(rf"^{_NAME}$")
TABLE_NAME = re.compile(rf"^{_NAME}(\.{_NAME})?$")
# `x.csv` is a file to DuckDB when no table x.csv exists (a replacement scan), quoted or not.
_FILE_SUFFIXES = frozenset(
    {
        *("csv", "tsv", "txt", "text", "tbl", "dat", "parquet", "json", "jsonl", "ndjson", "geojson"),
        *("gz", "gzip", "zst", "zstd", "xlsx", "xls", "arrow", "ipc", "feather", "avro"),
        *("db", "duckdb", "sqlite", "sqlite3", "ddb", "blob"),
    }
)
# Table references that read something other than a named table (they carry no "class" key).
_REFUSED_REFS = {
    "TABLE_FUNCTION": "a table function",
    "PIVOT": "PIVOT",
    "SHOW_REF": "SHOW/DESCRIBE",
    "COLUMN_DATA": "in-memory data",
    "DELIM_GET": "an internal table",
    "BOUND_TABLE_REF": "an internal table",
}

# The settings of a connection that audience SQL runs on. Given at connect time, so that no statement ever
# runs with external access on; python_enable_replacements keeps Python variables out of reach too.
LOCKED_SETTINGS: dict[str, Any] = {
    "enable_external_access": False,
    "python_enable_replacements": False,
    "lock_configuration": True,
}


class UnsafeSql(ValueError):
    """A snippet of audience SQL reaches, or may reach, outside the customer 360; the message says what."""


def table_name_problem(name: str) -> str | None:
    """Why `name` cannot be a customer 360 table name, or None when it can."""
    if not TABLE_NAME.match(name):
        return (
            f"{name!r} is not a table name: write a plain name (letters, digits, '_'), optionally with its "
            "schema (schema.table), e.g. customers"
        )
    if "." in name and name.rsplit(".", 1)[1].lower() in _FILE_SUFFIXES:
        return f"{name!r} looks like a file name; name a table of the customer 360 instead"
    return None


def check_table_name(name: str) -> str:
    problem = table_name_problem(name)
    if problem:
        raise UnsafeSql(problem)
    return name


def check_identifier(name: str) -> str:
    if not IDENTIFIER.match(name):
        raise UnsafeSql(f"{name!r} is not a column name: write a plain name (letters, digits, '_')")
    return name


def quote_identifier(name: str) -> str:
    return '"' + check_identifier(name) + '"'


def quote_table(name: str) -> str:
    """`schema.table` -> `"schema"."table"`, after checking the name (quoting alone does not stop a file read)."""
    return ".".join('"' + part + '"' for part in check_table_name(name).split("."))


def _parse(connection: duckdb.DuckDBPyConnection, snippet: str) -> dict[str, Any]:
    # Newlines around the snippet: a trailing `-- comment` ends with its line and cannot swallow what follows.
    query = f"SELECT\n{snippet}\n"
    try:
        statements = connection.extract_statements(query)
    except duckdb.Error as exc:
        raise UnsafeSql(f"the SQL does not parse ({_first_line(exc)})") from None
    if len(statements) != 1:
        raise UnsafeSql("write one SQL expression, not statements (no ';')")
    rows = connection.execute("SELECT json_serialize_sql(?)", [query]).fetchall()
    tree: dict[str, Any] = json.loads(rows[0][0]) if rows else {"error": True, "error_message": "no parse tree"}
    if tree.get("error"):
        raise UnsafeSql(f"the SQL does not parse ({tree.get('error_message', 'unknown error')})")
    return tree["statements"][0]["node"]


def _single_expression(node: dict[str, Any]) -> None:
    """The snippet is exactly one expression: nothing around it that turns it into a query of its own."""
    if node.get("type") != "SELECT_NODE":
        raise UnsafeSql("write one SQL expression (a UNION or other query around it is not allowed)")
    select_list = node.get("select_list") or []
    if len(select_list) != 1:
        raise UnsafeSql("write one SQL expression, not a list of them")
    if select_list[0].get("class") == "STAR":
        raise UnsafeSql("write one SQL expression, not * or COLUMNS(...)")
    if select_list[0].get("alias"):
        raise UnsafeSql(f"write the expression without an alias (AS {select_list[0]['alias']})")
    extras = [
        (node.get("from_table") or {}).get("type", "EMPTY") != "EMPTY",
        node.get("where_clause") is not None,
        bool(node.get("group_expressions")),
        node.get("having") is not None,
        node.get("qualify") is not None,
        node.get("sample") is not None,
        bool(node.get("modifiers")),
        bool((node.get("cte_map") or {}).get("map")),
    ]
    if any(extras):
        raise UnsafeSql("write one SQL expression; FROM, WHERE, ORDER BY, LIMIT and the like belong in a subquery")


def _walk(node: Any, tables: set[str], ctes: set[str]) -> None:
    if isinstance(node, list):
        for item in node:
            _walk(item, tables, ctes)
        return
    if not isinstance(node, dict):
        return
    for entry in (node.get("cte_map") or {}).get("map") or []:
        ctes.add(str(entry.get("key", "")).lower())
    kind = node.get("type")
    if "class" not in node and kind in _REFUSED_REFS:
        function = (node.get("function") or {}).get("function_name")
        what = f"the table function {function}()" if function else _REFUSED_REFS[kind]
        raise UnsafeSql(f"reads from {what}, which is outside the customer 360")
    if "class" not in node and kind == "BASE_TABLE":
        catalog, schema, table = node.get("catalog_name", ""), node.get("schema_name", ""), node.get("table_name", "")
        if catalog:
            raise UnsafeSql(f"names the database {catalog!r}: name a table of the customer 360 without a database")
        name = f"{schema}.{table}" if schema else table
        problem = table_name_problem(name)
        if problem:
            raise UnsafeSql(f"reads from {name!r}, which is outside the customer 360 ({problem})")
        tables.add(name)
    for value in node.values():
        _walk(value, tables, ctes)


def snippet_tables(snippet: str, connection: duckdb.DuckDBPyConnection | None = None) -> set[str]:
    """The customer 360 tables one SQL expression reads (besides the audience's source table).

    Raises UnsafeSql when the snippet is not one expression, or reads anything but plain table names.
    """
    own = connection is None
    parser = duckdb.connect(config=LOCKED_SETTINGS) if connection is None else connection
    try:
        node = _parse(parser, snippet)
    finally:
        if own:
            parser.close()
    _single_expression(node)
    tables: set[str] = set()
    ctes: set[str] = set()
    _walk(node, tables, ctes)
    return {name for name in tables if name.lower() not in ctes}


def is_locked(connection: duckdb.DuckDBPyConnection) -> bool:
    [row] = connection.execute(
        "SELECT current_setting('enable_external_access'), current_setting('lock_configuration')"
    ).fetchall()
    return row[0] is False and row[1] is True


def lock(connection: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Turn external access off and lock the configuration of the connection's database, for good: a locked
    configuration cannot be unlocked, and DuckDB shares one database instance between the connections a
    process opens to the same file. Prefer `locked_connection`, which does it before anything runs."""
    if not is_locked(connection):
        connection.execute("SET enable_external_access = false")
        connection.execute("SET lock_configuration = true")
    if not is_locked(connection):  # pragma: no cover - DuckDB refused to lock; never run audience SQL then
        raise RuntimeError("could not turn DuckDB's external access off; audience SQL will not run")
    return connection


@contextmanager
def locked_connection(
    database: str,
    config: Mapping[str, Any] | None = None,
    attempts: int = 8,
    attach: Mapping[str, str] | None = None,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection to the customer 360 that can reach nothing else: external access off and the
    configuration locked from the moment it opens. Another process writing the file is waited for briefly.

    `attach` (alias -> DuckDB file) adds databases audience SQL may read as `alias.table`: each file that
    exists is attached read-only, then the lock goes on. DuckDB refuses ATTACH once external access is off, so
    these are the only ones there can be; no statement but these ATTACHes runs before the lock.
    """
    extra = {alias: path for alias, path in (attach or {}).items() if Path(path).exists()}
    for alias in extra:
        check_identifier(alias)
    # Without anything to attach, the lock is given at connect time, so that no statement ever runs unlocked.
    locked = {"python_enable_replacements": False} if extra else LOCKED_SETTINGS
    settings = {**(config or {}), "access_mode": "READ_ONLY", **locked}
    for attempt in range(attempts):
        try:
            connection = duckdb.connect(database, config=settings)
            break
        except duckdb.ConnectionException as exc:
            # The same file is open in this process with other settings (DuckDB shares one instance per file).
            raise RuntimeError(
                f"cannot open the customer 360 {database} locked for audience SQL: {_first_line(exc)}; close other "
                "connections to it in this process first"
            ) from None
        except duckdb.IOException:
            if attempt == attempts - 1:
                raise
            time.sleep(_pause(attempt))
    try:
        for alias, path in extra.items():
            _attach(connection, alias, path, attempts)
        lock(connection)
        yield connection
    finally:
        connection.close()


def _pause(attempt: int) -> float:
    return min(0.1 * 2**attempt, 2.0)


def _attach(connection: duckdb.DuckDBPyConnection, alias: str, path: str, attempts: int) -> None:
    """Attach one file read-only as `alias`, waiting briefly while another process writes it."""
    resolved = str(Path(path).resolve())
    rows = connection.execute("SELECT path FROM duckdb_databases() WHERE database_name = ?", [alias]).fetchall()
    if rows:
        # Another connection of this process to the customer 360 shares its instance, and attached it already.
        if rows[0][0] and str(Path(rows[0][0]).resolve()) == resolved:
            return
        raise RuntimeError(
            f"cannot attach {path} as {alias!r}: that name is taken by {rows[0][0] or 'another database'}"
        )
    literal = "'" + resolved.replace("'", "''") + "'"
    waited = 0.0
    for attempt in range(attempts):
        try:
            connection.execute(f'ATTACH {literal} AS "{alias}" (READ_ONLY)')
            return
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise RuntimeError(f"cannot attach {path} as {alias!r}: {_first_line(exc)}") from None
            if attempt == attempts - 1:
                raise RuntimeError(
                    f"{path} (attached as {alias!r} for audience SQL) stayed locked by another process for "
                    f"{waited:.0f} s: something is writing it (the ActiveCampaign read-back?) or holds it open for "
                    "writing (a DuckDB shell, a notebook). Close it, or run again when the writer has finished"
                ) from None
            waited += _pause(attempt)
            time.sleep(_pause(attempt))
        except duckdb.Error as exc:
            if is_refusal(exc):
                # The customer 360 is open, locked, elsewhere in this process: this connection shares its lock.
                raise RuntimeError(
                    f"cannot attach {path} as {alias!r}: the customer 360 is already open for audience SQL in "
                    "this process without it; close other connections to it first"
                ) from None
            raise RuntimeError(f"cannot attach {path} as {alias!r}: {_first_line(exc)}") from None


def attached_tables(connection: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Lower-case name -> `alias.table` of every table and view of the databases attached to the connection
    (besides the customer 360 and DuckDB's own), as audience SQL may name them."""
    rows = connection.sql(
        "SELECT database_name, table_name FROM duckdb_tables() WHERE database_name <> current_database() "
        "AND schema_name = 'main' AND NOT internal "
        "UNION ALL SELECT database_name, view_name FROM duckdb_views() WHERE database_name <> current_database() "
        "AND schema_name = 'main' AND NOT internal"
    ).fetchall()
    return {f"{alias}.{table}".lower(): f"{alias}.{table}" for alias, table in rows if alias not in ("system", "temp")}


def is_refusal(exc: Exception) -> bool:
    """Whether DuckDB refused a statement because of the lock (external access off, configuration locked)."""
    message = str(exc)
    return isinstance(exc, duckdb.PermissionException) or any(
        phrase in message
        for phrase in ("disabled by configuration", "configuration has been locked", "external access is disabled")
    )


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
