"""Where the sync state lives: a DuckDB file (the embedded default) or a Postgres database (production), behind
one small interface, so that SyncState and the read-back's state hold their SQL once.

A `Session` is one short-lived connection. Its SQL is written in the dialect DuckDB and Postgres share, with
named parameters written `$name`. Frames go in with `stage` (a temporary table, dropped at the end of the
transaction) and come out with `frame`, cast to the schema the caller names, so that both backends give the
same Polars types. A `Backend` opens sessions on a migrated database and holds named locks across processes.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

import polars as pl

Params = Mapping[str, Any]


class StateError(RuntimeError):
    """The sync state cannot be used as it is; the message says what to do."""


class StateBusy(StateError):
    """Another process holds the lock this one waited for; the message names the holder."""


class Session(Protocol):
    def execute(self, sql: str, params: Params | None = None) -> None: ...

    def rows(self, sql: str, params: Params | None = None) -> list[tuple[Any, ...]]: ...

    def frame(self, sql: str, schema: Mapping[str, pl.DataType], params: Params | None = None) -> pl.DataFrame:
        """The query's rows, cast to `schema` (its columns, in its order)."""
        ...

    def stage(self, name: str, frame: pl.DataFrame) -> None:
        """Make `frame` readable as table `name` until the transaction ends. Call it inside `transaction()`."""
        ...

    def transaction(self) -> AbstractContextManager[None]: ...


class Backend(Protocol):
    # Where the state is, for messages: a path, or a URL without its password.
    where: str

    def connect(self, read_only: bool = False) -> AbstractContextManager[Session]: ...

    def keeping_open(self) -> AbstractContextManager[None]:
        """Until the block ends, sessions may share a connection kept open between them (a push's writes), as
        long as that never makes another process wait for the state longer than sessions of their own would."""
        ...

    def hold(self, name: str, holder: str, wait_seconds: float) -> AbstractContextManager[None]:
        """Hold the lock `name` until the block ends, across processes and machines that share this state,
        waiting up to `wait_seconds` for its holder (named by its own `holder`) to let go. A process that dies
        lets go. Raises StateBusy when the wait runs out."""
        ...


def open_backend(location: Path | str) -> Backend:
    """A Postgres URL (`postgresql://`, `postgres://`, `postgresql+<driver>://`), or else a DuckDB file."""
    text = str(location)
    # SQLAlchemy's spelling (postgresql+psycopg2://, as Dagster's own storage needs it) names the same database:
    # one URL serves both.
    text = re.sub(r"^(postgres(?:ql)?)\+\w+://", r"\1://", text)
    if text.startswith(("postgresql://", "postgres://")):
        from ac_pipeline.state.postgres_backend import PostgresBackend  # psycopg: only where Postgres is used

        return PostgresBackend.for_url(text)
    if "://" in text:
        raise StateError(
            f"AC_PIPELINE_STATE={text.split('://')[0]}://... is not a state this ac-pipeline can use: give a "
            "DuckDB file path, or a postgresql://user@host:port/database URL"
        )
    from ac_pipeline.state.duckdb_backend import DuckDBBackend

    return DuckDBBackend(Path(text))


def keep_trying(attempt: Callable[[], bool], wait_seconds: float) -> bool:
    """Call `attempt` until it returns True or `wait_seconds` have passed (then False), backing off to 1 s."""
    deadline, pause = time.monotonic() + wait_seconds, 0.05
    while not attempt():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(pause, left))
        pause = min(pause * 2, 1.0)
    return True


def cast_frame(frame: pl.DataFrame, schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """`frame`'s columns named in `schema`, in its order and types."""
    return frame.select([pl.col(name).cast(dtype) for name, dtype in schema.items()])
