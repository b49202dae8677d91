"""Versioned migrations, for every database this project owns: the DuckDB files (the sync state, the account
tables) and the sync state on Postgres.

A database records the versions applied in `schema_version`. Each migration takes it from version N-1 to N in
one transaction; a database written by an older ac-pipeline is migrated forward when it is first opened. The
SQL is written once, in the dialect DuckDB and Postgres share.
"""

from __future__ import annotations

from typing import Any, Protocol


class Connection(Protocol):
    """What a DuckDB connection and a psycopg connection (autocommit) both offer."""

    def execute(self, query: Any, /) -> Any: ...


def read_schema_version(connection: Connection) -> int:
    exists = connection.execute(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_name = 'schema_version' AND table_schema = current_schema()"
    ).fetchall()[0][0]
    if not exists:
        return 0
    return int(connection.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchall()[0][0])


def migrate(connection: Connection, current: int, migrations: dict[int, list[str]]) -> None:
    """Take the database from version `current` to the last of `migrations`, one transaction per version."""
    for version in range(current + 1, max(migrations) + 1):
        connection.execute("BEGIN TRANSACTION")
        try:
            connection.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
            )
            for statement in migrations[version]:
                connection.execute(statement)
            # No parameters: DuckDB and psycopg mark them differently, and a version is a plain integer.
            connection.execute(f"INSERT INTO schema_version VALUES ({int(version)}, now())")
            connection.execute("COMMIT")
        except Exception:
            connection.execute("ROLLBACK")
            raise
