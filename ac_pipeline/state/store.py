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
transaction together with the ledger rows that explain it. The state is a DuckDB file by default, or a
Postgres database in production (`AC_PIPELINE_STATE`); state.backend says how both are reached, and the SQL
here is written once for both.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from ac_pipeline.state.backend import Session, open_backend
from ac_pipeline.state.schema import (
    JOURNAL_COLUMNS,
    JOURNAL_ROWS,
    LEDGER_COLUMNS,
    LEDGER_ROWS,
    RUNS_COLUMNS,
    RUNS_COLUMNS_NOT_COUNTS,
    SNAPSHOT_COLUMNS,
    SNAPSHOT_STATUSES,
)

# How long a push or a read-back waits for another one of the same audience to finish before it gives up
# (the step fails, saying who holds it, and its retry policy tries again later).
HOLD_WAIT_SECONDS = 120.0


def _now() -> datetime:
    return datetime.now(UTC)


def _conform(frame: pl.DataFrame, columns: dict[str, pl.DataType], what: str) -> pl.DataFrame:
    missing = [name for name in ("email",) if name not in frame.columns]
    if missing:
        raise ValueError(f"{what} needs an 'email' column; got {frame.columns}")
    return frame.select(
        [pl.col(n).cast(t) if n in frame.columns else pl.lit(None, dtype=t).alias(n) for n, t in columns.items()]
    )


def _journal(session: Session, audience: str, run_id: str, rows: pl.DataFrame) -> None:
    """Write intent-journal rows (JOURNAL_COLUMNS), inside the caller's transaction."""
    if rows.is_empty():
        return
    session.stage("intended_rows", rows)
    session.execute(
        """INSERT INTO journal SELECT $audience, email, op, $run_id, $now FROM intended_rows
           ON CONFLICT (audience, email) DO UPDATE SET
               op = excluded.op, run_id = excluded.run_id, intended_at = excluded.intended_at""",
        {"audience": audience, "run_id": run_id, "now": _now()},
    )


def upsert_snapshot(session: Session, audience: str, run_id: str, rows: pl.DataFrame, now: datetime) -> None:
    """Write snapshot rows (SNAPSHOT_COLUMNS), inside the caller's transaction, as table `snapshot_rows`.

    A contact id, customer id or hash already known is kept when the new row has none; `removed_at` lives only
    as long as the status is `removed`."""
    session.stage("snapshot_rows", _conform(rows, SNAPSHOT_COLUMNS, "snapshot rows"))
    session.execute(
        """INSERT INTO snapshot (audience, email, fields_hash, contact_id, status, reason, run_id, updated_at,
                                 removed_at, customer_id)
           SELECT $audience, email, fields_hash, contact_id, status, reason, $run_id, $now, removed_at, customer_id
           FROM snapshot_rows
           ON CONFLICT (audience, email) DO UPDATE SET
               fields_hash = coalesce(excluded.fields_hash, snapshot.fields_hash),
               contact_id = coalesce(excluded.contact_id, snapshot.contact_id),
               customer_id = coalesce(excluded.customer_id, snapshot.customer_id),
               status = excluded.status,
               reason = excluded.reason,
               run_id = excluded.run_id,
               updated_at = excluded.updated_at,
               removed_at = CASE WHEN excluded.status = 'removed'
                   THEN coalesce(excluded.removed_at, snapshot.removed_at) END""",
        {"audience": audience, "run_id": run_id, "now": now},
    )


def append_ledger(session: Session, audience: str, run_id: str, rows: pl.DataFrame, now: datetime) -> None:
    """Append ledger rows (LEDGER_COLUMNS), inside the caller's transaction."""
    session.stage("ledger_rows", _conform(rows, LEDGER_COLUMNS, "ledger rows"))
    session.execute(
        "INSERT INTO ledger SELECT $run_id, $audience, email, op, batch, status, reason, $now FROM ledger_rows",
        {"audience": audience, "run_id": run_id, "now": now},
    )


def write_destination(session: Session, audience: str, account: str, list_id: str, now: datetime) -> None:
    """Record which account and list the audience's snapshot describes."""
    session.execute(
        """INSERT INTO destination VALUES ($audience, $account, $list_id, $now)
           ON CONFLICT (audience) DO UPDATE SET
               account = excluded.account, list_id = excluded.list_id, recorded_at = excluded.recorded_at""",
        {"audience": audience, "account": account, "list_id": list_id, "now": now},
    )


class SyncState:
    """The sync state, a DuckDB file or a Postgres URL. Cheap to construct; every method opens a short-lived
    session of its own, never held across network calls."""

    def __init__(self, location: Path | str):
        self.backend = open_backend(location)
        # Where it is, for messages (a URL's password left out).
        self.where = self.backend.where

    def connect(self, read_only: bool = False) -> AbstractContextManager[Session]:
        """A session on a migrated database."""
        return self.backend.connect(read_only)

    def keeping_open(self) -> AbstractContextManager[None]:
        """Sessions until the block ends may share one connection (Backend.keeping_open): for a push's writes."""
        return self.backend.keeping_open()

    def hold(self, audience: str, holder: str, wait_seconds: float = HOLD_WAIT_SECONDS) -> AbstractContextManager[None]:
        """Hold the audience for one push or read-back: two of one audience never interleave, on any
        orchestrator and any number of machines (the lock lives with the state). See Backend.hold."""
        return self.backend.hold(f"audience {audience}", holder, wait_seconds)

    def schema_version(self) -> int:
        with self.connect(read_only=True) as session:
            return int(session.rows("SELECT coalesce(max(version), 0) FROM schema_version")[0][0])

    # --- the snapshot -------------------------------------------------------------------------

    def snapshot(self, audience: str) -> pl.DataFrame:
        """What ActiveCampaign holds for the audience: email, fields_hash, contact_id, status, reason, removed_at,
        customer_id."""
        with self.connect(read_only=True) as session:
            return session.frame(
                f"SELECT {', '.join(SNAPSHOT_COLUMNS)} FROM snapshot WHERE audience = $audience",
                SNAPSHOT_COLUMNS,
                {"audience": audience},
            )

    def snapshot_counts(self, audience: str) -> dict[str, int]:
        with self.connect(read_only=True) as session:
            rows = session.rows(
                "SELECT status, count(*) FROM snapshot WHERE audience = $audience GROUP BY status",
                {"audience": audience},
            )
        counts = dict.fromkeys(SNAPSHOT_STATUSES, 0)
        counts.update({status: int(n) for status, n in rows})
        return counts

    def commit_confirmed(
        self,
        audience: str,
        run_id: str,
        confirmed: pl.DataFrame,
        ledger: pl.DataFrame | None = None,
        intents: pl.DataFrame | None = None,
    ) -> int:
        """Record what ActiveCampaign confirmed, in one transaction: the only way a push moves the snapshot
        (reconciliation's corrections, from what the list holds, go through state.readback).

        `confirmed` has one row per contact: email, status (member/removed/opted_out/rejected), and
        fields_hash, contact_id, reason, removed_at where known. Their intent-journal rows are cleared. A contact
        id already known is kept when the new row has none. `ledger` rows (email, op, batch, status, reason) are
        appended in the same transaction, and `intents` (email, op) journaled after the clearing, as
        `journal_intents` would: one transaction where a push has both to write costs one opening of the file.
        Returns the number of snapshot rows written.
        """
        confirmed = _conform(confirmed, SNAPSHOT_COLUMNS, "confirmed rows")
        if confirmed.get_column("email").is_duplicated().any():
            raise ValueError("confirmed rows name the same email twice; commit one outcome per contact")
        bad = confirmed.filter(~pl.col("status").is_in(SNAPSHOT_STATUSES))
        if not bad.is_empty():
            raise ValueError(f"snapshot status must be one of {', '.join(SNAPSHOT_STATUSES)}, got {bad['status'][0]!r}")
        ledger_rows = (
            _conform(ledger, LEDGER_COLUMNS, "ledger rows") if ledger is not None and not ledger.is_empty() else None
        )
        now = _now()
        with self.connect() as session, session.transaction():
            if not confirmed.is_empty():
                upsert_snapshot(session, audience, run_id, confirmed, now)
                # Settled: no longer in flight.
                session.execute(
                    "DELETE FROM journal WHERE audience = $audience AND email IN (SELECT email FROM snapshot_rows)",
                    {"audience": audience},
                )
            if ledger_rows is not None:
                append_ledger(session, audience, run_id, ledger_rows, now)
            if intents is not None:
                _journal(session, audience, run_id, _conform(intents, JOURNAL_COLUMNS, "journal rows"))
        return confirmed.height

    # --- the ledger and runs ------------------------------------------------------------------

    def ledger(self, audience: str, run_id: str | None = None) -> pl.DataFrame:
        query = "SELECT run_id, email, op, batch, status, reason, recorded_at FROM ledger WHERE audience = $audience"
        params: dict[str, str] = {"audience": audience}
        if run_id is not None:
            query += " AND run_id = $run_id"
            params["run_id"] = run_id
        with self.connect(read_only=True) as session:
            return session.frame(query + " ORDER BY recorded_at", LEDGER_ROWS, params)

    def start_run(self, audience: str, run_id: str, dry_run: bool = False) -> None:
        with self.connect() as session:
            session.execute(
                """INSERT INTO runs (run_id, audience, started_at, status, dry_run) VALUES ($run_id, $audience, $now, 'started', $dry)
                   ON CONFLICT (run_id, audience) DO UPDATE SET status = 'started', finished_at = NULL""",
                {"run_id": run_id, "audience": audience, "now": _now(), "dry": dry_run},
            )

    def finish_run(self, audience: str, run_id: str, status: str, counts: dict[str, float]) -> None:
        allowed = [name for name in RUNS_COLUMNS if name not in RUNS_COLUMNS_NOT_COUNTS]
        unknown = set(counts) - set(allowed)
        if unknown:
            raise ValueError(f"unknown run counts {sorted(unknown)}; known: {allowed}")
        assignments = ", ".join(f"{name} = ${name}" for name in counts)
        with self.connect() as session:
            session.execute(
                f"UPDATE runs SET status = $status, finished_at = $now{', ' + assignments if assignments else ''} "
                "WHERE run_id = $run_id AND audience = $audience",
                {"status": status, "now": _now(), "run_id": run_id, "audience": audience, **counts},
            )

    def runs(self, audience: str | None = None) -> pl.DataFrame:
        query, params = f"SELECT {', '.join(RUNS_COLUMNS)} FROM runs", {}
        if audience is not None:
            query, params = query + " WHERE audience = $audience", {"audience": audience}
        with self.connect(read_only=True) as session:
            return session.frame(query + " ORDER BY started_at", RUNS_COLUMNS, params)

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
        with self.connect() as session, session.transaction():
            _journal(session, audience, run_id, rows)

    def clear_journal_before(self, audience: str, before: datetime) -> int:
        """Drop intents written before `before`: an earlier attempt's, once a push has examined them all."""
        params = {"audience": audience, "before": before}
        with self.connect() as session, session.transaction():
            stale = int(
                session.rows(
                    "SELECT count(*) FROM journal WHERE audience = $audience AND intended_at < $before", params
                )[0][0]
            )
            if stale:
                session.execute("DELETE FROM journal WHERE audience = $audience AND intended_at < $before", params)
        return stale

    def journal(self, audience: str) -> pl.DataFrame:
        """The contacts an earlier push intended to send and whose outcome was never recorded:
        email, op, run_id, intended_at."""
        with self.connect(read_only=True) as session:
            return session.frame(
                "SELECT email, op, run_id, intended_at FROM journal WHERE audience = $audience",
                JOURNAL_ROWS,
                {"audience": audience},
            )

    # --- the destination ----------------------------------------------------------------------

    def destination(self, audience: str) -> tuple[str, str] | None:
        """(account, list id) the audience's snapshot describes, or None when none was recorded."""
        with self.connect(read_only=True) as session:
            rows = session.rows(
                "SELECT account, list_id FROM destination WHERE audience = $audience", {"audience": audience}
            )
        return (str(rows[0][0]), str(rows[0][1])) if rows else None

    def record_destination(self, audience: str, account: str, list_id: str) -> None:
        with self.connect() as session:
            write_destination(session, audience, account, list_id, _now())

    def forget(self, audience: str) -> dict[str, int]:
        """Drop what the state believes about the audience's list (snapshot, journal, destination, read-back), in
        one transaction, keeping the ledger and runs as history. The next sync then treats the list as
        unknown and resyncs from it. Returns the rows removed per table."""
        removed: dict[str, int] = {}
        params = {"audience": audience}
        with self.connect() as session, session.transaction():
            for table in ("snapshot", "journal", "destination", "list_members", "list_reads"):
                removed[table] = int(
                    session.rows(f"SELECT count(*) FROM {table} WHERE audience = $audience", params)[0][0]
                )
                session.execute(f"DELETE FROM {table} WHERE audience = $audience", params)
        return removed
