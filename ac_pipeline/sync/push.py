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

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
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
    outcomes: dict[str, int] = field(default_factory=lambda: {"confirmed": 0, "opted_out": 0, "rejected": 0, "failed": 0})
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

    def __init__(self, client: ActiveCampaignClient, state: SyncState, audience: Audience, run_id: str,
                 log: Callable[[str], None] = print, poll_interval: float = 1.0, max_in_flight: int = 20):
        self.client = client
        self.state = state
        self.audience = audience
        self.run_id = run_id
        self.log = log
        self.poll_interval = poll_interval
        self.max_in_flight = max_in_flight
        self._tag_ids: dict[str, str] | None = None
        self.shape: ContactShape | None = None  # set once the destination is resolved

    # -- the whole push ----------------------------------------------------------------------------

    def run(self, changes: pl.DataFrame) -> PushResult:
        started, requests_before = time.monotonic(), self.client.stats.requests
        todo = outstanding(changes, self.state.snapshot(self.audience.key))
        by_op = dict(todo.group_by("op").len().iter_rows()) if todo.height else {}
        result = PushResult(pending={op: int(by_op.get(op, 0)) for op in ("add", "readd", "update", "remove")},
                            already_confirmed=changes.height - todo.height)
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
            rows = todo.to_dicts()
            one_by_one = [r for r in rows if r["op"] == "readd" or todo.height < SMALL_CHANGE_SET]
            in_bulk = [r for r in rows if not (r["op"] == "readd" or todo.height < SMALL_CHANGE_SET)]
            if in_bulk:
                self._bulk(in_bulk, shape, result)
            if one_by_one:
                self._one_by_one(one_by_one, shape, result)
        result.requests = self.client.stats.requests - requests_before
        result.seconds = time.monotonic() - started
        return result

    # -- bulk import --------------------------------------------------------------------------------

    def _bulk(self, rows: list[dict[str, Any]], shape: ContactShape, result: PushResult) -> None:
        queue: deque[Batch] = deque(batches(rows, shape))
        in_flight: deque[Batch] = deque()
        self.log(f"sending {len(rows):,} contacts in {len(queue)} bulk imports")
        while queue or in_flight:
            submitted = False
            if queue and len(in_flight) < self.max_in_flight:
                submitted = self._submit(queue, in_flight, result)
            settled = self._poll(queue, in_flight, result, max_polls=2 if submitted else 1)
            if not submitted and not settled and in_flight:
                time.sleep(self.poll_interval)

    def _submit(self, queue: deque[Batch], in_flight: deque[Batch], result: PushResult) -> bool:
        batch = queue.popleft()
        try:
            batch.batch_id = self.client.bulk_import(batch.contacts, exclude_automations=self.audience.exclude_automations)
        except BulkImportRejected as rejected:
            # The whole batch was refused and nothing queued: set aside the contacts it named, resend the rest.
            reasons = {f.index: f.reason for f in rejected.failures}
            bad = [Outcome(row, "rejected", reason=f"bulk import validation: {reasons[i]}")
                   for i, row in enumerate(batch.rows) if i in reasons]
            if not bad:
                raise
            self._commit(bad, result)
            rest = [i for i in range(len(batch.rows)) if i not in reasons]
            if rest:
                queue.appendleft(Batch(contacts=[batch.contacts[i] for i in rest], rows=[batch.rows[i] for i in rest]))
            return False
        batch.attempts += 1
        batch.submitted_at = time.monotonic()
        result.batches += 1
        in_flight.append(batch)
        return True

    def _poll(self, queue: deque[Batch], in_flight: deque[Batch], result: PushResult, max_polls: int) -> bool:
        """Ask after the oldest batches; settle the ones that finished. Returns whether any did."""
        settled = False
        for _ in range(max_polls):
            if not in_flight:
                break
            batch = in_flight[0]
            if time.monotonic() - batch.submitted_at < self.poll_interval:
                break  # too young to be done; later ones are younger still
            info = self.client.import_info(batch.batch_id)  # type: ignore[arg-type]
            if info.done:
                in_flight.popleft()
                self._settle(batch, set(info.failure), result)
                settled = True
            elif info.failed:
                in_flight.popleft()
                if batch.attempts >= MAX_BATCH_ATTEMPTS:
                    raise PushIncomplete(f"bulk import {batch.batch_id} failed {batch.attempts} times; "
                                         "ActiveCampaign may be degraded, try again later")
                self.log(f"bulk import {batch.batch_id} {info.status}; submitting it again")
                result.batches_resubmitted += 1
                queue.appendleft(batch)
            else:
                break
        return settled

    def _settle(self, batch: Batch, failed_emails: set[str], result: PushResult) -> None:
        outcomes = []
        for row in batch.rows:
            if row["email"] not in failed_emails:
                outcomes.append(Outcome(row, "confirmed", batch=batch.batch_id))
            else:
                outcomes.append(self._explain_failure(row, batch.batch_id))
        self._commit(outcomes, result)

    def _explain_failure(self, row: dict[str, Any], batch_id: str | None) -> Outcome:
        """import/info names only the emails that failed; ask ActiveCampaign what became of each."""
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

    def _one_by_one(self, rows: list[dict[str, Any]], shape: ContactShape, result: PushResult) -> None:
        self.log(f"sending {len(rows):,} contacts one at a time")
        pending: list[Outcome] = []
        for row in rows:
            pending.append(self._send_one(row, shape))
            if len(pending) >= 20:
                self._commit(pending, result)
                pending = []
        self._commit(pending, result)

    def _send_one(self, row: dict[str, Any], shape: ContactShape) -> Outcome:
        list_id = shape.list_id
        if row["op"] == "remove":
            contact_id = row.get("contact_id") or (self.client.find_contact(row["email"]) or {}).get("id")
            if contact_id is not None:
                self.client.set_list_status(contact_id, list_id, 2)
            return Outcome(row, "confirmed", contact_id=None if contact_id is None else str(contact_id))
        try:
            contact = self.client.sync_contact(row["email"], **sync_fields(row, shape))
        except ValidationError as refused:
            return Outcome(row, "rejected", reason=str(refused))
        contact_id = str(contact["id"])
        if row["op"] == "add":
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

    def _commit(self, outcomes: list[Outcome], result: PushResult) -> None:
        if not outcomes:
            return
        snapshot_rows, ledger_rows = [], []
        for o in outcomes:
            result.outcomes[o.status] += 1
            ledger_rows.append({"email": o.row["email"], "op": o.row["op"], "batch": o.batch,
                                "status": o.status, "reason": o.reason})
            if o.status == "failed":
                continue  # stays out of the snapshot: the next attempt sends it again
            removed = o.row["op"] == "remove"
            snapshot_rows.append({
                "email": o.row["email"],
                "fields_hash": None if removed else o.row.get("fields_hash"),
                "contact_id": o.contact_id or o.row.get("contact_id"),
                "status": {"confirmed": "removed" if removed else "member"}.get(o.status, o.status),
                "reason": o.reason,
            })
        schema = {"email": pl.String, "fields_hash": pl.String, "contact_id": pl.String, "status": pl.String,
                  "reason": pl.String}
        ledger_schema = {"email": pl.String, "op": pl.String, "batch": pl.String, "status": pl.String,
                         "reason": pl.String}
        self.state.commit_confirmed(self.audience.key, self.run_id,
                                    pl.DataFrame(snapshot_rows, schema=schema),
                                    pl.DataFrame(ledger_rows, schema=ledger_schema))
