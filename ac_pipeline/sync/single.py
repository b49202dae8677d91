"""Sending contacts one at a time: contact/sync, contactLists and contactTags.

Used for small change sets (the API reference recommends contact/sync under 10 contacts), for a few
re-adds, and for the re-adds the bulk consent check cannot vouch for (sync.readds). Bulk import never
re-subscribes anyone: a person the sync itself removed comes back through contactLists status 1, and only
after the list's own record proves the unsubscribe was ours.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ac_pipeline.activecampaign import ActiveCampaignClient, ValidationError
from ac_pipeline.sync.consent import OPTED_OUT, judge_unsubscribe, list_record, parse_date
from ac_pipeline.sync.outcomes import Outcome, Recorder
from ac_pipeline.sync.payloads import ContactShape, sync_fields


class SingleSender:
    def __init__(
        self,
        client: ActiveCampaignClient,
        shape: ContactShape,
        recorder: Recorder,
        log: Callable[[str], None],
        intended: dict[str, datetime],
        removed_at: dict[str, datetime],
    ):
        self.client, self.shape, self.recorder, self.log = client, shape, recorder, log
        # email -> when an earlier, unfinished attempt meant to unsubscribe them (the journal)
        self.intended = intended
        # email -> when ActiveCampaign recorded the sync's unsubscribe (the snapshot), for re-adds
        self.removed_at = removed_at
        self._tag_ids: dict[str, str] | None = None

    def send(self, rows: list[dict[str, Any]]) -> None:
        self.log(f"sending {len(rows):,} contacts one at a time")
        for row in rows:
            self.recorder.journal([row])
            self.recorder.record([self._send_one(row)])
            self.recorder.save()

    def _send_one(self, row: dict[str, Any]) -> Outcome:
        if row["op"] == "remove":
            return self._remove(row)
        try:
            contact = self.client.sync_contact(row["email"], **sync_fields(row, self.shape))
        except ValidationError as refused:
            return Outcome(row, "rejected", reason=str(refused))
        contact_id = str(contact["id"])
        record = list_record(self.client, contact_id, self.shape.list_id)
        status = str(record.get("status")) if record else None
        if status == "2":
            # Only an unsubscribe the list's record proves was ours (made when the snapshot says) is undone.
            verdict = (
                judge_unsubscribe(record, not_after=self.removed_at.get(row["email"])) if row["op"] == "readd" else None
            )
            if verdict is None or not verdict.ours:
                reason = verdict.reason if verdict else OPTED_OUT
                return Outcome(row, "opted_out", reason=reason, contact_id=contact_id)
        if status != "1":
            self.client.set_list_status(contact_id, self.shape.list_id, 1)
        tag_ids = self._tags()
        for name in self.shape.tags_of(row):
            self.client.add_contact_tag(contact_id, tag_ids[name])
        return Outcome(row, "confirmed", contact_id=contact_id)

    def _remove(self, row: dict[str, Any]) -> Outcome:
        contact_id = row.get("contact_id") or (self.client.find_contact(row["email"]) or {}).get("id")
        if contact_id is None:
            return Outcome(row, "confirmed")  # no such contact: nobody to remove
        contact_id = str(contact_id)
        record = list_record(self.client, contact_id, self.shape.list_id)
        if record is not None and str(record.get("status")) == "2":
            # Already unsubscribed: by an earlier attempt of ours that crashed, or by the person.
            verdict = judge_unsubscribe(record, not_before=self.intended.get(row["email"]))
            if verdict.ours:
                return Outcome(row, "confirmed", contact_id=contact_id, removed_at=parse_date(record.get("udate")))
            return Outcome(row, "opted_out", reason=verdict.reason, contact_id=contact_id)
        answer = self.client.set_list_status(contact_id, self.shape.list_id, 2)
        # Keep ActiveCampaign's own time of our unsubscribe: a re-add later checks the record still shows it.
        record = answer.get("contactList", answer) if isinstance(answer, dict) else {}
        when = parse_date(record.get("udate")) or datetime.now(UTC)
        return Outcome(row, "confirmed", contact_id=contact_id, removed_at=when)

    def _tags(self) -> dict[str, str]:
        if self._tag_ids is None:
            names = [*self.shape.tags, *self.shape.group_tags.values()]
            self._tag_ids = self.client.ensure_tags(names) if names else {}
        return self._tag_ids
