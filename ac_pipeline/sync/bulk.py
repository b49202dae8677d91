"""Sending many contacts through bulk import: submitter threads send batches while the calling thread
learns how each batch went, settles it and records the outcomes.

Every failure is loud: an exception in any submitter thread, in building a batch, or in recording
stops the whole send and is raised in the calling thread. Nothing here returns normally unless each
contact it was given has an outcome.

No contact is confirmed before ActiveCampaign has said how its batch went, in one of two ways:
- the batch's import callback (import_callbacks.py), when the push has a listener, accounts for every contact of
  the batch as a success: no request at all;
- otherwise `GET import/info`, read once for the batch: the only answer that names the contacts an import refused.
  A batch whose callback names a failure, or does not come in time, is read this way.
The account's summary (`GET import/bulk_import`) gives counts per day for every integration of the account, and
any batch may hold a refused contact (exclusion list, bounce list, an unsubscribe since the last read-back), so
it settles no batch.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from queue import Empty, Queue
from typing import Any

import polars as pl

from ac_pipeline.activecampaign import ActiveCampaignClient, BulkImportRejected
from ac_pipeline.activecampaign.import_callbacks import ImportCallbacks, ImportReport, callback_body
from ac_pipeline.audiences.config import Audience
from ac_pipeline.sync.consent import OPTED_OUT, list_record
from ac_pipeline.sync.outbox import Outbox
from ac_pipeline.sync.outcomes import Outcome, PushResult, Recorder
from ac_pipeline.sync.payloads import Batch, ContactShape, batches

# A batch that ActiveCampaign reports failed or interrupted is safe to submit again, a few times.
MAX_BATCH_ATTEMPTS = 5
# Bulk imports sent at once: enough to hide a request's round trip behind the next one's wait for
# the rate limit (which all of them share), few enough that a crash resends little.
SUBMITTERS = 4
# How long a batch's callback may keep it waiting before the batch is polled: this many poll intervals (30 s
# against a real account), or three times the time batches have been taking, and never under a second (a
# sped-up sandbox's imports are quicker than the jitter of a busy machine), whichever is longest.
CALLBACK_GRACE_POLLS = 30
MIN_CALLBACK_GRACE = 1.0


def _refusal_reason(contact: dict[str, Any] | None, status: str | None) -> str:
    """Why a contact bulk import listed as failed is not on the list, as far as ActiveCampaign shows it
    (import/info names only the email; the account's exclusion list is not readable through the API)."""
    if contact is None:
        return (
            "ActiveCampaign refused the address: it is on the account's exclusion or bounce list, or the account "
            "is at its contact limit (check Contacts -> Exclusion list and the plan's limit)"
        )
    if status == "3":
        return "the address bounced on this list; ActiveCampaign does not subscribe it again"
    return "ActiveCampaign kept the contact but did not subscribe it to the list (exclusion list or account limit)"


class PushIncomplete(RuntimeError):
    """Some contacts failed for a passing reason; they stay out of the snapshot and are sent again."""


Report = tuple[Batch, str | None, BaseException | None] | ImportReport


class BulkSender:
    """Bulk-imports change rows for one push. See the module docstring."""

    def __init__(
        self,
        client: ActiveCampaignClient,
        audience: Audience,
        shape: ContactShape,
        recorder: Recorder,
        result: PushResult,
        log: Callable[[str], None],
        poll_interval: float,
        max_in_flight: int,
        callbacks: ImportCallbacks | None = None,
    ):
        self.client, self.audience, self.shape = client, audience, shape
        self.recorder, self.result, self.log = recorder, result, log
        self.poll_interval, self.max_in_flight = poll_interval, max_in_flight
        self.callbacks = callbacks
        # How long a bulk import is expected to take from submit to done (see _poll).
        self._import_seconds = poll_interval
        # While callbacks are expected: the URL and token to give ActiveCampaign (see _listen).
        self._callback: tuple[str, str] | None = None
        self._keys = itertools.count(1)
        self._issued: set[str] = set()  # keys given to batches (by the submitter threads)
        self._in_flight_by_key: dict[str, Batch] = {}
        self._early: dict[str, ImportReport] = {}  # callbacks that came before their batch's submit answer
        self._heard = False  # a callback of this send has come

    def send(self, rows: pl.DataFrame) -> None:
        """Several submitters keep one request's round trip from idling the account's budget; each takes
        the next batch itself, so a poll waiting for the budget here never holds a submission back."""
        outbox = Outbox(batches(rows, self.shape), self.max_in_flight, self.recorder.journal_later)
        reports: Queue[Report] = Queue()
        in_flight: deque[Batch] = deque()
        self.log(f"sending {rows.height:,} contacts in about {-(-rows.height // 250)} bulk imports")
        listening = self._listen(reports)
        submitters = [
            threading.Thread(target=self._submitter, args=(outbox, reports), name=f"bulk-import-{i}", daemon=True)
            for i in range(SUBMITTERS)
        ]
        for thread in submitters:
            thread.start()
        try:
            while not (outbox.drained() and not in_flight):
                outbox.raise_error()
                due = in_flight[0].next_poll_at - time.monotonic() if in_flight else self.poll_interval
                try:
                    report = reports.get(timeout=min(max(due, 0.001), self.poll_interval))
                    while True:  # every report that has arrived, then the polls that are due
                        if isinstance(report, ImportReport):
                            self._called_back(report, outbox, in_flight)
                        else:
                            self._submitted(*report, outbox, in_flight)
                        report = reports.get_nowait()
                except Empty:
                    pass
                self._poll(outbox, in_flight)
                self.recorder.save()
            outbox.raise_error()
        finally:
            outbox.stopped.set()
            for thread in submitters:
                thread.join(timeout=60)  # a request under way finishes (or times out) first
            if listening is not None:
                listening()

    def _listen(self, reports: Queue[Report]) -> Callable[[], None] | None:
        """Start taking this send's import callbacks (they go to `reports`); returns what stops it. Without a
        listener (none configured, or its address taken) the send polls every batch."""
        if self.callbacks is None:
            return None
        try:
            listener, url, token = self.callbacks.start(reports.put)
        except OSError as exc:
            self.log(f"import callbacks are off for this push: cannot listen for them ({exc}); polling every batch")
            return None
        self._callback = (url, token)
        return lambda: listener.unregister(token)

    def _submitter(self, outbox: Outbox, reports: Queue[Report]) -> None:
        try:
            while not outbox.stopped.is_set():
                batch = outbox.take(timeout=self.poll_interval)
                if batch is None:
                    continue
                callback = None
                if self._callback is not None:
                    batch.callback_key = str(next(self._keys))
                    self._issued.add(batch.callback_key)
                    callback = callback_body(*self._callback, batch.callback_key)
                try:
                    batch_id = self.client.bulk_import_json(
                        batch.contacts, exclude_automations=self.audience.exclude_automations, callback=callback
                    )
                except Exception as exc:  # handed to the calling thread, which decides
                    reports.put((batch, None, exc))
                else:
                    reports.put((batch, batch_id, None))
        except BaseException as exc:  # a thread must never die quietly: the send stops, loudly
            outbox.fail(exc)

    def _submitted(
        self, batch: Batch, batch_id: str | None, error: BaseException | None, outbox: Outbox, in_flight: deque[Batch]
    ) -> None:
        outbox.reported()
        if isinstance(error, BulkImportRejected):
            # The whole batch was refused and nothing queued: set aside the contacts it named, resend the rest.
            reasons = {f.index: f.reason for f in error.failures}
            bad = [
                Outcome(row, "rejected", reason=f"bulk import validation: {reasons[i]}")
                for i, row in enumerate(batch.rows.iter_rows(named=True))
                if i in reasons
            ]
            if not bad:
                raise error
            self.recorder.record(bad)
            rest = [i for i in range(batch.rows.height) if i not in reasons]
            outbox.release(again=batch.subset(rest) if rest else None)
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
        if self._callback is not None and batch.callback_key is not None:
            batch.next_poll_at = batch.submitted_at + self._callback_grace()
            self._in_flight_by_key[batch.callback_key] = batch
            early = self._early.pop(batch.callback_key, None)
            if early is not None:
                self._called_back(early, outbox, in_flight)

    def _callback_grace(self) -> float:
        return max(CALLBACK_GRACE_POLLS * self.poll_interval, 3 * self._import_seconds, MIN_CALLBACK_GRACE)

    def _called_back(self, report: ImportReport, outbox: Outbox, in_flight: deque[Batch]) -> None:
        """A batch's callback: settle the batch if it vouches for every contact, else have the batch polled now."""
        batch = self._in_flight_by_key.get(report.batch_key)
        if batch is None:
            if report.batch_key in self._issued:  # ours, and its submit answer is still on its way
                self._early[report.batch_key] = report
            return
        self._heard = True
        self._import_seconds = 0.8 * self._import_seconds + 0.2 * (time.monotonic() - batch.submitted_at)
        in_flight.remove(batch)
        if report.vouches_for(batch.rows.height):
            del self._in_flight_by_key[report.batch_key]
            outbox.release()
            self.result.batches_called_back += 1
            self._settle(batch, set())
        else:  # a failure to look into (or a report we cannot vouch for): import/info names the contacts
            batch.next_poll_at = time.monotonic()
            in_flight.appendleft(batch)

    def _poll(self, outbox: Outbox, in_flight: deque[Batch]) -> None:
        """Ask after the oldest batches that are due; settle the ones that finished.

        Polls share the account's budget with the imports, so a batch is first asked after once it is
        expected to be done. The expectation follows what the polls see: it shrinks a little when a
        batch is done at its first poll and grows more when it is not, which settles where about four
        batches in five take a single poll.
        """
        while in_flight and time.monotonic() >= in_flight[0].next_poll_at:
            batch = in_flight[0]
            assert batch.batch_id is not None  # set when the batch went into flight
            if self._callback is not None and not self._heard:
                self._stop_waiting_for_callbacks(in_flight)
            info = self.client.import_info(batch.batch_id)
            first_poll = batch.polls == 0
            batch.polls += 1
            if info.done or info.failed:
                self._in_flight_by_key.pop(batch.callback_key or "", None)
            if info.done:
                in_flight.popleft()
                outbox.release()
                if first_poll:
                    self._import_seconds *= 0.95
                self._settle(batch, set(info.failure))
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

    def _stop_waiting_for_callbacks(self, in_flight: deque[Batch]) -> None:
        """The first batch's callback is overdue and none has come: ActiveCampaign is not reaching the listener.
        Every batch in flight is polled as if there were no callbacks (a callback that comes still settles one)."""
        assert self._callback is not None
        url = self._callback[0]
        self.log(
            f"no import callback has come to {url} in {self._callback_grace():.0f} s: "
            "check that ActiveCampaign can reach that address (AC_PIPELINE_CALLBACK_URL); polling every batch"
        )
        self._callback = None
        for batch in in_flight:
            batch.next_poll_at = min(batch.next_poll_at, batch.submitted_at + self._import_seconds)

    def _settle(self, batch: Batch, failed_emails: set[str]) -> None:
        """Every contact of a batch that ActiveCampaign ran is confirmed, as a whole frame, except the ones
        it listed as failed, which are looked into one by one."""
        rows = batch.rows
        if failed_emails:
            failed = pl.col("email").is_in(list(failed_emails))
            self.recorder.record(
                [self._explain_failure(row, batch.batch_id) for row in rows.filter(failed).iter_rows(named=True)]
            )
            rows = rows.filter(~failed)
        self.recorder.record_confirmed(rows, batch.batch_id)

    def _explain_failure(self, row: dict[str, Any], batch_id: str | None) -> Outcome:
        """import/info names only the emails that failed; ask ActiveCampaign what became of each
        (two requests a failure: cheap while failures are few, slow if thousands fail at once)."""
        contact = self.client.find_contact(row["email"])
        record = list_record(self.client, contact["id"], self.shape.list_id) if contact else None
        status = str(record.get("status")) if record else None
        contact_id = str(contact["id"]) if contact else None
        if row["op"] == "remove":
            if status != "1":  # not subscribed (or no such contact): the removal holds
                return Outcome(row, "confirmed", batch_id, contact_id=contact_id)
            return Outcome(row, "failed", batch_id, reason="bulk unsubscribe did not take; will retry")
        if status == "2":
            # Bulk import never re-subscribes: this person is unsubscribed, and it was not this push.
            return Outcome(row, "opted_out", batch_id, reason=OPTED_OUT, contact_id=contact_id)
        return Outcome(row, "rejected", batch_id, reason=_refusal_reason(contact, status), contact_id=contact_id)
