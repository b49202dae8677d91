"""Re-adding many returning contacts at once: the consent checks read in bulk, then bulk import.

A re-add is a customer the sync itself removed (status 2 on the list) who is back in the audience. One
at a time (sync.single) each costs contact/sync, a read of its list record, the status-1 POST and a POST
per tag. Here, for many:

1. The intent is journaled, as before every send.
2. Their list records are read `CHECK_CHUNK` (25) contacts a request, by contact id
   (`GET contacts?ids[]=..&include=contactLists`), and judged by the very function the single path uses
   (consent.judge_unsubscribe, bounded by when the snapshot saw our unsubscribe). An unsubscribe proven ours
   is undone at once with one `contactLists` status-1 POST (bulk import never re-subscribes anyone); anything
   else is recorded `opted_out` with its reason and never re-subscribed. Each chunk's POSTs go out right
   after its read, so a record is at most 25 POSTs old (5 seconds at 5 requests a second) when it is acted
   on; the single path's is one request old. A smaller chunk narrows that further, at a read per chunk.
3. When the snapshot does not know their contact ids (bulk import does not give them; a read-back learns
   them), the list's unsubscribed are read first, 100 a request
   (`GET contacts?listid=..&status=2&include=contactLists`), and matched by email: who opted out is recorded
   from there, the ids of the others are learnt, and step 2 reads their records again just before acting.
   `plan` takes whichever way costs fewer requests.
4. The returning contacts that are not opted out are handed back, to go with the push's other bulk rows
   through bulk import (fields, tags, and subscribe, harmless now that they are active), confirmed by the
   import's own answer as every bulk row is. Should a person unsubscribe after their status-1 POST, the
   import lists them as a failure and the push records them opted out (sync.bulk); bulk import likewise
   never subscribes anyone the list read did not find but who unsubscribed since.

Contacts the bulk reads cannot vouch for go one at a time, judged exactly as before: no known id (on the
id read), a contact the account no longer has (deleted: contact/sync creates it again and the snapshot
learns its new id), a contact whose id now carries another email, or an answer that left one of the
contact's memberships out.

After a crash at any point, the retry finds the snapshot still saying `removed` and does the same again:
who was re-subscribed reads status 1 and goes straight to the import; nobody is re-subscribed without a
record, read in that attempt, proving the unsubscribe ours.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl

from ac_pipeline.activecampaign import ActiveCampaignClient
from ac_pipeline.activecampaign.client import PAGE_SIZE
from ac_pipeline.sync.consent import Verdict, judge_unsubscribe
from ac_pipeline.sync.outcomes import Outcome, Recorder

# Requests one re-add costs on the single path (contact/sync, the list record, status 1, one tag).
SINGLE_READD_REQUESTS = 4
# Returning contacts whose records are read in one request just before their status-1 POSTs: how old a
# record may be when acted on (see the module docstring).
CHECK_CHUNK = 25

# (the change row, ActiveCampaign's contact, its record for the list or None when it is not on the list)
Found = tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]


@dataclass
class ReaddPlan:
    """How the consent records of the returning contacts are read, and what it costs."""

    by: str  # "ids" or "list"
    read_requests: int  # requests to read the records (at most)
    one_at_a_time: int  # re-adds the reads cannot vouch for, sent by the single path


def _chunks(n: int, size: int) -> int:
    return -(-n // size)


def plan(rows: pl.DataFrame, list_unsubscribed: int) -> ReaddPlan:
    """Reading by id costs a request per 25 known ids, plus the single path for those without one; reading
    the list first costs a request per 100 of its unsubscribed (`list_unsubscribed`, as the snapshot counts
    them: only the choice rests on it, not the verdicts), then the same reads by id for those found there."""
    unknown = rows.filter(pl.col("contact_id").is_null()).height
    by_ids = ReaddPlan("ids", _chunks(rows.height - unknown, CHECK_CHUNK), unknown)
    by_list = ReaddPlan("list", _chunks(max(list_unsubscribed, 1), PAGE_SIZE) + _chunks(rows.height, CHECK_CHUNK), 0)
    cost = {p.by: p.read_requests + SINGLE_READD_REQUESTS * p.one_at_a_time for p in (by_ids, by_list)}
    return by_ids if cost["ids"] <= cost["list"] else by_list


@dataclass
class ReaddResult:
    """What the bulk consent check leaves to send: through bulk import, or one at a time."""

    in_bulk: list[dict[str, Any]] = field(default_factory=list)
    one_at_a_time: list[dict[str, Any]] = field(default_factory=list)
    resubscribed: int = 0
    opted_out: int = 0


class BulkReadds:
    """Judges and re-subscribes many returning contacts; see the module docstring."""

    def __init__(
        self,
        client: ActiveCampaignClient,
        list_id: str,
        recorder: Recorder,
        log: Callable[[str], None],
        removed_at: dict[str, datetime],
    ):
        self.client, self.list_id, self.recorder, self.log = client, list_id, recorder, log
        # email -> when ActiveCampaign recorded the sync's unsubscribe (the snapshot): the verdict's bound
        self.removed_at = removed_at

    def sort_out(
        self, in_bulk: pl.DataFrame, one_by_one: pl.DataFrame, snapshot: pl.DataFrame
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Settle the re-adds among the push's bulk rows (`settle`); return the bulk rows and the rows to send
        one at a time, with the re-adds still to send where they now belong."""
        returning = in_bulk.filter(pl.col("op") == "readd")
        if returning.is_empty():
            return in_bulk, one_by_one
        # The list's unsubscribed as the snapshot knows them, to choose how to read (not to judge anyone).
        unsubscribed = snapshot.filter(pl.col("status").is_in(["removed", "opted_out"])).height
        result = self.settle(returning, unsubscribed)
        schema = in_bulk.schema
        in_bulk = pl.concat([in_bulk.filter(pl.col("op") != "readd"), pl.DataFrame(result.in_bulk, schema=schema)])
        one_by_one = pl.concat([one_by_one, pl.DataFrame(result.one_at_a_time, schema=schema)])
        return in_bulk, one_by_one

    def settle(self, rows: pl.DataFrame, list_unsubscribed: int) -> ReaddResult:
        """Journal, read the records, re-subscribe whose unsubscribe was ours, record the others opted out;
        return the rows still to send."""
        how = plan(rows, list_unsubscribed)
        self.log(
            f"{rows.height:,} contacts return: reading their list records by {how.by} "
            f"(about {how.read_requests:,} requests, {how.one_at_a_time:,} left to send one at a time)"
        )
        self.recorder.journal(rows.to_dicts())  # before anything about them is sent
        result = ReaddResult()
        if how.by == "list":
            rows = self._from_list(rows, result)
        for chunk in self._by_ids(rows, result):
            self._judge(chunk, result)
            self.recorder.save()
        self.log(
            f"{result.resubscribed:,} re-subscribed (their unsubscribe was the sync's), "
            f"{result.opted_out:,} opted out themselves and stay unsubscribed"
        )
        return result

    def _verdict(self, row: dict[str, Any], record: dict[str, Any]) -> Verdict:
        # The single path's verdict, with the single path's bound: only an unsubscribe the list's record
        # proves was ours, made when the snapshot says, is undone.
        return judge_unsubscribe(record, not_after=self.removed_at.get(row["email"]))

    def _judge(self, chunk: list[Found], result: ReaddResult) -> None:
        settled: list[Outcome] = []
        for row, contact, record in chunk:
            contact_id = str(contact["id"])
            status = str(record.get("status")) if record is not None else None
            if status == "2" and record is not None:
                verdict = self._verdict(row, record)
                if not verdict.ours:
                    settled.append(Outcome(row, "opted_out", reason=verdict.reason, contact_id=contact_id))
                    continue
            if record is not None and status != "1":
                self.client.set_list_status(contact_id, self.list_id, 1)
                result.resubscribed += 1
            # The snapshot learns the id (bulk import's answer does not give it).
            result.in_bulk.append({**row, "contact_id": contact_id})
        self._record_opted_out(settled, result)

    def _record_opted_out(self, settled: list[Outcome], result: ReaddResult) -> None:
        self.recorder.record(settled)
        result.opted_out += len(settled)

    def _by_ids(self, rows: pl.DataFrame, result: ReaddResult) -> Iterator[list[Found]]:
        """Chunks of the re-adds whose contact ids are known, with their records read just now; the rest go
        one at a time (see the module docstring)."""
        known = rows.filter(pl.col("contact_id").is_not_null()).to_dicts()
        result.one_at_a_time.extend(rows.filter(pl.col("contact_id").is_null()).to_dicts())
        for start in range(0, len(known), CHECK_CHUNK):
            chunk = known[start : start + CHECK_CHUNK]
            contacts, records = self._read_ids([str(row["contact_id"]) for row in chunk])
            found: list[Found] = []
            for row in chunk:
                contact = contacts.get(str(row["contact_id"]))
                if contact is None or str(contact.get("email", "")).strip().lower() != row["email"]:
                    result.one_at_a_time.append(row)  # deleted, or the id is someone else's now
                elif contact["id"] in records:
                    found.append((row, contact, records[contact["id"]]))
                else:
                    result.one_at_a_time.append(row)  # its memberships could not all be read: ask on its own
            yield found

    def _read_ids(self, ids: list[str]) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any] | None]]:
        """These contacts (id -> contact) and their records for the list (contact id -> the record, None when
        they are not on the list; left out when the answer does not show all of the contact's memberships,
        so that it cannot say): one request."""
        answer, side_loaded = self.client.contacts_with_memberships(ids)
        contacts = {str(c.get("id")): c for c in answer}
        loaded_ids = {str(record.get("id")) for record in side_loaded}
        on_list = {str(r.get("contact")): r for r in side_loaded if str(r.get("list")) == self.list_id}
        records: dict[str, dict[str, Any] | None] = {}
        for contact_id, contact in contacts.items():
            # The contact names its memberships' ids: if one of them is missing, it may be this list's.
            if all(str(i) in loaded_ids for i in contact.get("contactLists") or []):
                records[contact_id] = on_list.get(contact_id)
        for contact in contacts.values():
            contact["id"] = str(contact.get("id"))
        return contacts, records

    def _from_list(self, rows: pl.DataFrame, result: ReaddResult) -> pl.DataFrame:
        """Read the list's unsubscribed and match them to the re-adds by email: who opted out is recorded now;
        the rows whose unsubscribe the list shows ours are returned with their contact ids, for their records
        to be read again just before acting (`_by_ids`). The re-adds not among the unsubscribed are not
        unsubscribed from the list (active, never on it, or deleted): bulk import subscribes them, and lists
        as a failure anyone who unsubscribed since."""
        waiting = {row["email"]: row for row in rows.to_dicts()}
        ours: list[dict[str, Any]] = []
        settled: list[Outcome] = []
        for contact, record in self.client.iter_list_memberships(self.list_id, status=2):
            row = waiting.pop(str(contact.get("email", "")).strip().lower(), None)
            if row is not None:
                contact_id = str(contact["id"])
                verdict = self._verdict(row, record)
                if verdict.ours:
                    ours.append({**row, "contact_id": contact_id})
                else:
                    settled.append(Outcome(row, "opted_out", reason=verdict.reason, contact_id=contact_id))
            if not waiting:
                break  # every re-add found: the rest of the list is not needed
        self._record_opted_out(settled, result)
        result.in_bulk.extend(waiting.values())
        return pl.DataFrame(ours, schema=rows.schema)
