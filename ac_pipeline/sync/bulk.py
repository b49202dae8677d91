"""Sending many contacts through bulk import: submitter threads send batches while the calling thread
polls the oldest batches in flight, settles them and records the outcomes.

Every failure is loud: an exception in any submitter thread, in building a batch, or in recording
stops the whole send and is raised in the calling thread. Nothing here returns normally unless each
contact it was given has an outcome.

Each batch is read once on its own (`import/info`) before any of its contacts is confirmed: it is the only
answer that names the contacts an import refused. The account's summary (`GET import/bulk_import`) gives
counts per day for every integration of the account, and any batch may hold a refused contact (exclusion
list, bounce list, an unsubscribe since the last read-back), so no batch can be settled without it.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from queue import Empty, Queue
from typing import Any

import polars as pl

from ac_pipeline.activecampaign import ActiveCampaignClient, BulkImportRejected
from ac_pipeline.audiences.config import Audience
from ac_pipeline.sync.consent import OPTED_OUT, list_record
from ac_pipeline.sync.outcomes import Outcome, PushResult, Recorder
from ac_pipeline.sync.payloads import Batch, ContactShape, batches

# A batch that ActiveCampaign reports failed or interrupted is safe to submit again, a few times.
MAX_BATCH_ATTEMPTS = 5
# Bulk imports sent at once: enough to hide a request's round trip behind the next one's wait for
# the rate limit (which all of them share), few enough that a crash resends little.
SUBMITTERS = 4
# Batches journaled at once, in units of max_in_flight (see Outbox).
JOURNAL_GROUPS = 2


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


Report = tuple[Batch, str | None, BaseException | None]


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
    ):
        self.client, self.audience, self.shape = client, audience, shape
        self.recorder, self.result, self.log = recorder, result, log
        self.poll_interval, self.max_in_flight = poll_interval, max_in_flight
        # How long a bulk import is expected to take from submit to done (see _poll).
        self._import_seconds = poll_interval

    def send(self, rows: pl.DataFrame) -> None:
        """Several submitters keep one request's round trip from idling the account's budget; each takes
        the next batch itself, so a poll waiting for the budget here never holds a submission back."""
        outbox = Outbox(batches(rows, self.shape), self.max_in_flight, self.recorder.journal_later)
        reports: Queue[Report] = Queue()
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
                outbox.raise_error()
                due = in_flight[0].next_poll_at - time.monotonic() if in_flight else self.poll_interval
                try:
                    report = reports.get(timeout=min(max(due, 0.001), self.poll_interval))
                    while True:  # every report that has arrived, then the polls that are due
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

    def _submitter(self, outbox: Outbox, reports: Queue[Report]) -> None:
        try:
            while not outbox.stopped.is_set():
                batch = outbox.take(timeout=self.poll_interval)
                if batch is None:
                    continue
                try:
                    batch_id = self.client.bulk_import_json(
                        batch.contacts, exclude_automations=self.audience.exclude_automations
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
            info = self.client.import_info(batch.batch_id)
            first_poll = batch.polls == 0
            batch.polls += 1
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


class Outbox:
    """The batches still to send, taken one at a time by the submitter threads.

    At most `max_in_flight` batches are out at once (sent and not yet settled): a slot is taken with a
    batch and given back when the batch settles, so a crash resends at most that many. No batch is handed
    out before its contacts are in the intent journal: batches are journaled `JOURNAL_GROUPS x max_in_flight`
    at a time, the next group while the current one goes out, so the sends rarely wait for the write. (A
    journal write opens the DuckDB state file, about a tenth of a second of CPU on a big file: fewer, larger
    writes leave that CPU to the sends. A crash leaves more intents to settle, which the next attempt does
    from the list's records at the same cost.)
    """

    def __init__(
        self,
        upcoming: Iterator[Batch],
        max_in_flight: int,
        journal: Callable[[pl.DataFrame], Future[None]],
    ):
        self._upcoming = upcoming
        self._journal = journal
        self._max_in_flight = max_in_flight
        self._journaled: deque[Batch] = deque()  # built and journaled, not yet taken
        self._journaling: tuple[list[Batch], Future[None]] | None = None  # the next group, being written
        self._built_all = False
        self._again: deque[Batch] = deque()  # sent before new batches: remainders, failed imports
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(max_in_flight)
        self._exhausted = False
        self._out = 0  # taken by a submitter, not yet reported back
        self._error: BaseException | None = None
        self.stopped = threading.Event()

    def take(self, timeout: float) -> Batch | None:
        if not self._slots.acquire(timeout=timeout):
            return None
        with self._lock:
            batch = self._again.popleft() if self._again else self._next_new()
            if batch is None:
                self._exhausted = True
            else:
                self._out += 1
        if batch is None:
            self._slots.release()
            self.stopped.wait(timeout)  # nothing to send now; a failed import may still come back
        return batch

    def _next_new(self) -> Batch | None:
        if self._journaling is not None and (not self._journaled or self._journaling[1].done()):
            self._take_journaled()
        group = JOURNAL_GROUPS * self._max_in_flight
        if self._journaling is None and len(self._journaled) <= group // 2 and not self._built_all:
            ahead = list(itertools.islice(self._upcoming, group))
            if ahead:
                self._journaling = (ahead, self._journal(pl.concat([b.rows for b in ahead], rechunk=False)))
            else:
                self._built_all = True
        if not self._journaled and self._journaling is not None:
            self._take_journaled()
        return self._journaled.popleft() if self._journaled else None

    def _take_journaled(self) -> None:
        assert self._journaling is not None
        ahead, written = self._journaling
        self._journaling = None
        written.result()  # a failed journal write stops the send: nothing unjournaled goes out
        self._journaled.extend(ahead)

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
            return (
                self._exhausted
                and not self._again
                and not self._journaled
                and self._journaling is None
                and self._out == 0
            )

    def fail(self, error: BaseException) -> None:
        """A submitter thread hit something it cannot hand back as a report: stop everything."""
        with self._lock:
            self._error = self._error or error
        self.stopped.set()

    def raise_error(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"a bulk-import thread stopped: {self._error}") from self._error
