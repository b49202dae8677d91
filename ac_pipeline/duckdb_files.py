"""The DuckDB files this project owns (the sync state, the account tables): opening one while another process
may hold it. Their versioned migrations are in ac_pipeline.migrations.

DuckDB lets one process at a time have a file open for writing, and refuses every other process meanwhile,
readers included. Steps run side by side (a backfill runs audiences in parallel), and each holds a file for
milliseconds, so waiting a little is the answer, not failing the step.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

# How long a step waits for another process to let go of a file before giving up.
LOCK_WAIT_SECONDS = 60


def first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def is_lock_error(exc: Exception) -> bool:
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


def wanted_marker(path: Path) -> Path:
    """A file whose mtime says when a process last found `path` locked (see state.duckdb_keep)."""
    return path.with_name(path.name + ".wanted")


def want(path: Path) -> None:
    """Tell a process that keeps `path` open between its writes that this one waits for it."""
    with contextlib.suppress(OSError):  # a read-only folder: the keeper still lets go once idle
        wanted_marker(path).touch()


def stored_schema_version(connection: duckdb.DuckDBPyConnection) -> int:
    """`migrations.read_schema_version` for a DuckDB file, cheaply: asked of a fresh connection, DuckDB's
    `information_schema` (and `duckdb_tables()`) costs 10-20 ms of CPU, as much as opening the file, and a push
    opens the state file for each of its commits. Reading the table itself costs about 1 ms; a file without it
    has version 0. Python replacement scans are off for that read: a missing table must not be taken for a Python
    variable of the same name."""
    connection.execute("SET python_enable_replacements = false")
    try:
        return int(connection.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchall()[0][0])
    except duckdb.CatalogException:
        return 0
    finally:
        connection.execute("RESET python_enable_replacements")


def connect_waiting(
    path: Path, read_only: bool, *, unreadable: Callable[[Exception], Exception], locked: type[Exception]
) -> duckdb.DuckDBPyConnection:
    """Open the file, waiting up to LOCK_WAIT_SECONDS while another process holds it. `unreadable` makes the
    error for a file that cannot be opened for another reason; a file that stays locked raises `locked`."""
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    pause = 0.05
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as exc:
            if not is_lock_error(exc):
                raise unreadable(exc) from None
            want(path)  # a process keeping the file open between its writes lets go of it (state.duckdb_keep)
            if time.monotonic() + pause > deadline:
                raise locked(
                    f"{path} stayed locked by another process for {LOCK_WAIT_SECONDS} s; is something holding it "
                    "open (a DuckDB shell, a notebook)? Close it and run again"
                ) from None
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
