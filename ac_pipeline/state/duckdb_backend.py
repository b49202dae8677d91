"""The sync state in a DuckDB file: the embedded default (`data/state.duckdb`).

Connections are opened for one unit of work and closed again: DuckDB allows one writing process per file, and
Dagster runs each step in its own process. The one exception is a push's writes, which come so often at high
speeds that opening the file for each cost a third of the push's CPU: they share a connection kept open between
them, which is let go whenever another process waits for the file (state.duckdb_keep). Locks are `flock` files
beside the state file: the kernel lets go of them when their process dies, however it dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from ac_pipeline.duckdb_files import connect_waiting, first_line, is_lock_error, stored_schema_version
from ac_pipeline.migrations import migrate
from ac_pipeline.state import duckdb_keep
from ac_pipeline.state.backend import Params, StateBusy, StateError, cast_frame, keep_trying
from ac_pipeline.state.schema import MIGRATIONS, SCHEMA_VERSION

# What DuckDB raises on a damaged file (and on a locked one: is_lock_error tells them apart).
DAMAGE_ERRORS = (duckdb.IOException, duckdb.SerializationException, duckdb.InternalException, duckdb.FatalException)


class DuckDBSession:
    def __init__(self, connection: duckdb.DuckDBPyConnection):
        self.connection = connection

    def execute(self, sql: str, params: Params | None = None) -> None:
        self.connection.execute(sql, dict(params or {}))

    def rows(self, sql: str, params: Params | None = None) -> list[tuple[Any, ...]]:
        return self.connection.execute(sql, dict(params or {})).fetchall()

    def frame(self, sql: str, schema: Mapping[str, pl.DataType], params: Params | None = None) -> pl.DataFrame:
        return cast_frame(self.connection.sql(sql, params=dict(params or {})).pl(), schema)

    def stage(self, name: str, frame: pl.DataFrame) -> None:
        self.connection.register(name, frame)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        self.connection.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        self.connection.execute("COMMIT")


class DuckDBBackend:
    def __init__(self, path: Path):
        self.path = path
        self.where = str(path)

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[DuckDBSession]:
        """A short-lived session on a migrated database: a connection of its own, or a cursor of the one a push
        keeps open (`keeping_open`). Never hold one across network calls."""
        if read_only and not self.path.exists():
            read_only = False  # first use: create it
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        connection, end = duckdb_keep.session(self.path, read_only, self._open_migrated)
        try:
            yield DuckDBSession(connection)
        except DAMAGE_ERRORS as exc:
            # A damaged file often opens and fails at the first read of a damaged block.
            if is_lock_error(exc):
                raise
            raise self._unreadable(exc) from None
        finally:
            end()

    def keeping_open(self) -> AbstractContextManager[None]:
        """Let the sessions until the block ends share one connection (state.duckdb_keep: a push's writes)."""
        return duckdb_keep.keeping(self.path)

    def _open_migrated(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        connection = self._open(read_only)
        try:
            connection.execute("SET enable_progress_bar = false")  # no bars on a step's stderr
            version = stored_schema_version(connection)
            if version < SCHEMA_VERSION:
                if read_only:
                    connection.close()
                    connection = self._open(read_only=False)
                migrate(connection, version, MIGRATIONS)
            elif version > SCHEMA_VERSION:
                raise StateError(
                    f"{self.path} has schema version {version}, newer than this ac-pipeline understands "
                    f"({SCHEMA_VERSION}); upgrade ac-pipeline, or point AC_PIPELINE_STATE at another file"
                )
        except DAMAGE_ERRORS as exc:
            connection.close()
            if is_lock_error(exc):
                raise
            raise self._unreadable(exc) from None
        except BaseException:
            connection.close()
            raise
        return connection

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        return connect_waiting(self.path, read_only, unreadable=self._unreadable, locked=StateError)

    def _unreadable(self, exc: Exception) -> StateError:
        first = first_line(exc)
        return StateError(
            f"the sync state file {self.path} cannot be read ({first}); it is damaged or not a DuckDB file. "
            "Restore it from a backup, or move it aside: without it each audience's next sync reads its list back "
            "and rebuilds the snapshot from it (a resync), taking every unsubscribed contact for an opt-out"
        )

    @contextlib.contextmanager
    def hold(self, name: str, holder: str, wait_seconds: float) -> Iterator[None]:
        folder = self.path.with_name(self.path.name + ".locks")
        folder.mkdir(parents=True, exist_ok=True)
        # A readable name, made safe for a file name, and a hash so that two names never share a file.
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:80]
        lock_path = folder / f"{safe}-{hashlib.sha256(name.encode()).hexdigest()[:12]}.lock"
        descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:

            def attempt() -> bool:
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return False
                return True

            if not keep_trying(attempt, wait_seconds):
                current = os.pread(descriptor, 4096, 0).decode(errors="replace").strip() or "unknown"
                raise StateBusy(
                    f"{name} is held by {current} (lock file {lock_path}); waited {wait_seconds:g} s. "
                    "Let it finish, then run again"
                )
            # Who holds it, for the message another process gives while it waits.
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, f"{holder} (pid {os.getpid()})".encode(), 0)
            yield
        finally:
            os.close(descriptor)  # closing lets go of the lock
