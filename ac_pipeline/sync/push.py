"""Push one audience's changes to ActiveCampaign, and move the snapshot only with what it confirmed.

How a push goes:
1. Resume: drop the changes the snapshot already holds (confirmed by an earlier attempt of this sync:
   a retry, or a re-run after a crash). At most the batches that were in flight are sent again, which
   is harmless: bulk import and contact/sync are upserts, list status 1 or 2 is idempotent.
2. Resolve the list, custom field ids and tags (nothing at all is sent when nothing changed), and
   check that the snapshot describes this account and this list: a diff against another list's
   snapshot is never sent.
3. Set aside what can never be sent (a value over a field's limit: rejected with the reason), and
   removals of people already unsubscribed: ours if the journal and the list's record prove it (an
   earlier attempt crashed after sending it), theirs otherwise.
4. Change the email of contacts whose customer's address changed (sync.identity), one at a time; then
   diff again, so that what could not be changed falls back to the old address leaving and the new joining.
5. Send. Fewer than `SMALL_CHANGE_SET` changes, and fewer than `BULK_READDS` re-adds, go one contact at a
   time (sync.single); the rest through bulk import (sync.bulk), many re-adds after their consent is checked
   in bulk and the sync's own unsubscribes are undone, one POST each (sync.readds). Each batch is written
   to the intent journal before it goes out.
6. Account: the push succeeds only if every contact it took on has an outcome, and none failed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import polars as pl

from ac_pipeline.activecampaign import ActiveCampaignClient
from ac_pipeline.activecampaign.import_callbacks import ImportCallbacks
from ac_pipeline.audiences.config import Audience
from ac_pipeline.audiences.guard import evaluate, override_hint
from ac_pipeline.audiences.identity import EMAIL_CHANGE
from ac_pipeline.audiences.modes import changes_for, field_modes, last_values
from ac_pipeline.readback.list_read import read_back
from ac_pipeline.readback.reader import list_total
from ac_pipeline.state.store import SyncState
from ac_pipeline.sync.bulk import BulkSender, PushIncomplete
from ac_pipeline.sync.consent import judge_unsubscribe, parse_date
from ac_pipeline.sync.destination import resolve
from ac_pipeline.sync.existing import keep_existing
from ac_pipeline.sync.group_tags import strip_moved_group_tags
from ac_pipeline.sync.identity import EmailChanges, learn_customer_ids
from ac_pipeline.sync.outcomes import Outcome, PushResult, Recorder
from ac_pipeline.sync.payloads import ContactShape, may_be_refused, refusal
from ac_pipeline.sync.readds import BulkReadds
from ac_pipeline.sync.single import SingleSender

__all__ = [
    "BULK_READDS",
    "SMALL_CHANGE_SET",
    "DestinationChanged",
    "Push",
    "PushIncomplete",
    "PushResult",
    "RemovalsHeld",
    "outstanding",
]

# The API reference recommends contact/sync over bulk import for fewer than 10 contacts.
SMALL_CHANGE_SET = 10
# From this many re-adds on, their consent is read in bulk (sync.readds): about one request a re-add, not four.
BULK_READDS = SMALL_CHANGE_SET


class DestinationChanged(RuntimeError):
    """The snapshot does not describe the list the push would write to; retrying cannot help."""


class RemovalsHeld(RuntimeError):
    """A resync would remove more than the removal guard allows; a person must let it through."""


def outstanding(changes: pl.DataFrame, snapshot: pl.DataFrame) -> pl.DataFrame:
    """The changes the snapshot does not hold yet."""
    customer = pl.col("customer_id") if "customer_id" in snapshot.columns else pl.lit(None, dtype=pl.String)
    known = snapshot.select(
        "email", pl.col("fields_hash").alias("_hash"), pl.col("status").alias("_status"), customer.alias("_customer")
    )
    joined = changes.join(known, on="email", how="left")
    arriving = pl.col("op").is_in(["add", "readd", "update"])
    # An email change is done when its customer's row is at the new address.
    moved = (
        (pl.col("op") == EMAIL_CHANGE) & (pl.col("_customer") == pl.col("customer_id").cast(pl.String))
        if "customer_id" in changes.columns
        else pl.lit(False)
    )
    done = (
        moved
        | (arriving & (pl.col("_status") == "member") & (pl.col("_hash") == pl.col("fields_hash")))
        | (arriving & (pl.col("_status") == "opted_out"))
        | (arriving & (pl.col("_status") == "rejected") & (pl.col("_hash") == pl.col("fields_hash")))
        | ((pl.col("op") == "remove") & (pl.col("_status") != "member"))
    ).fill_null(False)
    return joined.filter(~done).drop("_hash", "_status", "_customer")


def _by_email(frame: pl.DataFrame, column: str) -> dict[str, datetime]:
    return {email: when for email, when in frame.select("email", column).iter_rows() if when is not None}


class Push:
    """One attempt at pushing one audience's changes. See the module docstring."""

    def __init__(
        self,
        client: ActiveCampaignClient,
        state: SyncState,
        audience: Audience,
        run_id: str,
        *,
        account: str,
        log: Callable[[str], None] = print,
        poll_interval: float = 1.0,
        max_in_flight: int = 20,
        resync: bool = False,
        allow_removals: bool = False,
        callbacks: ImportCallbacks | None = None,
    ):
        self.client, self.state, self.audience, self.run_id = client, state, audience, run_id
        # Who the list belongs to: the account's API URL, or the built-in sandbox's own account id.
        self.account = account
        self.log = log
        self.poll_interval = poll_interval
        self.max_in_flight = max_in_flight
        # Rebuild the snapshot from the list before pushing, even when the destination did not change.
        self.resync = resync
        # A person let this run remove more than the removal guard allows (its override tag or config).
        self.allow_removals = allow_removals
        # Where ActiveCampaign tells this push that a bulk import ran; None: poll every batch.
        self.callbacks = callbacks

    def run(self, changes: pl.DataFrame, members: pl.DataFrame | None = None) -> PushResult:
        """Push `changes` (audience_changes). `members` (audience_members) lets the push diff again after a
        resync; without them a destination that changed is refused.

        The push holds its audience in the sync state from its first read of the snapshot to its last commit:
        two pushes of one audience (a retry started while a lost attempt still runs, two orchestrators) never
        interleave; the second waits, then diffs against what the first confirmed."""
        with self.state.hold(self.audience.key, holder=f"push of run {self.run_id}"):
            return self._run(changes, members)

    def _run(self, changes: pl.DataFrame, members: pl.DataFrame | None) -> PushResult:
        started, requests_before = time.monotonic(), self.client.stats.requests
        snapshot = self.state.snapshot(self.audience.key)
        recorded = self.state.destination(self.audience.key)
        # One request on every push, changes or not: a list deleted or recreated behind the pipeline's back
        # is found by the next sync, not only by the next one that happens to have changes.
        found = self.client.find_list(self.audience.list.name)
        list_id = str(found["id"]) if found is not None else None
        why = self._destination_moved(recorded, list_id, snapshot)
        result = PushResult(pending={}, already_confirmed=0)
        if why is not None or self.resync:
            if members is None:
                raise self._refusal(why or "a resync was asked for")
            in_audience = members.filter(pl.col("status") == "member") if "status" in members.columns else members
            snapshot = self._resync(why or "a resync was asked for", result, in_audience.get_column("email"))
            recorded = (self.account, result.list_id) if result.list_id else recorded  # the resync recorded it
        if members is not None:
            snapshot = learn_customer_ids(self.state, self.audience.key, members, snapshot)
        identity = EmailChanges(self.client, self.state, self.audience.key, self.run_id, result, self.log)
        if identity.settle_leftovers(snapshot):
            snapshot = self.state.snapshot(self.audience.key)
        # What an earlier attempt of this sync confirmed (a retry, or a re-run after a crash) is not sent again.
        result.already_confirmed = changes.height - outstanding(changes, snapshot).height
        if members is not None:
            # Diff again, against the snapshot as it is now: a resync, or a reconciliation that ran since
            # audience_changes was computed, may have moved it. The removal guard holds these removals too.
            read_values = last_values(self.state, self.audience)
            moded = changes_for(members, snapshot, self.audience, read_values)
            changes, result.skipped = moded.changes, moded.skipped
            self._guard(changes, snapshot, members)
        todo = outstanding(changes, snapshot)
        moves = todo.filter(pl.col("op") == EMAIL_CHANGE)
        if moves.height:
            if members is None:
                raise ValueError("email changes need the audience's members, to diff again after them")
            identity.send(moves)
            snapshot = self.state.snapshot(self.audience.key)
            after = changes_for(members, snapshot, self.audience, read_values, follow_identity=False)
            todo = outstanding(after.changes, snapshot)
        if self.audience.sync_mode == "update_only":
            todo, result.skipped["not_contacts"] = keep_existing(
                self.client, self.state, self.audience.key, self.run_id, todo, self.log
            )
        by_op = dict(todo.group_by("op").len().iter_rows()) if todo.height else {}
        result.pending = {op: int(by_op.get(op, 0)) for op in ("add", "readd", "update", "remove")}
        result.pending[EMAIL_CHANGE] = moves.height
        if result.already_confirmed:
            self.log(f"resuming: {result.already_confirmed:,} changes were confirmed by an earlier attempt")
        if todo.height:
            self._send(todo, snapshot, result, list_id, recorded)
            missing = todo.height - result.accounted
            if missing:
                # A safety net under every path: a contact without an outcome is never reported as synced.
                raise PushIncomplete(
                    f"{missing:,} of {todo.height:,} contacts have no outcome; the push did not finish"
                )
        elif list_id is not None and recorded != (self.account, list_id):
            self.state.record_destination(self.audience.key, self.account, list_id)
        result.list_id = result.list_id or list_id
        result.requests = self.client.stats.requests - requests_before
        result.seconds = time.monotonic() - started
        return result

    def _send(
        self,
        todo: pl.DataFrame,
        snapshot: pl.DataFrame,
        result: PushResult,
        list_id: str | None,
        recorded: tuple[str, str] | None,
    ) -> None:
        attempt_started = datetime.now(UTC)
        destination = resolve(self.client, self.audience, result.list_id or list_id)
        # A resync may have created the list and fields already, in this attempt.
        result.list_id, result.created_list = destination.list_id, result.created_list or destination.created_list
        result.created_fields = result.created_fields + destination.created_fields
        if recorded != (self.account, destination.list_id):
            # A new list (created just now, or the first sync's), or a snapshot from before destinations
            # were recorded: from now on the snapshot describes this list.
            self.state.record_destination(self.audience.key, self.account, destination.list_id)
        shape = ContactShape(
            list_id=destination.list_id,
            standard_fields=tuple(self.audience.fields.expressions()),
            field_ids=destination.field_ids,
            tags=tuple(self.audience.tags),
            group_tags=self.audience.group_tags,
            leave_alone=frozenset(field_modes(self.audience)),
        )
        leftovers = self.state.journal(self.audience.key)
        if leftovers.height:
            self.log(
                f"{leftovers.height:,} contacts were in flight when an earlier attempt stopped; asking ActiveCampaign"
            )
        intended = _by_email(leftovers.filter(pl.col("op") == "remove"), "intended_at")
        removed_at = _by_email(snapshot.filter(pl.col("status") == "removed"), "removed_at")
        with Recorder(self.state, self.audience.key, self.run_id, result) as recorder:
            todo = self._set_aside_refusals(todo, shape, recorder)
            readds_alone = todo.filter(pl.col("op") == "readd").height < BULK_READDS
            alone = ((pl.col("op") == "readd") & readds_alone) | (todo.height < SMALL_CHANGE_SET)
            in_bulk, one_by_one = todo.filter(~alone), todo.filter(alone)
            in_bulk = self._settle_unsubscribed(in_bulk, shape, intended, snapshot, recorder, result)
            if not readds_alone:
                readds = BulkReadds(self.client, shape.list_id, recorder, self.log, removed_at)
                in_bulk, one_by_one = readds.sort_out(in_bulk, one_by_one, snapshot)
            if in_bulk.height:
                BulkSender(
                    self.client,
                    self.audience,
                    shape,
                    recorder,
                    result,
                    self.log,
                    self.poll_interval,
                    self.max_in_flight,
                    self.callbacks,
                ).send(in_bulk)
            if one_by_one.height:
                SingleSender(self.client, shape, recorder, self.log, intended, removed_at).send(one_by_one.to_dicts())
            strip_moved_group_tags(self.client, self.audience, todo, self.log)
        # Every earlier intent was judged above (or its contact sent again): none may outlive this attempt
        # and later make someone else's unsubscribe look like ours.
        self.state.clear_journal_before(self.audience.key, attempt_started)

    # -- before sending ----------------------------------------------------------------------------

    def _destination_moved(
        self, recorded: tuple[str, str] | None, list_id: str | None, snapshot: pl.DataFrame
    ) -> str | None:
        """Why the snapshot does not describe the list the push would write to, or None when it does."""
        name = self.audience.list.name
        if recorded is not None:
            if list_id is None:
                return f"list {name!r} no longer exists in {self.account} (the snapshot describes list {recorded[1]})"
            if recorded != (self.account, list_id):
                return (
                    f"the snapshot describes list {recorded[1]} in {recorded[0]}, but list {name!r} is {list_id} in "
                    f"{self.account} (a recreated list, or another account)"
                )
            return None
        if snapshot.is_empty() and list_id is not None:
            held = sum(list_total(self.client, list_id, status) for status in (1, 2))  # two requests
            if held:
                return (
                    f"the sync state has no record of list {name!r} ({list_id}), which already holds {held:,} "
                    "contacts (the state file was lost, or the list was filled some other way)"
                )
        return None

    def _refusal(self, why: str) -> DestinationChanged:
        return DestinationChanged(
            f"audience {self.audience.key!r}: {why}. Nothing was sent. Its list must be read back and the snapshot "
            "rebuilt from it first (a resync): run the audience_sync job, which does it by itself, or the "
            "list_reconcile job with the config `resync: true`"
        )

    def _resync(self, why: str, result: PushResult, audience_emails: pl.Series) -> pl.DataFrame:
        """Rebuild the snapshot from the list as it is (readback.list_read), and return it.

        Nobody unsubscribed is re-subscribed: an unsubscribe the list's own record does not prove was the
        sync's counts as the person's. Removals are never dropped: every active contact the sync put there
        (snapshot, ledger) is a member of the rebuilt snapshot, so whoever is not in the audience is removed,
        held by the removal guard like any other removal (reconcile.ownership says who else counts)."""
        self.log(f"{why}: reading the list back to rebuild the snapshot before sending anything")
        destination = resolve(self.client, self.audience)
        result.list_id, result.created_list = destination.list_id, destination.created_list
        result.created_fields = destination.created_fields
        outcome = read_back(
            self.client,
            self.state,
            self.audience,
            self.run_id,
            account=self.account,
            resync=True,
            list_id=destination.list_id,
            audience_emails=audience_emails,
            log=self.log,
            held=True,
        )
        result.resynced = True
        counts = ", ".join(f"{n:,} {kind}" for kind, n in outcome.reconciliation.counts().items() if n) or "no drift"
        self.log(f"resynced from the {outcome.members.height:,} contacts on the list: {counts}")
        return self.state.snapshot(self.audience.key)

    def _guard(self, changes: pl.DataFrame, snapshot: pl.DataFrame, members: pl.DataFrame) -> None:
        synced = snapshot.filter(pl.col("status") == "member").height
        removals = changes.filter(pl.col("op") == "remove").height
        audience_size = (
            members.filter(pl.col("status") == "member").height if "status" in members.columns else members.height
        )
        verdict = evaluate(self.audience.removal_guard, synced, removals, audience_size)
        if not verdict.passed and not self.allow_removals:
            raise RemovalsHeld(
                f"audience {self.audience.key!r}: {verdict.reason}. Nothing was sent. "
                f"{override_hint(self.audience.key)}"
            )

    def _set_aside_refusals(self, todo: pl.DataFrame, shape: ContactShape, recorder: Recorder) -> pl.DataFrame:
        """Contacts ActiveCampaign would refuse (a value over a field's limit) are rejected with the reason;
        the rest of the audience still goes out."""
        # Only rows the vectorised pre-filter flags are looked at one by one: usually none.
        refused: list[tuple[int, Outcome]] = []
        for row in todo.with_row_index("_row").filter(may_be_refused(todo, shape)).iter_rows(named=True):
            index = row.pop("_row")
            reason = refusal(row, shape)
            if reason is not None:
                refused.append((index, Outcome(row, "rejected", reason=reason)))
        if not refused:
            return todo
        recorder.record([outcome for _, outcome in refused])
        first = refused[0][1]
        self.log(f"{len(refused):,} contacts cannot be sent as they are (e.g. {first.row['email']}: {first.reason})")
        gone = pl.Series([index for index, _ in refused], dtype=pl.UInt32)
        return todo.with_row_index("_row").filter(~pl.col("_row").is_in(gone.implode())).drop("_row")

    def _settle_unsubscribed(
        self,
        rows: pl.DataFrame,
        shape: ContactShape,
        intended: dict[str, datetime],
        snapshot: pl.DataFrame,
        recorder: Recorder,
        result: PushResult,
    ) -> pl.DataFrame:
        """Removals of people already unsubscribed from the list are not sent again. Each is judged from
        the list's own record (sync.consent): ours when an earlier attempt meant to remove them and the
        record shows no one else's unsubscribe since; theirs otherwise, recorded as opted out so that
        re-entering the audience never re-subscribes them. One request per 100 unsubscribed contacts."""
        leaving = rows.filter(pl.col("op") == "remove")
        if leaving.is_empty() and not intended:
            return rows
        records = {
            str(contact.get("email", "")).strip().lower(): record
            for contact, record in self.client.iter_list_memberships(shape.list_id, status=2)
        }
        settled: list[Outcome] = []
        for row in leaving.iter_rows(named=True):
            record = records.get(row["email"])
            if record is not None:
                settled.append(self._judged_removal(row, record, intended.get(row["email"])))
        recorder.record(settled)
        # An earlier attempt's unsubscribe that this sync no longer asks for (the contact is staying):
        # the snapshot learns it happened, and the next sync's diff re-adds them as the audience wants.
        members = set(snapshot.filter(pl.col("status") == "member").get_column("email"))
        removing = set(leaving.get_column("email"))
        stray = [
            self._judged_removal({"email": email, "op": "remove", "contact_id": None}, records[email], when)
            for email, when in intended.items()
            if email in records and email in members and email not in removing
        ]
        stray = [o for o in stray if o.status == "confirmed"]
        if stray:
            recorder.record(stray, counted=False)
            result.settled_from_journal += len(stray)
            self.log(f"{len(stray):,} contacts were unsubscribed by a crashed attempt; the next sync re-adds them")
        result.settled_from_journal += sum(1 for o in settled if o.status == "confirmed")
        done = [o.row["email"] for o in settled]
        return rows.filter(~((pl.col("op") == "remove") & pl.col("email").is_in(done)))

    @staticmethod
    def _judged_removal(row: dict[str, Any], record: dict[str, Any], intended_at: datetime | None) -> Outcome:
        contact_id = str(record.get("contact")) if record.get("contact") else None
        verdict = judge_unsubscribe(record, not_before=intended_at)
        if verdict.ours:
            return Outcome(row, "confirmed", contact_id=contact_id, removed_at=parse_date(record.get("udate")))
        return Outcome(row, "opted_out", reason=verdict.reason, contact_id=contact_id)
