"""Data versions of the pipeline's inputs: values that change when, and only when, their content changes.

The customer 360's version is a hash of every row of every table, read read-only. The file's mtime and size
are not a data version: a checkpoint changes them without changing a row, and an update in place may change
neither. max(updated_at) and a row count trust every loader to bump updated_at and miss a delete balanced by an
insert. Hashing the rows is exact, and DuckDB scans millions of rows a second, so it stays cheap.
"""

import hashlib

import duckdb

from ac_pipeline.audiences.config import AudienceFile


def customer_360_version(database: str) -> str:
    """One hash over each table's name, row count and order-independent sum of row hashes."""
    digest = hashlib.sha256()
    with duckdb.connect(database, read_only=True) as connection:
        tables = connection.sql(
            "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database() "
            "ORDER BY schema_name, table_name"
        ).fetchall()
        for schema, table in tables:
            name = f'"{schema}"."{table}"'
            row = connection.sql(f"SELECT count(*), coalesce(sum(hash(t)), 0) FROM {name} AS t").fetchall()
            digest.update(f"{name}:{row}\n".encode())
    return digest.hexdigest()[:16]


def audience_versions(catalog: AudienceFile) -> dict[str, str]:
    """Per audience, a hash of what defines it: its own entry, the source, and the audiences it excludes.

    Per audience rather than per file, so that editing one audience re-syncs that one (and those that
    exclude it), not every list.
    """
    versions = {}
    for audience in catalog.audiences:
        digest = hashlib.sha256(catalog.source.model_dump_json().encode())
        seen: set[str] = set()
        pending = [audience]
        while pending:
            current = pending.pop()
            if current.key in seen:
                continue
            seen.add(current.key)
            digest.update(current.model_dump_json().encode())
            pending += [catalog.by_key[key] for key in sorted(current.exclude.audiences) if key in catalog.by_key]
        versions[audience.key] = digest.hexdigest()[:16]
    return versions
