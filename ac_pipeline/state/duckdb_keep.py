"""Keeping the sync state's DuckDB file open between a push's writes, without locking anyone out for longer.

A push writes to the state every half second at sandbox speed 20 (a commit of 2,500 outcomes, an intent-journal
write). Opening the file and closing it again (DuckDB checkpoints on close) costs about 50 ms of CPU once it holds
100,000 contacts: two thirds of the whole commit, and a third of the push's own CPU. So while a push runs
(`keeping`), its sessions share one connection, kept open between them, under three rules that keep every other
process's wait for the file as short as it is when each session opens and closes the file:

- It is kept only while sessions follow each other closely: it is closed `IDLE_SECONDS` after the last one ended
  (at the real limits a push writes every few seconds, and opens the file for each write as before).
- A process that finds the file locked says so: duckdb_files.connect_waiting touches `<file>.wanted` at each
  attempt. The kept connection is then closed at once, or as soon as the session under
  way ends, and sessions open and close the file as they did before, until nobody has wanted it for
  `YIELD_SECONDS`.
- In this process, every session on the file, on any thread, is a cursor of the kept connection while there is
  one: DuckDB refuses a second connection to a file with another configuration (read-only) in one process.

A process that dies lets go of the file with everything else, and its committed writes are in DuckDB's WAL.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from ac_pipeline.duckdb_files import wanted_marker

IDLE_SECONDS = 2.0
YIELD_SECONDS = 2.0
WATCH_SECONDS = 0.05  # how often an idle kept connection looks for someone waiting


def _wanted(path: Path) -> bool:
    try:
        return time.time() - wanted_marker(path).stat().st_mtime < YIELD_SECONDS
    except OSError:
        return False


class _Kept:
    """One file's kept connection in this process. Every field is guarded by `_lock`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.keepers = 0  # `keeping` blocks open on this file
        self.users = 0  # sessions under way on the kept connection
        self.connection: duckdb.DuckDBPyConnection | None = None
        self.last_used = 0.0


_lock = threading.Lock()
_files: dict[str, _Kept] = {}


@contextmanager
def keeping(path: Path) -> Iterator[None]:
    """Let the sessions on `path` share a kept connection until the block ends (see the module docstring)."""
    key = str(path.absolute())
    with _lock:
        kept = _files.setdefault(key, _Kept(path))
        kept.keepers += 1
    try:
        yield
    finally:
        with _lock:
            kept.keepers -= 1
            if kept.keepers == 0:
                if kept.users == 0:
                    _close(kept)
                if kept.connection is None:
                    del _files[key]


def session(
    path: Path, read_only: bool, open_file: Callable[[bool], duckdb.DuckDBPyConnection]
) -> tuple[duckdb.DuckDBPyConnection, Callable[[], None]]:
    """A connection for one session on `path`, and what ends the session: a cursor of the kept connection, or a
    connection of its own from `open_file(read_only)`, closed at the end as before."""
    key = str(path.absolute())
    with _lock:
        kept = _files.get(key)
        if kept is not None and kept.connection is not None:
            return _cursor(kept)
        keep = kept is not None and kept.keepers > 0 and not read_only and not _wanted(path)
    connection = open_file(read_only)  # outside the lock: it may wait for another process
    if kept is not None and keep:
        with _lock:
            if kept.connection is None and kept.keepers > 0:
                # A push writes a few thousand rows at a time: DuckDB's worker threads cost more CPU than they
                # save there (40 commits of 2,500 rows: 2.1 s with two threads, 1.65 s with one).
                connection.execute("SET threads = 1")
                kept.connection = connection
                threading.Thread(target=_watch, args=(kept,), name="state-file-keeper", daemon=True).start()
                return _cursor(kept)
    return connection, connection.close


def _cursor(kept: _Kept) -> tuple[duckdb.DuckDBPyConnection, Callable[[], None]]:
    """A session on the kept connection (the caller holds `_lock`)."""
    assert kept.connection is not None
    kept.users += 1
    cursor = kept.connection.cursor()

    def end() -> None:
        cursor.close()
        with _lock:
            kept.users -= 1
            kept.last_used = time.monotonic()
            if kept.users == 0 and (kept.keepers == 0 or _wanted(kept.path)):
                _close(kept)
                if kept.keepers == 0:
                    _files.pop(str(kept.path.absolute()), None)

    return cursor, end


def _watch(kept: _Kept) -> None:
    """Close the kept connection once it has been idle for IDLE_SECONDS, or idle while someone waits for it."""
    while True:
        time.sleep(WATCH_SECONDS)
        with _lock:
            if kept.connection is None:
                return
            if kept.users == 0 and (time.monotonic() - kept.last_used >= IDLE_SECONDS or _wanted(kept.path)):
                _close(kept)
                return


def _close(kept: _Kept) -> None:
    if kept.connection is not None:
        connection, kept.connection = kept.connection, None
        connection.close()


def kept_open(path: Path) -> bool:
    """Whether this process keeps `path` open now (for tests)."""
    with _lock:
        kept = _files.get(str(path.absolute()))
        return kept is not None and kept.connection is not None
