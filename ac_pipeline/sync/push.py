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
4. Send. Fewer than `SMALL_CHANGE_SET` changes, and every re-add, go one contact at a time
   (sync.single); the rest through bulk import (sync.bulk). Each batch is written to the intent journal
   before it goes out.
5. Account: the push succeeds only if every contact it took on has an outcome, and none failed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import polars as pl

from ac_pipeline.activecampaign import ActiveCampaignClient
from ac_pipeline.audiences.config import Audience
from ac_pipeline.state.store import SyncState
from ac_pipeline.sync.bulk import BulkSender, PushIncomplete
from ac_pipeline.sync.consent import judge_unsubscribe, parse_date
from ac_pipeline.sync.destination import resolve
from ac_pipeline.sync.outcomes import Outcome, PushResult, Recorder
from ac_pipeline.sync.payloads import ContactShape, may_be_refused, refusal
from ac_pipeline.sync.single import SingleSender

__all__ = ["SMALL_CHANGE_SET", "DestinationChanged", "Push", "PushIncomplete", "PushResult", "outstanding"]

# The API reference recommends contact/sync over bulk import for fewer than 10 contacts.
SMALL_CHANGE_SET = 10


class DestinationChanged(RuntimeError):
    """The snapshot does not describe the list the push would write to; retrying cannot help."""


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
        adopt_list: bool = False,
    ):
        self.client, self.state, self.audience, self.run_id = client, state, audience, run_id
        # Who the list belongs to: the account's API URL, or the built-in sandbox's own account id.
        self.account = account
        self.log = log
        self.poll_interval = poll_interval
        self.max_in_flight = max_in_flight
        self.adopt_list = adopt_list

    def run(self, changes: pl.DataFrame) -> PushResult:
        started, requests_before = time.monotonic(), self.client.stats.requests
        snapshot = self.state.snapshot(self.audience.key)
        todo = outstanding(changes, snapshot)
        by_op = dict(todo.group_by("op").len().iter_rows()) if todo.height else {}
        result = PushResult(
            pending={op: int(by_op.get(op, 0)) for op in ("add", "readd", "update", "remove")},
            already_confirmed=changes.height - todo.height,
        )
        if result.already_confirmed:
            self.log(f"resuming: {result.already_confirmed:,} changes were confirmed by an earlier attempt")
        recorded = self.state.destination(self.audience.key)
        if recorded is not None and recorded[0] != self.account:
            # Checked even when nothing changed (it costs no request): a green "nothing to do" against
            # another account would claim a list in step that this account may not even have.
            self._refuse_other_destination(recorded, recorded[1])
        if todo.height:
            self._send(todo, snapshot, result, recorded)
            missing = todo.height - result.accounted
            if missing:
                # A safety net under every path: a contact without an outcome is never reported as synced.
                raise PushIncomplete(
                    f"{missing:,} of {todo.height:,} contacts have no outcome; the push did not finish"
                )
        result.requests = self.client.stats.requests - requests_before
        result.seconds = time.monotonic() - started
        return result

    def _send(
        self, todo: pl.DataFrame, snapshot: pl.DataFrame, result: PushResult, recorded: tuple[str, str] | None
    ) -> None:
        attempt_started = datetime.now(UTC)
        destination = resolve(self.client, self.audience)
        result.list_id, result.created_list = destination.list_id, destination.created_list
        result.created_fields = destination.created_fields
        self._check_destination(destination.list_id, destination.created_list, snapshot, recorded)
        shape = ContactShape(
            list_id=destination.list_id,
            standard_fields=tuple(self.audience.fields.expressions()),
            field_ids=destination.field_ids,
            tags=tuple(self.audience.tags),
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
            alone = (pl.col("op") == "readd") | pl.lit(todo.height < SMALL_CHANGE_SET)
            in_bulk, one_by_one = todo.filter(~alone), todo.filter(alone)
            in_bulk = self._settle_unsubscribed(in_bulk, shape, intended, snapshot, recorder, result)
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
                ).send(in_bulk)
            if one_by_one.height:
                SingleSender(self.client, shape, recorder, self.log, intended, removed_at).send(one_by_one.to_dicts())
        # Every earlier intent was judged above (or its contact sent again): none may outlive this attempt
        # and later make someone else's unsubscribe look like ours.
        self.state.clear_journal_before(self.audience.key, attempt_started)

    # -- before sending ----------------------------------------------------------------------------

    def _check_destination(
        self, list_id: str, created_list: bool, snapshot: pl.DataFrame, recorded: tuple[str, str] | None
    ) -> None:
        """The snapshot must describe this account's list; otherwise nothing is sent."""
        key, name = self.audience.key, self.audience.list.name
        if recorded == (self.account, list_id):
            return
        if recorded is not None:
            self._refuse_other_destination(recorded, list_id)
        if snapshot.is_empty() and not created_list and not self.adopt_list:
            held = self._contacts_on_list(list_id)
            if held:
                raise DestinationChanged(
                    f"audience {key!r}: the sync state has no record of list {name!r} ({list_id}), which already "
                    f"holds {held:,} contacts (the state file was lost, or the list was filled some other way). "
                    "Nothing was sent: nobody on it is taken for someone who unsubscribed. Restore the state file "
                    "from a backup, or adopt the list: run the sync with the activecampaign_sync config "
                    "`adopt_list: true` (or the run tag ac_pipeline/adopt_list=true). Adopting sends every audience "
                    "member as an add; people who unsubscribed stay unsubscribed, and contacts outside the audience "
                    "are left on the list"
                )
        if not snapshot.is_empty():
            self.log(f"recording that the snapshot of {key!r} describes list {list_id} in {self.account}")
        self.state.record_destination(key, self.account, list_id)

    def _refuse_other_destination(self, recorded: tuple[str, str], list_id: str) -> None:
        key, name = self.audience.key, self.audience.list.name
        raise DestinationChanged(
            f"audience {key!r}: the sync state describes list {recorded[1]} in {recorded[0]}, but list {name!r} "
            f"is {list_id} in {self.account} (a recreated list, or another account). Its snapshot says nothing "
            "about this list, so nothing was sent. To start over on the list as it is now: "
            f"`ac-pipeline state forget {key}`, then run the sync again (with the activecampaign_sync config "
            "`adopt_list: true`, or the run tag ac_pipeline/adopt_list=true, if the list already holds contacts)"
        )

    def _contacts_on_list(self, list_id: str) -> int:
        """Subscribed plus unsubscribed contacts on the list (two requests)."""
        total = 0
        for status in (1, 2):
            answer = self.client.request("GET", "contacts", params={"listid": list_id, "status": status, "limit": 1})
            total += int((answer.get("meta") or {}).get("total") or 0)
        return total

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
