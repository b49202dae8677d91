"""Push one audience's changes to ActiveCampaign, and move the snapshot only with what it confirmed.

How a push goes:
1. Resume: drop the changes the snapshot already holds (confirmed by an earlier attempt of this sync:
   a retry, or a re-run after a crash). At most the batches that were in flight are sent again, which
   is harmless: bulk import and contact/sync are upserts, list status 1 or 2 is idempotent.
2. Resolve the list, custom field ids and tags (nothing at all is sent when nothing changed).
3. Send. Fewer than `SMALL_CHANGE_SET` changes go one contact at a time (contact/sync, contactLists);
   more go through bulk import, up to 250 contacts a request, with later batches submitted while
   earlier ones are still being imported. People the pipeline itself removed come back through
   contactLists status 1, because bulk import never re-subscribes anyone.
4. Confirm: poll import/info, map the failures back to rows, and commit each confirmed batch to the
   snapshot together with its ledger rows, in one transaction.

A failure is either final (ActiveCampaign refused the contact, or the person unsubscribed themselves:
recorded with the reason, not retried until their fields change) or passing (stays out of the
snapshot, so the next attempt sends it again; the push then fails so that nobody mistakes a partial
sync for a complete one).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from queue import Empty, Queue
from typing import Any

import polars as pl

from ac_pipeline.activecampaign import ActiveCampaignClient, BulkImportRejected, ValidationError
from ac_pipeline.audiences.config import Audience
from ac_pipeline.state.store import SyncState
from ac_pipeline.sync.destination import Destination, resolve
from ac_pipeline.sync.payloads import Batch, ContactShape, batches, sync_fields

# The API reference recommends contact/sync over bulk import for fewer than 10 contacts.
SMALL_CHANGE_SET = 10
# A batch that ActiveCampaign reports failed or interrupted is safe to submit again, a few times.
MAX_BATCH_ATTEMPTS = 5
# Confirmed outcomes are committed by a thread of their own, all that arrived since its last commit
# in one transaction: a DuckDB commit costs tens of milliseconds, and the push must not wait for it.
# A crash loses at most the outcomes not yet committed; the resumed push sends them again, harmlessly.
# Bulk imports sent at once: enough to hide a request's round trip behind the next one's wait for
# the rate limit (which all of them share), few enough that a crash resends little.
SUBMITTERS = 4

OPTED_OUT = "unsubscribed from the list themselves; never re-subscribed by the sync"
REFUSED = "ActiveCampaign did not import the contact (exclusion list, bounce, invalid address or account limit)"


class PushIncomplete(RuntimeError):
    """Some contacts failed for a passing reason; they stay out of the snapshot and are sent again."""


@dataclass
class Outcome:
    row: dict[str, Any]
    status: str  # confirmed | opted_out | rejected | failed
    batch: str | None = None
    reason: str | None = None
    contact_id: str | None = None


@dataclass
class PushResult:
    pending: dict[str, int]  # changes still to send when this attempt started, by op
    already_confirmed: int  # changes an earlier attempt had confirmed (resumed past)
    outcomes: dict[str, int] = field(
        default_factory=lambda: {"confirmed": 0, "opted_out": 0, "rejected": 0, "failed": 0}
    )
    batches: int = 0
    batches_resubmitted: int = 0
    requests: int = 0
    seconds: float = 0.0
    destination: Destination | None = None


def outstanding(changes: pl.DataFrame, snapshot: pl.DataFrame) -> pl.DataFrame:
    """The changes the snapshot does not hold yet."""
    known = snapshot.select("email", pl.col("fields_hash").alias("_hash"), pl.col("status").alias("_status"))
    joined = changes.join(known, on="email", how="left")
    arriving = pl.col("op").is_in(["add", "readd", "update"])
    done = (
        (arriving & (pl.col("_status") == "member") & (pl.col("_hash") == pl.col("fields_hash")))
        | (arriving & (pl.col("_status") == "opted_out"))
        | (arriving & (pl.col("_status") == "rejected") & (pl.col("_hash") == pl.col("fields_hash")))
        | ((pl.col("op") == "remove") & (pl.col("_status") != "member"))
    ).fill_null(False)
    return joined.filter(~done).drop("_hash", "_status")


class Push:
    """One attempt at pushing one audience's changes. See the module docstring."""

    def __init__(
        self,
        client: ActiveCampaignClient,
        state: SyncState,
        audience: Audience,
        run_id: str,
        log: Callable[[str], None] = print,
        poll_interval: float = 1.0,
        max_in_flight: int = 20,
    ):
        self.client = client
        self.state = state
        self.audience = audience
        self.run_id = run_id
        self.log = log
        self.poll_interval = poll_interval
        self.max_in_flight = max_in_flight
        self._tag_ids: dict[str, str] | None = None
        self.shape: ContactShape | None = None  # set once the destination is resolved
        # How long a bulk import is expected to take from submit to done (see _poll).
        self._import_seconds = poll_interval
        # Outcomes not yet handed to the saver thread, and the commit it is busy with.
        self._unsaved: list[Outcome] = []
        self._saving: Future[None] | None = None
        self._saver: ThreadPoolExecutor | None = None

    # -- the whole push ----------------------------------------------------------------------------

    def run(self, changes: pl.DataFrame) -> PushResult:
        started, requests_before = time.monotonic(), self.client.stats.requests
        todo = outstanding(changes, self.state.snapshot(self.audience.key))
        by_op = dict(todo.group_by("op").len().iter_rows()) if todo.height else {}
        self.result = result = PushResult(
            pending={op: int(by_op.get(op, 0)) for op in ("add", "readd", "update", "remove")},
            already_confirmed=changes.height - todo.height,
        )
        if result.already_confirmed:
            self.log(f"resuming: {result.already_confirmed:,} changes were confirmed by an earlier attempt")
        if todo.height:
            destination = resolve(self.client, self.audience)
            result.destination = destination
            self.shape = shape = ContactShape(
                list_id=destination.list_id,
                standard_fields=tuple(self.audience.fields.expressions()),
                field_ids=destination.field_ids,
                tags=tuple(self.audience.tags),
            )
            alone = (pl.col("op") == "readd") | pl.lit(todo.height < SMALL_CHANGE_SET)
            in_bulk, one_by_one = todo.filter(~alone), todo.filter(alone)
            in_bulk = self._set_aside_opt_outs(in_bulk)
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync-state") as self._saver:
                try:
                    if in_bulk.height:
                        self._bulk(in_bulk, shape)
                    if one_by_one.height:
                        self._one_by_one(one_by_one.to_dicts(), shape)
                finally:
                    self._save(wait_for_it=True)  # what was confirmed stays confirmed, even if the push stops
        result.requests = self.client.stats.requests - requests_before
        result.seconds = time.monotonic() - started
        return result

    # -- bulk import --------------------------------------------------------------------------------

    def _set_aside_opt_outs(self, rows: pl.DataFrame) -> pl.DataFrame:
        """Removals of people who already unsubscribed from the list themselves are not sent: they are
        recorded as opted out, so that re-entering the audience never re-subscribes them (a "removed"
        contact would be). Costs one request per 100 unsubscribed contacts, and only when removing.
        Someone who unsubscribes in the seconds between this read and our unsubscribe is recorded as
        removed: the API does not say who unsubscribed a contact, so that window cannot be closed here."""
        leaving = rows.filter(pl.col("op") == "remove")
        if leaving.is_empty():
            return rows
        unsubscribed = {
            str(c.get("email", "")).strip().lower() for c in self.client.iter_list_members(self.shape.list_id, status=2)
        }  # type: ignore[union-attr]
        opted_out = leaving.filter(pl.col("email").is_in(list(unsubscribed)))
        self._record([Outcome(row, "opted_out", reason=OPTED_OUT) for row in opted_out.iter_rows(named=True)])
        return rows.filter(~((pl.col("op") == "remove") & pl.col("email").is_in(list(unsubscribed))))

    def _bulk(self, rows: pl.DataFrame, shape: ContactShape) -> None:
        """Bulk-import `rows`: submitter threads send batches, while this thread polls the oldest
        batches in flight, settles them and hands the outcomes to the saver.

        Several submitters keep one request's round trip from idling the account's budget; each takes
        the next batch itself, so a poll waiting for the budget here never holds a submission back.
        """
        outbox = _Outbox(batches(rows.iter_rows(named=True), shape), self.max_in_flight)
        reports: Queue[tuple[Batch, str | None, Exception | None]] = Queue()
        in_flight: deque[Batch] = deque()
        self.log(f"sending {rows.height:,} contacts in about {-(-rows.height // 250)} bulk imports")
        submitters = [
            threading.Thread(target=self._submitter, args=(outbox, reports), name=f"bulk-import-{i}", daemon=True)
            for i in range(SUBMITTERS)
        ]
        for thread in submitters:
            thread.start()
        try:
            while not (outbox.drained() and not in_flight):
                due = in_flight[0].next_poll_at - time.monotonic() if in_flight else self.poll_interval
                try:
                    report = reports.get(timeout=min(max(due, 0.001), self.poll_interval))
                    while True:  # every report that has arrived, then the polls that are due
                        self._submitted(*report, outbox, in_flight)
                        report = reports.get_nowait()
                except Empty:
                    pass
                self._poll(outbox, in_flight)
                self._save()
        finally:
            outbox.stopped.set()
            for thread in submitters:
                thread.join(timeout=60)  # a request under way finishes (or times out) first

    def _submitter(self, outbox: _Outbox, reports: Queue[tuple[Batch, str | None, Exception | None]]) -> None:
        while not outbox.stopped.is_set():
            batch = outbox.take(timeout=self.poll_interval)
            if batch is None:
                continue
            try:
                reports.put(
                    (
                        batch,
                        self.client.bulk_import(batch.contacts, exclude_automations=self.audience.exclude_automations),
                        None,
                    )
                )
            except Exception as exc:
                reports.put((batch, None, exc))

    def _submitted(
        self, batch: Batch, batch_id: str | None, error: Exception | None, outbox: _Outbox, in_flight: deque[Batch]
    ) -> None:
        outbox.reported()
        if isinstance(error, BulkImportRejected):
            # The whole batch was refused and nothing queued: set aside the contacts it named, resend the rest.
            reasons = {f.index: f.reason for f in error.failures}
            bad = [
                Outcome(row, "rejected", reason=f"bulk import validation: {reasons[i]}")
                for i, row in enumerate(batch.rows)
                if i in reasons
            ]
            if not bad:
                raise error
            self._record(bad)
            rest = [i for i in range(len(batch.rows)) if i not in reasons]
            outbox.release(
                again=Batch(contacts=[batch.contacts[i] for i in rest], rows=[batch.rows[i] for i in rest])
                if rest
                else None
            )
            return
        if error is not None:
            raise error
        batch.batch_id = batch_id
        batch.attempts += 1
        batch.polls = 0
        batch.submitted_at = time.monotonic()
        batch.next_poll_at = batch.submitted_at + self._import_seconds
        self.result.batches += 1
        in_flight.append(batch)

    def _poll(self, outbox: _Outbox, in_flight: deque[Batch]) -> bool:
        """Ask after the oldest batches that are due; settle the ones that finished.

        Polls share the account's budget with the imports, so a batch is first asked after once it is
        expected to be done. The expectation follows what the polls see: it shrinks a little when a
        batch is done at its first poll and grows more when it is not, which settles where about four
        batches in five take a single poll. Returns whether any batch settled.
        """
        settled = False
        while in_flight and time.monotonic() >= in_flight[0].next_poll_at:
            batch = in_flight[0]
            info = self.client.import_info(batch.batch_id)  # type: ignore[arg-type]
            first_poll = batch.polls == 0
            batch.polls += 1
            if info.done:
                in_flight.popleft()
                outbox.release()
                if first_poll:
                    self._import_seconds *= 0.95
                self._settle(batch, set(info.failure))
                settled = True
            elif info.failed:
                in_flight.popleft()
                if batch.attempts >= MAX_BATCH_ATTEMPTS:
                    raise PushIncomplete(
                        f"bulk import {batch.batch_id} failed {batch.attempts} times; "
                        "ActiveCampaign may be degraded, try again later"
                    )
                self.log(f"bulk import {batch.batch_id} {info.status}; submitting it again")
                self.result.batches_resubmitted += 1
                outbox.release(again=batch)
            else:
                if first_poll:
                    self._import_seconds *= 1.2
                batch.next_poll_at = time.monotonic() + self._import_seconds / 2
                break  # later batches are younger still
        return settled

    def _settle(self, batch: Batch, failed_emails: set[str]) -> None:
        self._record(
            [
                Outcome(row, "confirmed", batch=batch.batch_id)
                if row["email"] not in failed_emails
                else self._explain_failure(row, batch.batch_id)
                for row in batch.rows
            ]
        )

    def _explain_failure(self, row: dict[str, Any], batch_id: str | None) -> Outcome:
        """import/info names only the emails that failed; ask ActiveCampaign what became of each
        (two requests a failure: cheap while failures are few, slow if thousands fail at once)."""
        contact = self.client.find_contact(row["email"])
        status = self._list_status(contact["id"]) if contact else None
        contact_id = str(contact["id"]) if contact else None
        if row["op"] == "remove":
            if status != "1":  # not subscribed (or no such contact): the removal holds
                return Outcome(row, "confirmed", batch_id, contact_id=contact_id)
            return Outcome(row, "failed", batch_id, reason="bulk unsubscribe did not take; will retry")
        if status == "2":
            return Outcome(row, "opted_out", batch_id, reason=OPTED_OUT, contact_id=contact_id)
        return Outcome(row, "rejected", batch_id, reason=REFUSED, contact_id=contact_id)

    def _list_status(self, contact_id: Any) -> str | None:
        """The contact's status on the audience's list ("1" active, "2" unsubscribed), None if not on it."""
        list_id = self.shape.list_id  # type: ignore[union-attr]
        for membership in self.client.contact_lists(contact_id):
            if str(membership.get("list")) == list_id:
                return str(membership.get("status"))
        return None

    # -- one contact at a time ------------------------------------------------------------------------

    def _one_by_one(self, rows: list[dict[str, Any]], shape: ContactShape) -> None:
        self.log(f"sending {len(rows):,} contacts one at a time")
        for row in rows:
            self._record([self._send_one(row, shape)])
            self._save()

    def _send_one(self, row: dict[str, Any], shape: ContactShape) -> Outcome:
        list_id = shape.list_id
        if row["op"] == "remove":
            contact_id = row.get("contact_id") or (self.client.find_contact(row["email"]) or {}).get("id")
            if contact_id is None:
                return Outcome(row, "confirmed")  # no such contact: nobody to remove
            if self._list_status(contact_id) == "2":
                # They left the list themselves before the audience let them go: never re-add them.
                return Outcome(row, "opted_out", reason=OPTED_OUT, contact_id=str(contact_id))
            self.client.set_list_status(contact_id, list_id, 2)
            return Outcome(row, "confirmed", contact_id=str(contact_id))
        try:
            contact = self.client.sync_contact(row["email"], **sync_fields(row, shape))
        except ValidationError as refused:
            return Outcome(row, "rejected", reason=str(refused))
        contact_id = str(contact["id"])
        if row["op"] in ("add", "update"):
            status = self._list_status(contact_id)
            if status == "2":
                return Outcome(row, "opted_out", reason=OPTED_OUT, contact_id=contact_id)
            if status != "1":
                self.client.set_list_status(contact_id, list_id, 1)
        elif row["op"] == "readd":
            # Only an unsubscribe the sync itself made (snapshot status "removed") is undone here.
            self.client.set_list_status(contact_id, list_id, 1)
        for tag_id in self._tags(shape).values():
            self.client.add_contact_tag(contact_id, tag_id)
        return Outcome(row, "confirmed", contact_id=contact_id)

    def _tags(self, shape: ContactShape) -> dict[str, str]:
        if self._tag_ids is None:
            self._tag_ids = self.client.ensure_tags(shape.tags) if shape.tags else {}
        return self._tag_ids

    # -- the snapshot and the ledger ------------------------------------------------------------------

    def _record(self, outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            self.result.outcomes[outcome.status] += 1
        self._unsaved.extend(outcomes)

    def _save(self, wait_for_it: bool = False) -> None:
        """Hand the recorded outcomes to the saver thread, unless it is still busy with the last ones
        (they wait for its next commit); with `wait_for_it`, commit everything before returning."""
        if self._saving is not None and (wait_for_it or self._saving.done()):
            saving, self._saving = self._saving, None
            saving.result()  # a failed commit stops the push here
        if self._unsaved and self._saving is None:
            outcomes, self._unsaved = self._unsaved, []
            self._saving = self._saver.submit(self._commit, outcomes)
            if wait_for_it:
                self._save(wait_for_it=True)

    def _commit(self, outcomes: list[Outcome]) -> None:
        """Snapshot and ledger rows of these outcomes, in one transaction."""
        snapshot_rows, ledger_rows = [], []
        for o in outcomes:
            ledger_rows.append(
                {"email": o.row["email"], "op": o.row["op"], "batch": o.batch, "status": o.status, "reason": o.reason}
            )
            if o.status == "failed":
                continue  # stays out of the snapshot: the next attempt sends it again
            removed = o.row["op"] == "remove"
            snapshot_rows.append(
                {
                    "email": o.row["email"],
                    "fields_hash": None if removed else o.row.get("fields_hash"),
                    "contact_id": o.contact_id or o.row.get("contact_id"),
                    "status": {"confirmed": "removed" if removed else "member"}.get(o.status, o.status),
                    "reason": o.reason,
                }
            )
        schema = {
            "email": pl.String,
            "fields_hash": pl.String,
            "contact_id": pl.String,
            "status": pl.String,
            "reason": pl.String,
        }
        ledger_schema = {
            "email": pl.String,
            "op": pl.String,
            "batch": pl.String,
            "status": pl.String,
            "reason": pl.String,
        }
        self.state.commit_confirmed(
            self.audience.key,
            self.run_id,
            pl.DataFrame(snapshot_rows, schema=schema),
            pl.DataFrame(ledger_rows, schema=ledger_schema),
        )


class _Outbox:
    """The batches still to send, taken one at a time by the submitter threads.

    At most `max_in_flight` batches are out at once (sent and not yet settled): a slot is taken with a
    batch and given back when the batch settles, so a crash resends at most that many.
    """

    def __init__(self, upcoming: Iterator[Batch], max_in_flight: int):
        self._upcoming = upcoming
        self._again: deque[Batch] = deque()  # sent before new batches: remainders, failed imports
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(max_in_flight)
        self._exhausted = False
        self._out = 0  # taken by a submitter, not yet reported back
        self.stopped = threading.Event()

    def take(self, timeout: float) -> Batch | None:
        if not self._slots.acquire(timeout=timeout):
            return None
        with self._lock:
            batch = self._again.popleft() if self._again else next(self._upcoming, None)
            if batch is None:
                self._exhausted = True
            else:
                self._out += 1
        if batch is None:
            self._slots.release()
            self.stopped.wait(timeout)  # nothing to send now; a failed import may still come back
        return batch

    def reported(self) -> None:
        with self._lock:
            self._out -= 1

    def release(self, again: Batch | None = None) -> None:
        """A batch left flight; `again` is to be sent (once more)."""
        with self._lock:
            if again is not None:
                self._again.append(again)
        self._slots.release()

    def drained(self) -> bool:
        with self._lock:
            return self._exhausted and not self._again and self._out == 0
