"""Audience definitions: what each audience is, which ActiveCampaign list it feeds, which fields it sends.

The models themselves are in `models.py` and the strict YAML loader in `yaml_loader.py`; both are
re-exported here, where the rest of the code imports them from. `audiences.yaml` is read and checked
here. Two levels of checks:
- `load_audiences` checks everything that needs no data: structure, no key written twice in a mapping,
  unique audience keys, an email mapping, SQL that parses as one expression and reads only plain table
  names (no files, URLs or table functions: see `sql.py`), table and column names that are identifiers,
  exclusions that name real audiences (and no cycles). Definitions load calls it, so a broken file shows
  up as a load error in the Dagster UI, naming the audience and the fix.
- `check_against_columns` checks the SQL against the customer 360 (unknown tables and columns, type
  errors, anything the locked connection refuses); the members asset calls it before reading anything.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import duckdb
import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from ac_pipeline.audiences.models import (
    KEY_PATTERN,
    Alerts,
    Audience,
    AudienceConfigError,
    AudienceFile,
    Exclusions,
    FieldMapping,
    ListTarget,
    RemovalGuard,
    Source,
)
from ac_pipeline.audiences.sql import (
    ALLOWED,
    UnsafeSql,
    attached_tables,
    is_refusal,
    lock,
    quote_identifier,
    quote_table,
    snippet_tables,
)
from ac_pipeline.audiences.yaml_loader import DuplicateKeyError, load_yaml

# The models and the YAML loader live in their own modules; other code imports them from here.
__all__ = [
    "KEY_PATTERN",
    "Alerts",
    "Audience",
    "AudienceConfigError",
    "AudienceFile",
    "DuplicateKeyError",
    "Exclusions",
    "FieldMapping",
    "ListTarget",
    "RemovalGuard",
    "Source",
    "check_against_columns",
    "connection_database",
    "customer_360_tables",
    "load_audiences",
    "parse_audiences",
    "sql_snippets",
]


def _parse_error_location(error: ErrorDetails, raw: dict[str, Any]) -> str:
    loc = error["loc"]
    if len(loc) >= 2 and loc[0] == "audiences" and isinstance(loc[1], int):
        entries = raw.get("audiences") or []
        entry = entries[loc[1]] if loc[1] < len(entries) else {}
        key = entry.get("key") if isinstance(entry, dict) else None
        where = ".".join(str(part) for part in loc[2:]) or "(the entry)"
        return f"audience {key!r} (entry {loc[1] + 1}), {where}" if key else f"audience entry {loc[1] + 1}, {where}"
    return ".".join(str(part) for part in loc) or "(top level)"


def sql_snippets(audience: Audience) -> dict[str, str]:
    """Setting -> SQL expression, for every snippet of the audience (named as in audiences.yaml)."""
    snippets = {"condition": audience.condition, "fields.email": audience.fields.email or ""}
    snippets |= {f"fields.{name}": expr for name, expr in audience.fields.expressions().items()}
    snippets |= {f"fields.custom[{title!r}]": expr for title, expr in audience.fields.custom.items()}
    return snippets


def _check_sql(audience: Audience, parser: duckdb.DuckDBPyConnection | None = None) -> dict[str, set[str]]:
    """Each SQL snippet must parse as one expression that reads only plain table names: no statements
    smuggled in, no files, URLs or table functions. Returns setting -> the tables it reads."""
    tables: dict[str, set[str]] = {}
    for where, snippet in sql_snippets(audience).items():
        try:
            tables[where] = snippet_tables(snippet, parser)
        except UnsafeSql as exc:
            fix = ALLOWED if "does not parse" not in str(exc) else f"fix the expression {snippet!r}"
            raise AudienceConfigError(f"audience {audience.key!r}, {where}: {exc}; {fix}") from None
    return tables


def _check_exclusions(audiences: list[Audience]) -> None:
    by_key = {a.key: a for a in audiences}
    for audience in audiences:
        for other in audience.exclude.audiences:
            if other not in by_key:
                raise AudienceConfigError(
                    f"audience {audience.key!r}, exclude.audiences: {other!r} names no audience; "
                    f"known keys: {', '.join(sorted(by_key))}"
                )
            if other == audience.key:
                raise AudienceConfigError(
                    f"audience {audience.key!r} excludes itself; remove {other!r} from exclude.audiences"
                )
    # Exclusions are followed recursively, so they must not loop.
    for start in audiences:
        stack, seen = [(start.key, [start.key])], set()
        while stack:
            key, path = stack.pop()
            for nxt in by_key[key].exclude.audiences:
                if nxt == start.key:
                    raise AudienceConfigError(
                        f"audience {start.key!r}: exclusions form a cycle ({' -> '.join([*path, nxt])}); break it"
                    )
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0]


@functools.lru_cache(maxsize=16)
def parse_audiences(text: str, source: str = "audiences.yaml") -> AudienceFile:
    """Parse and check audience definitions given as YAML text.

    Kept per process by text: checking every audience's SQL takes DuckDB a while (0.17 s for the sample file),
    and a run reads the file in each of its steps. The models are frozen, so sharing the result is safe; a
    changed file is new text and is parsed again."""
    try:
        raw = load_yaml(text)
    except DuplicateKeyError as exc:
        raise AudienceConfigError(f"{source}, {exc}") from None
    except yaml.YAMLError as exc:
        raise AudienceConfigError(f"{source} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict) or "audiences" not in raw:
        raise AudienceConfigError(f"{source}: expected a top-level 'audiences:' list")
    if not isinstance(raw["audiences"], list) or not raw["audiences"]:
        raise AudienceConfigError(f"{source}: 'audiences' must be a non-empty list of audience definitions")
    keys = [entry.get("key") for entry in raw["audiences"] if isinstance(entry, dict)]
    duplicates = sorted({k for k in keys if k is not None and keys.count(k) > 1})
    if duplicates:
        raise AudienceConfigError(
            f"{source}: duplicate audience key(s) {', '.join(map(repr, duplicates))}; each key names one partition, "
            "so give every audience its own key"
        )
    try:
        parsed = AudienceFile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{_parse_error_location(e, raw)}: {e['msg']}" for e in exc.errors())
        raise AudienceConfigError(f"{source}: {problems}") from None
    parser = duckdb.connect(config={"enable_external_access": False, "lock_configuration": True})
    try:
        for audience in parsed.audiences:
            _check_sql(audience, parser)
    finally:
        parser.close()
    _check_exclusions(parsed.audiences)
    return parsed


def load_audiences(path: Path | str) -> AudienceFile:
    """Read and check audiences.yaml."""
    path = Path(path)
    if not path.exists():
        raise AudienceConfigError(
            f"no audience definitions at {path}; create it (the repository ships data/audiences.yaml as an example) "
            "or point AC_PIPELINE_AUDIENCES at your file"
        )
    return parse_audiences(path.read_text(encoding="utf-8"), source=str(path))


def customer_360_tables(connection: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Lower-case name -> name of every table and view of the customer 360 (`table`, and `schema.table`)."""
    rows = connection.sql(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database() "
        "UNION ALL SELECT schema_name, view_name FROM duckdb_views() "
        "WHERE database_name = current_database() AND NOT internal"
    ).fetchall()
    names: dict[str, str] = {}
    for schema, table in rows:
        names[f"{schema}.{table}".lower()] = f"{schema}.{table}"
        if schema == "main":
            names[table.lower()] = table
    return names


def _refused(audience: Audience, where: str, exc: Exception) -> AudienceConfigError:
    return AudienceConfigError(
        f"audience {audience.key!r}, {where}: reaches outside the customer 360, and DuckDB refused it "
        f"({_first_line(exc)}); {ALLOWED}"
    )


def _check_table(
    audience: Audience, where: str, name: str, known: dict[str, str], connection: duckdb.DuckDBPyConnection
) -> str:
    """The quoted name of a customer 360 table, or an error naming the setting and the tables there are."""
    try:
        quoted = quote_table(name)
    except UnsafeSql as exc:
        raise AudienceConfigError(f"audience {audience.key!r}, {where}: {exc}; {ALLOWED}") from None
    if name.lower() not in known:
        tables = ", ".join(sorted(n for n in known.values() if "." not in n)) or "none"
        raise AudienceConfigError(
            f"audience {audience.key!r}, {where}: {name!r} is not a table of the customer 360 "
            f"{connection_database(connection)} (its tables: {tables}); audience SQL reads only those"
        )
    return quoted


def connection_database(connection: duckdb.DuckDBPyConnection) -> str:
    rows = connection.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchall()
    return str(rows[0][0]) if rows and rows[0][0] else "(in memory)"


def check_against_columns(
    audience: Audience, connection: duckdb.DuckDBPyConnection, source: Source | str = "customers"
) -> None:
    """Bind every SQL snippet of the audience against the customer 360 without reading a row.

    The connection should be locked (`sql.locked_connection`); it is locked here if it is not. Raises
    AudienceConfigError naming the audience, the setting and what is wrong: a table that is not the
    customer 360's, a column DuckDB could not find, anything that reaches outside the customer 360.
    """
    lock(connection)
    source = source if isinstance(source, Source) else Source.model_construct(table=source)
    own = customer_360_tables(connection)
    # Subqueries and exclusions may also read the databases the locked connection attached (`alias.table`).
    known = own | attached_tables(connection)
    table = _check_table(audience, "source.table", source.table, own, connection)
    for where, column in (("source.id_column", source.id_column), ("source.updated_column", source.updated_column)):
        try:
            connection.sql(f"SELECT {quote_identifier(column)} FROM {table} LIMIT 0").fetchall()
        except (UnsafeSql, duckdb.Error) as exc:
            raise AudienceConfigError(
                f"audience {audience.key!r}, {where}: {_first_line(exc)}; name a column of {source.table!r}"
            ) from None
    for where, snippet in sql_snippets(audience).items():
        try:
            reads = snippet_tables(snippet, connection)
        except UnsafeSql as exc:
            raise AudienceConfigError(f"audience {audience.key!r}, {where}: {exc}; {ALLOWED}") from None
        for name in sorted(reads):
            if name.lower() not in known:
                _check_table(audience, where, name, known, connection)
        query = (
            f"SELECT 1 FROM {table} WHERE (\n{snippet}\n) LIMIT 0"
            if where == "condition"
            else f"SELECT (\n{snippet}\n) FROM {table} LIMIT 0"
        )
        try:
            connection.sql(query).fetchall()
        except duckdb.Error as exc:
            if is_refusal(exc):
                raise _refused(audience, where, exc) from None
            message = _first_line(exc)
            missing = re.search(r'Referenced column "?([^"\s]+)"? not found', message)
            if missing:
                columns = [row[0] for row in connection.sql(f"DESCRIBE {table}").fetchall()]
                raise AudienceConfigError(
                    f"audience {audience.key!r}, {where}: unknown column {missing.group(1)!r} in the customer 360 "
                    f"table {source.table!r}; available columns: {', '.join(columns)}"
                ) from None
            raise AudienceConfigError(
                f"audience {audience.key!r}, {where}: DuckDB rejects {snippet!r}: {message}"
            ) from None
    if audience.exclude.suppression_table:
        name = audience.exclude.suppression_table
        where = "exclude.suppression_table"
        quoted = _check_table(audience, where, name, known, connection)
        try:
            connection.sql(f"SELECT email FROM {quoted} LIMIT 0").fetchall()
        except duckdb.Error as exc:
            if is_refusal(exc):
                raise _refused(audience, where, exc) from None
            raise AudienceConfigError(
                f"audience {audience.key!r}, {where}: cannot read an 'email' column from {name!r} "
                f"({_first_line(exc)}); create the table in the customer 360 or remove the setting"
            ) from None
