"""What became of each contact of a push, and how it reaches the sync state.

Every contact a push takes on ends with exactly one outcome: `confirmed` (ActiveCampaign holds the
change), `opted_out` (they unsubscribed themselves: recorded, never re-subscribed), `rejected`
(ActiveCampaign or our own pre-send checks refused it, with the reason: not resent until its fields
change) or `failed` (a passing failure: stays out of the snapshot, so the next attempt sends it again).
"""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import polars as pl

from ac_pipeline.state.schema import LEDGER_COLUMNS, SNAPSHOT_COLUMNS
from ac_pipeline.state.store import SyncState

OUTCOMES = ("confirmed", "opted_out", "rejected", "failed")


@dataclass
class Outcome:
    row: dict[str, Any]
    status: str  # one of OUTCOMES
    batch: str | None = None
    reason: str | None = None
    contact_id: str | None = None
    # For a confirmed removal: when ActiveCampaign recorded our unsubscribe (see sync.consent).
    removed_at: datetime | None = None


def _counts() -> dict[str, int]:
    return dict.fromkeys(OUTCOMES, 0)


@dataclass
class PushResult:
    pending: dict[str, int]  # changes still to send when this attempt started, by op
    already_confirmed: int  # changes an earlier attempt had confirmed (resumed past)
    outcomes: dict[str, int] = field(default_factory=_counts)
    # Contacts an earlier, crashed attempt had in flight, settled by asking ActiveCampaign.
    settled_from_journal: int = 0
    batches: int = 0
    batches_resubmitted: int = 0
    # Batches settled by their import callback, without asking ActiveCampaign (import_callbacks.py).
    batches_called_back: int = 0
    requests: int = 0
    seconds: float = 0.0
    list_id: str | None = None
    created_list: bool = False
    created_fields: tuple[str, ...] = ()
    # The snapshot was rebuilt from the list first (its destination changed, or a resync was asked for).
    resynced: bool = False
    # Contacts whose email was changed (identity follows the customer), and changes that could not be made.
    email_changes: int = 0
    email_changes_fallen_back: int = 0
    # What the audience's sync and field modes held back (audiences.modes.SKIPS -> contacts).
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def accounted(self) -> int:
        return sum(self.outcomes.values())


def snapshot_and_ledger(outcomes: list[Outcome]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The snapshot rows (everything but passing failures) and ledger rows of these outcomes."""
    snapshot_rows, ledger_rows = [], []
    now = datetime.now(UTC)
    for o in outcomes:
        ledger_rows.append(
            {"email": o.row["email"], "op": o.row["op"], "batch": o.batch, "status": o.status, "reason": o.reason}
        )
        if o.status == "failed":
            continue  # stays out of the snapshot (and in the journal): the next attempt sends it again
        op = o.row["op"]
        removed = op == "remove"
        status = ("removed" if removed else "member") if o.status == "confirmed" else o.status
        fields_hash = None if removed else o.row.get("fields_hash")
        if o.status == "rejected" and op in ("update", "readd"):
            # The contact is still where it was (on the list with its old fields, or removed by us): say so,
            # keeping the old hash (None keeps it), so the snapshot stays true and the change is tried again.
            status, fields_hash = ("member" if op == "update" else "removed"), None
        snapshot_rows.append(
            {
                "email": o.row["email"],
                "fields_hash": fields_hash,
                "contact_id": o.contact_id or o.row.get("contact_id"),
                "status": status,
                "reason": o.reason,
                "removed_at": (o.removed_at or now) if status == "removed" and removed else None,
                # The customer 360's id of the contact (removals carry none: the row keeps the one it has).
                "customer_id": None if o.row.get("customer_id") is None else str(o.row["customer_id"]),
            }
        )
    return pl.DataFrame(snapshot_rows, schema=SNAPSHOT_COLUMNS), pl.DataFrame(ledger_rows, schema=LEDGER_COLUMNS)


def confirmed_rows(rows: pl.DataFrame, batch: str | None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """`snapshot_and_ledger` for change rows that were all confirmed, in one pass over the frame: what a
    bulk import that refused nobody gives, which is nearly every batch."""
    removed = pl.col("op") == "remove"
    now = datetime.now(UTC)

    def column(name: str) -> pl.Expr:
        return pl.col(name).cast(pl.String) if name in rows.columns else pl.lit(None, dtype=pl.String)

    snapshot = rows.select(
        "email",
        fields_hash=pl.when(removed).then(None).otherwise(column("fields_hash")),
        contact_id=column("contact_id"),
        status=pl.when(removed).then(pl.lit("removed")).otherwise(pl.lit("member")),
        reason=pl.lit(None, dtype=pl.String),
        removed_at=pl.when(removed).then(pl.lit(now, dtype=pl.Datetime("us", "UTC"))),
        customer_id=column("customer_id"),
    )
    ledger = rows.select(
        "email",
        "op",
        batch=pl.lit(batch, dtype=pl.String),
        status=pl.lit("confirmed"),
        reason=pl.lit(None, dtype=pl.String),
    )
    return snapshot.cast(SNAPSHOT_COLUMNS), ledger.cast(LEDGER_COLUMNS)  # type: ignore[arg-type]


class Recorder:
    """Hands outcomes to the sync state without stalling the sends.

    One thread of its own does every write to the state file, all outcomes that arrived since its last
    commit in one transaction. A write costs about 50 ms of CPU once the DuckDB file holds 100,000 contacts,
    and twice that when it has to open the file (the writes share a connection kept open between them while
    they come close together: state.duckdb_keep), so writes are made only as often as needed (committing
    whenever the last commit was done kept that thread busy for the whole push, taking the CPU the sends need). An
    intent-journal write, which cannot wait, takes every outcome recorded so far with it in its transaction.
    A commit of its own is made once `COMMIT_ROWS` outcomes wait, or once the oldest outcome waiting is
    `commit_every` seconds old and `IDLE_PER_BUSY` times the last write's duration has passed since it
    ended. The file sees one writer at a time. A crash loses at most the outcomes not yet committed: their
    journal rows survive, and the next attempt sends them again (adds and updates) or asks ActiveCampaign
    (removals). `COMMIT_ROWS` keeps that to a few batches, so that a crash resends little more than the
    batches in flight.
    """

    IDLE_PER_BUSY = 4.0
    COMMIT_ROWS = 2_500  # ten bulk imports: half of what a push keeps in flight

    def __init__(self, state: SyncState, audience: str, run_id: str, result: PushResult, *, commit_every: float = 3.0):
        self.state, self.audience, self.run_id, self.result = state, audience, run_id, result
        self.commit_every = commit_every
        # Recorded, not yet handed to the writer: by the main thread to a commit, by any thread to a journal write.
        self._unsaved: list[Outcome] = []
        self._unsaved_frames: list[tuple[pl.DataFrame, str | None]] = []  # confirmed batches (record_confirmed)
        self._unsaved_lock = threading.Lock()
        self._oldest_unsaved = math.inf  # when the oldest of them was recorded (time.monotonic)
        self._unsaved_rows = 0
        self._saving: Future[None] | None = None
        self._next_commit_at = -math.inf  # time.monotonic() from which the next commit may start
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync-state")
        self._keeping = state.keeping_open()

    def __enter__(self) -> Recorder:
        # Its writes come every half second at speed 20: they may share a connection (state.duckdb_keep).
        self._keeping.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        try:
            self.save(wait_for_it=True)  # what was confirmed stays confirmed, even if the push stops
        finally:
            try:
                self._thread.shutdown(wait=True)
            finally:
                self._keeping.__exit__(None, None, None)

    def record(self, outcomes: list[Outcome], *, counted: bool = True) -> None:
        """Note outcomes (main thread only). `counted=False` for contacts outside this push's changes."""
        if counted:
            for outcome in outcomes:
                self.result.outcomes[outcome.status] += 1
        with self._unsaved_lock:
            self._unsaved.extend(outcomes)
            self._unsaved_rows += len(outcomes)
            self._oldest_unsaved = min(self._oldest_unsaved, time.monotonic())

    def record_confirmed(self, rows: pl.DataFrame, batch: str | None) -> None:
        """Note that every change row of `rows` was confirmed by `batch` (main thread only): `record` with
        one `confirmed` Outcome per row, without making them."""
        self.result.outcomes["confirmed"] += rows.height
        if rows.height:
            with self._unsaved_lock:
                self._unsaved_frames.append((rows, batch))
                self._unsaved_rows += rows.height
                self._oldest_unsaved = min(self._oldest_unsaved, time.monotonic())

    def save(self, wait_for_it: bool = False) -> None:
        """Hand the recorded outcomes to the writer thread once they are due (see the class docstring) and
        it is not busy with the last ones; with `wait_for_it`, commit everything before returning."""
        if self._saving is not None and (wait_for_it or self._saving.done()):
            saving, self._saving = self._saving, None
            saving.result()  # a failed commit stops the push here
        now = time.monotonic()
        due = (
            wait_for_it
            or self._unsaved_rows >= self.COMMIT_ROWS
            or (now >= self._next_commit_at and now - self._oldest_unsaved >= self.commit_every)
        )
        if self._saving is None and due:
            outcomes, frames = self._take_unsaved()
            if outcomes or frames:
                self._next_commit_at = math.inf  # set when this commit ends
                self._saving = self._thread.submit(self._write, outcomes, frames, None)
                if wait_for_it:
                    self.save(wait_for_it=True)

    def journal(self, rows: list[dict[str, Any]]) -> None:
        """Write the intent to send these rows (email, op), and return once it is on disk."""
        self.journal_later(rows).result()

    def journal_later(self, rows: list[dict[str, Any]] | pl.DataFrame) -> Future[None]:
        """Start writing the intent to send these rows (change rows: dicts or a frame); the future is done
        once it is on disk (and raises if the write failed). Nothing may be sent before then."""
        if isinstance(rows, pl.DataFrame):
            frame = rows.select(pl.col("email").cast(pl.String), pl.col("op").cast(pl.String))
        else:
            frame = pl.DataFrame(
                [{"email": r["email"], "op": r["op"]} for r in rows], schema={"email": pl.String, "op": pl.String}
            )
        outcomes, frames = self._take_unsaved()
        return self._thread.submit(self._write, outcomes, frames, frame)

    def _take_unsaved(self) -> tuple[list[Outcome], list[tuple[pl.DataFrame, str | None]]]:
        with self._unsaved_lock:
            taken = self._unsaved, self._unsaved_frames
            self._unsaved, self._unsaved_frames = [], []
            self._oldest_unsaved, self._unsaved_rows = math.inf, 0
        return taken

    def _write(
        self, outcomes: list[Outcome], frames: list[tuple[pl.DataFrame, str | None]], intents: pl.DataFrame | None
    ) -> None:
        """One transaction on the writer thread: these outcomes committed, then these intents journaled."""
        if not (outcomes or frames):
            if intents is not None:
                self.state.journal_intents(self.audience, intents, self.run_id)
            return
        started = time.monotonic()
        try:
            parts = [snapshot_and_ledger(outcomes)] if outcomes else []
            parts += [confirmed_rows(rows, batch) for rows, batch in frames]
            snapshot = pl.concat([snapshot for snapshot, _ in parts])
            ledger = pl.concat([ledger for _, ledger in parts])
            self.state.commit_confirmed(self.audience, self.run_id, snapshot, ledger, intents=intents)
        finally:
            ended = time.monotonic()
            self._next_commit_at = ended + max(self.commit_every, self.IDLE_PER_BUSY * (ended - started))
