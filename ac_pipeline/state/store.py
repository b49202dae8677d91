"""The sync state: what ActiveCampaign is known to hold, per audience, and what every sync did.

It lives in a DuckDB file of its own (the customer 360 may be read-only, and belongs to someone else):

- `snapshot`: per audience and email, the contact as ActiveCampaign confirmed it: the hash of the
  fields it holds, its contact id when known, and its list status: `member` (subscribed by us),
  `removed` (unsubscribed by us: we may re-add them), `opted_out` (they unsubscribed themselves:
  never re-subscribed, kept with the reason) or `rejected` (ActiveCampaign refused the contact, e.g.
  an address on its exclusion list: not sent again until the contact's fields change).
- `ledger`: one row per contact per operation per run: op, batch, status, reason.
- `runs`: per run and audience, the counts.

The snapshot moves only through `commit_confirmed`, with what ActiveCampaign confirmed, in one
transaction together with the ledger rows that explain it. Connections are opened for one unit of
work and closed again: DuckDB allows one writing process per file, and Dagster runs each step in its
own process.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl

from ac_pipeline.duckdb_files import connect_waiting, first_line, is_lock_error, migrate, read_schema_version
from ac_pipeline.state.schema import (
    JOURNAL_COLUMNS,
    LEDGER_COLUMNS,
    MIGRATIONS,
    SCHEMA_VERSION,
    SNAPSHOT_COLUMNS,
    SNAPSHOT_STATUSES,
)


class StateError(RuntimeError):
    """The state file cannot be used as it is; the message says what to do."""


def _now() -> datetime:
    return datetime.now(UTC)


def _conform(frame: pl.DataFrame, columns: dict[str, pl.DataType], what: str) -> pl.DataFrame:
    missing = [name for name in ("email",) if name not in frame.columns]
    if missing:
        raise ValueError(f"{what} needs an 'email' column; got {frame.columns}")
    return frame.select(
        [pl.col(n).cast(t) if n in frame.columns else pl.lit(None, dtype=t).alias(n) for n, t in columns.items()]
    )


def upsert_snapshot(
    connection: duckdb.DuckDBPyConnection, audience: str, run_id: str, rows: pl.DataFrame, now: datetime
) -> None:
    """Write snapshot rows (SNAPSHOT_COLUMNS), inside the caller's transaction, as table `snapshot_rows`.

    A contact id or hash already known is kept when the new row has none; `removed_at` lives only as long as
    the status is `removed`."""
    connection.register("snapshot_rows", _conform(rows, SNAPSHOT_COLUMNS, "snapshot rows"))
    connection.execute(
        """INSERT INTO snapshot
           SELECT $audience, email, fields_hash, contact_id, status, reason, $run_id, $now, removed_at
           FROM snapshot_rows
           ON CONFLICT (audience, email) DO UPDATE SET
               fields_hash = coalesce(excluded.fields_hash, fields_hash),
               contact_id = coalesce(excluded.contact_id, contact_id),
               status = excluded.status,
               reason = excluded.reason,
               run_id = excluded.run_id,
               updated_at = excluded.updated_at,
               removed_at = CASE WHEN excluded.status = 'removed'
                   THEN coalesce(excluded.removed_at, snapshot.removed_at) END""",
        {"audience": audience, "run_id": run_id, "now": now},
    )


def append_ledger(
    connection: duckdb.DuckDBPyConnection, audience: str, run_id: str, rows: pl.DataFrame, now: datetime
) -> None:
    """Append ledger rows (LEDGER_COLUMNS), inside the caller's transaction."""
    connection.register("ledger_rows", _conform(rows, LEDGER_COLUMNS, "ledger rows"))
    connection.execute(
        "INSERT INTO ledger SELECT $run_id, $audience, email, op, batch, status, reason, $now FROM ledger_rows",
        {"audience": audience, "run_id": run_id, "now": now},
    )


def write_destination(
    connection: duckdb.DuckDBPyConnection, audience: str, account: str, list_id: str, now: datetime
) -> None:
    """Record which account and list the audience's snapshot describes."""
    connection.execute(
        """INSERT INTO destination VALUES (?, ?, ?, ?)
           ON CONFLICT (audience) DO UPDATE SET
               account = excluded.account, list_id = excluded.list_id, recorded_at = excluded.recorded_at""",
        [audience, account, list_id, now],
    )


class SyncState:
    """The state file. Cheap to construct; every method opens and closes its own connection."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived connection, on a migrated database. Never hold one across network calls."""
        if read_only and not self.path.exists():
            read_only = False  # first use: create it
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = self._open(read_only)
        try:
            connection.execute("SET enable_progress_bar = false")  # no bars on a step's stderr
            version = read_schema_version(connection)
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
            yield connection
        except (
            duckdb.IOException,
            duckdb.SerializationException,
            duckdb.InternalException,
            duckdb.FatalException,
        ) as exc:
            # A damaged file often opens and fails at the first read of a damaged block.
            if is_lock_error(exc):
                raise
            raise self._unreadable(exc) from None
        finally:
            connection.close()

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        return connect_waiting(self.path, read_only, unreadable=self._unreadable, locked=StateError)

    def _unreadable(self, exc: Exception) -> StateError:
        first = first_line(exc)
        return StateError(
            f"the sync state file {self.path} cannot be read ({first}); it is damaged or not a DuckDB file. "
            "Restore it from a backup, or move it aside: without it each audience's next sync reads its list back "
            "and rebuilds the snapshot from it (a resync), taking every unsubscribed contact for an opt-out"
        )

    def schema_version(self) -> int:
        with self.connect(read_only=True) as connection:
            return read_schema_version(connection)

    # --- the snapshot -------------------------------------------------------------------------

    def snapshot(self, audience: str) -> pl.DataFrame:
        """What ActiveCampaign holds for the audience: email, fields_hash, contact_id, status, reason, removed_at."""
        with self.connect(read_only=True) as connection:
            frame = connection.sql(
                "SELECT email, fields_hash, contact_id, status, reason, removed_at FROM snapshot WHERE audience = $audience",
                params={"audience": audience},
            ).pl()
        return frame.cast(SNAPSHOT_COLUMNS)

    def snapshot_counts(self, audience: str) -> dict[str, int]:
        with self.connect(read_only=True) as connection:
            rows = connection.sql(
                "SELECT status, count(*) FROM snapshot WHERE audience = $audience GROUP BY status",
                params={"audience": audience},
            ).fetchall()
        counts = dict.fromkeys(SNAPSHOT_STATUSES, 0)
        counts.update({status: n for status, n in rows})
        return counts

    def commit_confirmed(
        self, audience: str, run_id: str, confirmed: pl.DataFrame, ledger: pl.DataFrame | None = None
    ) -> int:
        """Record what ActiveCampaign confirmed, in one transaction: the only way a push moves the snapshot
        (reconciliation's corrections, from what the list holds, go through state.readback).

        `confirmed` has one row per contact: email, status (member/removed/opted_out/rejected), and
        fields_hash, contact_id, reason, removed_at where known. Their intent-journal rows are cleared. A contact id already known is kept when the
        new row has none. `ledger` rows (email, op, batch, status, reason) are appended in the
        same transaction. Returns the number of snapshot rows written.
        """
        confirmed = _conform(confirmed, SNAPSHOT_COLUMNS, "confirmed rows")
        if confirmed.get_column("email").is_duplicated().any():
            raise ValueError("confirmed rows name the same email twice; commit one outcome per contact")
        bad = confirmed.filter(~pl.col("status").is_in(SNAPSHOT_STATUSES))
        if not bad.is_empty():
            raise ValueError(f"snapshot status must be one of {', '.join(SNAPSHOT_STATUSES)}, got {bad['status'][0]!r}")
        ledger_rows = (
            _conform(ledger if ledger is not None else pl.DataFrame(), LEDGER_COLUMNS, "ledger rows")
            if ledger is not None and not ledger.is_empty()
            else None
        )
        now = _now()
        with self.connect() as connection:
            connection.execute("BEGIN TRANSACTION")
            try:
                if not confirmed.is_empty():
                    upsert_snapshot(connection, audience, run_id, confirmed, now)
                    # Settled: no longer in flight.
                    connection.execute(
                        "DELETE FROM journal WHERE audience = $audience AND email IN (SELECT email FROM snapshot_rows)",
                        {"audience": audience},
                    )
                if ledger_rows is not None:
                    append_ledger(connection, audience, run_id, ledger_rows, now)
                connection.execute("COMMIT")
            except Exception:
                connection.execute("ROLLBACK")
                raise
        return confirmed.height

    # --- the ledger and runs ------------------------------------------------------------------

    def ledger(self, audience: str, run_id: str | None = None) -> pl.DataFrame:
        query = "SELECT run_id, email, op, batch, status, reason, recorded_at FROM ledger WHERE audience = $audience"
        params: dict[str, str] = {"audience": audience}
        if run_id is not None:
            query += " AND run_id = $run_id"
            params["run_id"] = run_id
        with self.connect(read_only=True) as connection:
            return connection.sql(query + " ORDER BY recorded_at", params=params).pl()

    def start_run(self, audience: str, run_id: str, dry_run: bool = False) -> None:
        with self.connect() as connection:
            connection.execute(
                """INSERT INTO runs (run_id, audience, started_at, status, dry_run) VALUES ($run_id, $audience, $now, 'started', $dry)
                   ON CONFLICT (run_id, audience) DO UPDATE SET status = 'started', finished_at = NULL""",
                {"run_id": run_id, "audience": audience, "now": _now(), "dry": dry_run},
            )

    def finish_run(self, audience: str, run_id: str, status: str, counts: dict[str, float]) -> None:
        allowed = (
            "adds",
            "updates",
            "removals",
            "readds",
            "confirmed",
            "failed",
            "opted_out",
            "skipped",
            "requests",
            "seconds",
        )
        unknown = set(counts) - set(allowed)
        if unknown:
            raise ValueError(f"unknown run counts {sorted(unknown)}; known: {allowed}")
        assignments = ", ".join(f"{name} = ${name}" for name in counts)
        with self.connect() as connection:
            connection.execute(
                f"UPDATE runs SET status = $status, finished_at = $now{', ' + assignments if assignments else ''} "
                "WHERE run_id = $run_id AND audience = $audience",
                {"status": status, "now": _now(), "run_id": run_id, "audience": audience, **counts},
            )

    def runs(self, audience: str | None = None) -> pl.DataFrame:
        query, params = "SELECT * FROM runs", {}
        if audience is not None:
            query, params = query + " WHERE audience = $audience", {"audience": audience}
        with self.connect(read_only=True) as connection:
            return connection.sql(query + " ORDER BY started_at", params=params).pl()

    # --- the intent journal -------------------------------------------------------------------

    def journal_intents(self, audience: str, rows: pl.DataFrame, run_id: str) -> None:
        """Record, in one transaction, that these contacts (email, op) are about to be sent.

        Called before their batch goes out; `commit_confirmed` clears them when their outcome is known.
        A row still here after a crash is a change whose outcome nobody saw: the next push asks
        ActiveCampaign what became of it instead of guessing.
        """
        rows = _conform(rows, JOURNAL_COLUMNS, "journal rows")
        if rows.is_empty():
            return
        with self.connect() as connection:
            connection.execute("BEGIN TRANSACTION")
            try:
                connection.register("intended_rows", rows)
                connection.execute(
                    """INSERT INTO journal SELECT $audience, email, op, $run_id, $now FROM intended_rows
                       ON CONFLICT (audience, email) DO UPDATE SET
                           op = excluded.op, run_id = excluded.run_id, intended_at = excluded.intended_at""",
                    {"audience": audience, "run_id": run_id, "now": _now()},
                )
                connection.execute("COMMIT")
            except Exception:
                connection.execute("ROLLBACK")
                raise

    def clear_journal_before(self, audience: str, before: datetime) -> int:
        """Drop intents written before `before`: an earlier attempt's, once a push has examined them all."""
        with self.connect() as connection:
            stale = connection.execute(
                "SELECT count(*) FROM journal WHERE audience = ? AND intended_at < ?", [audience, before]
            ).fetchall()[0][0]
            if stale:
                connection.execute("DELETE FROM journal WHERE audience = ? AND intended_at < ?", [audience, before])
        return int(stale)

    def journal(self, audience: str) -> pl.DataFrame:
        """The contacts an earlier push intended to send and whose outcome was never recorded:
        email, op, run_id, intended_at."""
        with self.connect(read_only=True) as connection:
            return connection.sql(
                "SELECT email, op, run_id, intended_at FROM journal WHERE audience = $audience",
                params={"audience": audience},
            ).pl()

    # --- the destination ----------------------------------------------------------------------

    def destination(self, audience: str) -> tuple[str, str] | None:
        """(account, list id) the audience's snapshot describes, or None when none was recorded."""
        with self.connect(read_only=True) as connection:
            rows = connection.execute(
                "SELECT account, list_id FROM destination WHERE audience = ?", [audience]
            ).fetchall()
        return (str(rows[0][0]), str(rows[0][1])) if rows else None

    def record_destination(self, audience: str, account: str, list_id: str) -> None:
        with self.connect() as connection:
            write_destination(connection, audience, account, list_id, _now())

    def forget(self, audience: str) -> dict[str, int]:
        """Drop what the state believes about the audience's list (snapshot, journal, destination, read-back), in
        one transaction, keeping the ledger and runs as history. The next sync then treats the list as
        unknown and resyncs from it. Returns the rows removed per table."""
        removed: dict[str, int] = {}
        with self.connect() as connection:
            connection.execute("BEGIN TRANSACTION")
            try:
                for table in ("snapshot", "journal", "destination", "list_members", "list_reads"):
                    count = connection.execute(f"SELECT count(*) FROM {table} WHERE audience = ?", [audience])
                    removed[table] = int(count.fetchall()[0][0])
                    connection.execute(f"DELETE FROM {table} WHERE audience = ?", [audience])
                connection.execute("COMMIT")
            except Exception:
                connection.execute("ROLLBACK")
                raise
        return removed
