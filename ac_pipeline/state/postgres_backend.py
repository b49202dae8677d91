"""The sync state on Postgres (`AC_PIPELINE_STATE=postgresql://user@host:port/database`), for production, where
each step runs in a container whose disk does not last.

- Tables live in a schema of their own, `ac_pipeline`, so that the database may be Dagster's own (Dagster has a
  `runs` table too). The schema and its tables are created and migrated on first use, under an advisory lock
  so that two processes starting at once migrate once.
- Frames travel with COPY in CSV, both ways: a million snapshot rows in seconds, not minutes of INSERTs. CSV
  tells NULL (an empty field) from the empty string (`""`) on both sides, Polars and Postgres.
- Locks are session advisory locks on a connection held open for the lock's duration: the server lets go when
  that connection ends, so a killed step never blocks later ones.
- Connections are reused within a process (a handful, idle between units of work): the push writes the state
  after every batch, and opening a connection costs several milliseconds.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any, ClassVar

import polars as pl
import psycopg
from psycopg import sql as pgsql
from psycopg.types.string import StrDumper

from ac_pipeline.migrations import migrate, read_schema_version
from ac_pipeline.settings import redact
from ac_pipeline.state.backend import Params, StateBusy, StateError, keep_trying
from ac_pipeline.state.schema import MIGRATIONS, SCHEMA_VERSION

SCHEMA = "ac_pipeline"
# Postgres' own types for the Polars types staged frames carry.
PG_TYPES: dict[type[pl.DataType], str] = {
    pl.String: "text",
    pl.Null: "text",
    pl.Boolean: "boolean",
    pl.Int8: "smallint",
    pl.Int16: "smallint",
    pl.Int32: "integer",
    pl.Int64: "bigint",
    pl.UInt8: "smallint",
    pl.UInt16: "integer",
    pl.UInt32: "bigint",
    pl.Float32: "double precision",
    pl.Float64: "double precision",
    pl.Datetime: "timestamptz",
}
# How Postgres writes a timestamptz in CSV with TimeZone UTC: 2026-11-23 04:33:22.912665+00.
PG_TIMESTAMP = "%Y-%m-%d %H:%M:%S%.f%#z"
IDLE_CONNECTIONS = 4
# The key of the advisory lock that serialises migrations (any constant; "acpi" in ASCII).
MIGRATION_LOCK = 0x61637069


def _positional(sql: str) -> str:
    """`$name` parameters as psycopg writes them (`%(name)s`), with literal percent signs escaped."""
    return re.sub(r"\$([A-Za-z_]\w*)", r"%(\1)s", sql.replace("%", "%%"))


def _parse(frame: pl.DataFrame, schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    columns = []
    for name, dtype in schema.items():
        column = pl.col(name)
        if isinstance(dtype, pl.Datetime):
            columns.append(column.str.to_datetime(PG_TIMESTAMP, time_zone="UTC").cast(dtype))
        elif isinstance(dtype, pl.Boolean):
            columns.append(column.replace_strict({"t": True, "f": False}, return_dtype=pl.Boolean))
        else:
            columns.append(column.cast(dtype))
    return frame.select(columns)


class PostgresSession:
    def __init__(self, connection: psycopg.Connection):
        self.connection = connection

    def execute(self, sql: str, params: Params | None = None) -> None:
        self.connection.execute(_positional(sql) if params else sql, dict(params) if params else None)

    def rows(self, sql: str, params: Params | None = None) -> list[tuple[Any, ...]]:
        return self.connection.execute(_positional(sql) if params else sql, dict(params) if params else None).fetchall()

    def frame(self, sql: str, schema: Mapping[str, pl.DataType], params: Params | None = None) -> pl.DataFrame:
        # COPY takes no server-side parameters; psycopg merges them into the statement on the client, quoted.
        statement = f"COPY ({_positional(sql) if params else sql}) TO STDOUT (FORMAT csv, HEADER)"
        buffer = io.BytesIO()
        with self.connection.cursor() as cursor, cursor.copy(statement, dict(params) if params else None) as copy:
            for block in copy:
                buffer.write(block)
        text = pl.read_csv(buffer.getvalue(), infer_schema=False) if buffer.tell() else pl.DataFrame()
        return _parse(text, schema)

    def stage(self, name: str, frame: pl.DataFrame) -> None:
        columns = []
        for column, dtype in frame.schema.items():
            kind = PG_TYPES.get(dtype.base_type())
            if kind is None:
                raise TypeError(f"cannot stage column {column!r} of type {dtype} in Postgres")
            columns.append(pgsql.SQL("{} {}").format(pgsql.Identifier(column), pgsql.SQL(kind)))
        table = pgsql.Identifier(name)
        self.connection.execute(pgsql.SQL("DROP TABLE IF EXISTS {}").format(table))
        self.connection.execute(
            pgsql.SQL("CREATE TEMPORARY TABLE {} ({}) ON COMMIT DROP").format(table, pgsql.SQL(", ").join(columns))
        )
        if frame.is_empty():
            return
        data = io.BytesIO()
        frame.write_csv(data, include_header=False, datetime_format="%Y-%m-%d %H:%M:%S%.f%:z")
        with (
            self.connection.cursor() as cursor,
            cursor.copy(pgsql.SQL("COPY {} FROM STDIN (FORMAT csv)").format(table)) as copy,
        ):
            copy.write(data.getvalue())

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        with self.connection.transaction():
            yield


class PostgresBackend:
    # One per database URL and process: SyncState is cheap to construct, and built often, while its idle
    # connections should be shared.
    _shared: ClassVar[dict[tuple[int, str], PostgresBackend]] = {}
    _shared_lock = threading.Lock()

    @classmethod
    def for_url(cls, url: str) -> PostgresBackend:
        with cls._shared_lock:
            key = (os.getpid(), url)
            if key not in cls._shared:
                cls._shared[key] = cls(url)
            return cls._shared[key]

    def __init__(self, url: str):
        self.url = url
        self.where = redact(url)
        self._idle: list[psycopg.Connection] = []
        self._idle_lock = threading.Lock()
        self._pid = os.getpid()

    def _new_connection(self, application: str = "ac-pipeline", settings: str = "") -> psycopg.Connection:
        try:
            connection = psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=10,
                application_name=application,
                # Our schema alone: before it exists, current_schema() is NULL, not `public`, so a table of
                # someone else's there is never taken for ours. Timestamps come back in UTC, as DuckDB gives them.
                options=f"-c search_path={SCHEMA} -c TimeZone=UTC {settings}".strip(),
            )
        except psycopg.OperationalError as error:
            first = " ".join(str(error).split())
            raise StateError(
                f"the sync state database {self.where} is not reachable ({first}); check AC_PIPELINE_STATE and "
                "that the server accepts connections from here"
            ) from None
        # Strings go as `text`, not psycopg's default `unknown`: a parameter used twice in one statement (an
        # insert and a subquery) would otherwise be deduced as two types, and refused.
        connection.adapters.register_dumper(str, StrDumper)
        return connection

    def _take(self) -> psycopg.Connection:
        with self._idle_lock:
            if self._pid != os.getpid():  # a forked child must not share its parent's sockets
                self._idle, self._pid = [], os.getpid()
            while self._idle:
                connection = self._idle.pop()
                if not connection.closed:
                    return connection
        # A new connection checks the schema (and migrates it on first use): another ac-pipeline may have
        # moved it since this process last looked.
        connection = self._new_connection()
        try:
            self._migrate(connection)
        except BaseException:
            connection.close()
            raise
        return connection

    def _give_back(self, connection: psycopg.Connection) -> None:
        healthy = not connection.closed and connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        with self._idle_lock:
            if healthy and self._pid == os.getpid() and len(self._idle) < IDLE_CONNECTIONS:
                self._idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[PostgresSession]:
        connection = self._take()
        try:
            yield PostgresSession(connection)
        except BaseException:
            # Whatever state the failure left the connection in, it is not reused.
            connection.close()
            raise
        self._give_back(connection)

    def keeping_open(self) -> AbstractContextManager[None]:
        """Nothing to do: the pool keeps connections open between sessions already."""
        return contextlib.nullcontext()

    def _migrate(self, connection: psycopg.Connection) -> None:
        version = read_schema_version(connection)
        if version == SCHEMA_VERSION:
            return
        connection.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK])
        try:
            connection.execute(pgsql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(pgsql.Identifier(SCHEMA)))
            version = read_schema_version(connection)
            if version > SCHEMA_VERSION:
                raise StateError(
                    f"the sync state database {self.where} has schema version {version}, newer than this "
                    f"ac-pipeline understands ({SCHEMA_VERSION}); upgrade ac-pipeline, or point AC_PIPELINE_STATE "
                    "at another database"
                )
            if version < SCHEMA_VERSION:
                migrate(connection, version, MIGRATIONS)
        finally:
            connection.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK])

    @contextlib.contextmanager
    def hold(self, name: str, holder: str, wait_seconds: float) -> Iterator[None]:
        # A connection of its own, named for the holder (pg_stat_activity shows it), open for the lock's life.
        # The server's keepalives on it, short: a holder whose machine vanished (no FIN, no RST) is found dead
        # within about a minute and its lock freed, instead of after the kernel's two hours.
        connection = self._new_connection(
            application=f"ac-pipeline {holder}"[:63],
            settings="-c tcp_keepalives_idle=30 -c tcp_keepalives_interval=10 -c tcp_keepalives_count=3",
        )
        try:
            key = f"ac_pipeline {name}"
            query = "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))"
            if not keep_trying(lambda: bool(connection.execute(query, [key]).fetchone()[0]), wait_seconds):  # type: ignore[index]
                raise StateBusy(
                    f"{name} is held by {self._holder(connection, key)} in {self.where}; waited "
                    f"{wait_seconds:g} s. Let it finish, then run again"
                )
            yield
        finally:
            connection.close()  # ending the session lets go of the lock

    @staticmethod
    def _holder(connection: psycopg.Connection, key: str) -> str:
        row = connection.execute(
            """SELECT a.application_name, a.client_addr, a.pid FROM pg_locks l JOIN pg_stat_activity a USING (pid)
               WHERE l.locktype = 'advisory' AND l.granted
                 AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtextextended(%s, 0)""",
            [key],
        ).fetchone()
        if row is None:
            return "another process"
        application, address, pid = row
        return f"{application or 'another process'} (server pid {pid}, from {address or 'a local socket'})"
