"""Bulk import: validating a batch, queueing it, and applying it later on a worker thread.

An accepted batch is stored (so a restart with a state file resumes it) and applied once its delay has passed,
whether or not anyone polls, in one transaction: all its applied contacts land together. Until then
`import/info` answers `false` for the first fifth of the delay, then `waiting`, then `active` from half-way on.
"""

from __future__ import annotations

import heapq
import json
import sqlite3
import threading
import time
import uuid
from typing import Any

from ac_pipeline.sandbox.callbacks import CallbackSender, callback_failure, callback_request
from ac_pipeline.sandbox.emails import is_valid, normalize
from ac_pipeline.sandbox.json_text import loads
from ac_pipeline.sandbox.lengths import BULK_LIMITS, FIELD_VALUE_LIMIT, too_long
from ac_pipeline.sandbox.provenance import IMPORT_UNSUBSCRIBE, MEMBERSHIP_UPSERT, membership_params
from ac_pipeline.sandbox.store import Store, now_iso
from ac_pipeline.sandbox.values import id_of, text_of

MAX_CONTACTS = 250
MAX_BODY_BYTES = 400_000
VALIDATION_MESSAGE = (
    "JSON payload did not pass validation. Please fix failure Reasons and retry. "
    "The import was not queued for processing."
)
EMAIL_FORMAT = "Field' email' incorrect format"
TEXT_FIELDS = {"first_name": "first_name", "last_name": "last_name", "phone": "phone"}
IGNORED_TEXT_FIELDS = ("customer_acct_name",)

Failure = dict[str, Any] | str


def body_too_big(size: int) -> list[Failure]:
    return [f"The request body is {size:,} bytes; it must be under {MAX_BODY_BYTES:,}. Send fewer contacts."]


def validation_failures(payload: Any, list_ids: set[int], field_ids: set[int]) -> list[Failure]:
    """Structural problems that reject the whole batch; an empty list means it may be queued."""
    if not isinstance(payload, dict) or not isinstance(payload.get("contacts"), list) or not payload["contacts"]:
        return ['The body must be a JSON object with "contacts": a non-empty list of contacts.']
    if "exclude_automations" in payload and not isinstance(payload["exclude_automations"], bool):
        return ["Field' exclude_automations' must be true or false."]
    if "callback" in payload and (reason := callback_failure(payload["callback"])):
        return [reason]
    contacts = payload["contacts"]
    if len(contacts) > MAX_CONTACTS:
        too_many = f"Up to {MAX_CONTACTS} contacts may be imported per request; this one has {len(contacts)}."
        return [{"contact": MAX_CONTACTS, "failureReason": too_many}]
    failures: list[Failure] = []
    for index, contact in enumerate(contacts):
        reason = _contact_failure(contact, list_ids, field_ids)
        if reason:
            failures.append({"contact": index, "failureReason": reason})
    return failures


def _contact_failure(contact: Any, list_ids: set[int], field_ids: set[int]) -> str | None:
    if not isinstance(contact, dict):
        return "Contact must be a JSON object."
    if not isinstance(contact.get("email"), str):
        return EMAIL_FORMAT
    for name in (*TEXT_FIELDS, *IGNORED_TEXT_FIELDS):
        if contact.get(name) is not None and text_of(contact[name]) is None:
            return f"Field' {name}' incorrect format"
    tags = contact.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(tag, str) and tag.strip() for tag in tags):
        return "Field' tags' incorrect format: a list of tag names"
    fields = contact.get("fields", [])
    if not isinstance(fields, list) or not all(
        isinstance(f, dict) and text_of(f.get("value")) is not None for f in fields
    ):
        return 'Field\' fields\' incorrect format: a list of {"id": field id, "value": text}'
    for item in fields:
        if id_of(item.get("id")) not in field_ids:
            return f"Field' fields' refers to custom field {item.get('id')!r}, which does not exist"
    for name in ("subscribe", "unsubscribe"):
        targets = contact.get(name, [])
        if not isinstance(targets, list) or not all(isinstance(t, dict) for t in targets):
            return f"Field' {name}' incorrect format: a list of {{\"listid\": list id}}"
        for target in targets:
            if id_of(target.get("listid")) not in list_ids:
                return f"Field' {name}' refers to list {target.get('listid')!r}, which does not exist"
    return None


def batch_phase(elapsed: float, delay: float) -> str | bool:
    """What import/info says about a batch not yet applied, `elapsed` seconds into its `delay`."""
    if delay > 0 and elapsed < 0.2 * delay:
        return False
    if delay > 0 and elapsed < 0.5 * delay:
        return "waiting"
    return "active"


class ImportStats:
    """What the worker has applied since start or reset, and the time it spent doing so (for the benchmark)."""

    def __init__(self) -> None:
        self.batches = 0
        self.contacts = 0
        self.busy_seconds = 0.0

    def add(self, contacts: int, seconds: float) -> None:
        self.batches += 1
        self.contacts += contacts
        self.busy_seconds += seconds

    def to_dict(self) -> dict[str, float]:
        return {"applied_batches": self.batches, "applied_contacts": self.contacts, "busy_seconds": self.busy_seconds}


class ImportQueue:
    """Accepted batches, applied by one worker thread in the order they fall due."""

    def __init__(self, store: Store, delay: float) -> None:
        self.store = store
        self.delay = delay
        self._due: list[tuple[float, str]] = []
        # The parsed contacts of batches accepted since start, so that applying one does not parse its stored
        # body again; a batch resumed after a restart is parsed from the store.
        self._parsed: dict[str, list[dict[str, Any]]] = {}
        self._callback_of: dict[str, dict[str, Any]] = {}  # likewise, the batches' `callback` objects
        self.callbacks = CallbackSender()
        self._wakeup = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.stats = ImportStats()

    def start(self) -> None:
        # A restart with a state file resumes the batches that were still waiting.
        pending = self.store.all("SELECT due, id FROM batches WHERE applied = 0")
        with self._wakeup:
            self._due = [(row["due"], row["id"]) for row in pending]
            heapq.heapify(self._due)
            self._stopping = False
        self._thread = threading.Thread(target=self._run, name="sandbox-imports", daemon=True)
        self._thread.start()
        self.callbacks.start()

    def stop(self) -> None:
        with self._wakeup:
            self._stopping = True
            self._wakeup.notify()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.callbacks.stop()

    def clear(self) -> None:
        with self._wakeup:
            self._due.clear()
            self._parsed.clear()
            self._callback_of.clear()
        self.stats = ImportStats()

    def submit(
        self,
        raw_body: bytes,
        count: int,
        contacts: list[dict[str, Any]] | None = None,
        callback: dict[str, Any] | None = None,
    ) -> str:
        """Store an accepted batch of `count` contacts and queue it; `contacts` is the body's parsed
        `contacts`, if the caller has it (never changed afterwards), and `callback` its `callback`."""
        batch_id = str(uuid.uuid4())
        submitted = time.time()
        due = submitted + self.delay
        self.store.execute(
            "INSERT INTO batches (id, submitted, due, contacts, payload) VALUES (?, ?, ?, ?, ?)",
            (batch_id, submitted, due, count, raw_body),
        )
        with self._wakeup:
            if contacts is not None:
                self._parsed[batch_id] = contacts
                if callback is not None:
                    self._callback_of[batch_id] = callback
            heapq.heappush(self._due, (due, batch_id))
            self._wakeup.notify()
        return batch_id

    def info(self, batch_id: str) -> dict[str, Any] | None:
        """The batch as import/info shows it, plus per-contact failure reasons; None if unknown."""
        row = self.store.one("SELECT submitted, due, applied, result FROM batches WHERE id = ?", (batch_id,))
        if row is None:
            return None
        if row["applied"]:
            result = loads(row["result"])
            return {"status": "completed", **result}
        status = batch_phase(time.time() - row["submitted"], row["due"] - row["submitted"])
        return {"status": status, "success": [], "failure": [], "reasons": {}}

    def pending(self) -> int:
        row = self.store.one("SELECT COUNT(*) FROM batches WHERE applied = 0")
        return int(row[0]) if row else 0

    def summary(self) -> dict[str, list[dict[str, str]]]:
        """GET /import/bulk_import: outstanding and recently (7 days) completed batches, per day."""
        query = (
            "SELECT date(submitted, 'unixepoch', 'localtime') AS day, COUNT(*) AS n, SUM(contacts) AS c"
            " FROM batches WHERE applied = ? AND submitted >= ? GROUP BY day ORDER BY day"
        )
        week_ago = time.time() - 7 * 86400

        def per_day(applied: int, since: float) -> list[dict[str, str]]:
            rows = self.store.all(query, (applied, since))
            return [{"forDate": r["day"], "batches": str(r["n"]), "contacts": str(r["c"])} for r in rows]

        return {"outstanding": per_day(0, 0.0), "recentlyCompleted": per_day(1, week_ago)}

    def _run(self) -> None:
        while True:
            with self._wakeup:
                while not self._stopping and (not self._due or self._due[0][0] > time.time()):
                    timeout = self._due[0][0] - time.time() if self._due else None
                    self._wakeup.wait(timeout)
                if self._stopping:
                    return
                _, batch_id = heapq.heappop(self._due)
            self.apply(batch_id)

    def apply(self, batch_id: str) -> None:
        started = time.perf_counter()
        with self._wakeup:
            parsed = self._parsed.pop(batch_id, None)
            callback = self._callback_of.pop(batch_id, None)
        with self.store.transaction() as conn:
            row = conn.execute("SELECT payload FROM batches WHERE id = ? AND applied = 0", (batch_id,)).fetchone()
            if row is None:  # gone after a reset
                return
            if parsed is None:  # a batch resumed after a restart
                payload = loads(row["payload"])
                parsed, callback = payload["contacts"], payload.get("callback")
            result = _apply_contacts(conn, parsed, now_iso())
            conn.execute(
                "UPDATE batches SET applied = 1, payload = NULL, result = ? WHERE id = ?",
                (json.dumps(result), batch_id),
            )
        self.stats.add(len(parsed), time.perf_counter() - started)
        if callback is not None:  # after the commit: whoever is called back may read the result at once
            self.callbacks.send(callback_request(callback, batch_id, len(parsed), result))


TAG_LINK = "INSERT OR IGNORE INTO contact_tags (contact_id, tag_id, cdate) VALUES (?, ?, ?)"
FIELD_VALUE_UPSERT = (
    "INSERT INTO field_values (contact_id, field_id, value, cdate, udate) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (contact_id, field_id) DO UPDATE SET value = excluded.value, udate = excluded.udate"
)
CONTACT_INSERT = "INSERT INTO contacts (email, first_name, last_name, phone, cdate, udate) VALUES (?, ?, ?, ?, ?, ?)"
# A contact's attributes that the batch sent (NULL: not sent, kept); udate moves even when none was sent, with
# the memberships, tags and values written for the contact.
CONTACT_UPDATE = (
    "UPDATE contacts SET first_name = coalesce(?, first_name), last_name = coalesce(?, last_name),"
    " phone = coalesce(?, phone), udate = ? WHERE email = ?"
)


def _apply_contacts(conn: sqlite3.Connection, contacts: list[dict[str, Any]], now: str) -> dict[str, Any]:
    """Apply a validated batch, with the outcome of applying it contact by contact in order: {"success": new ids,
    "failure": emails, "reasons"}.

    A few statements per batch instead of several per contact: lookups are made for the whole batch up front,
    then each contact is judged in order (a later row of the batch sees what an earlier one did: the contact it
    created, the list it unsubscribed from), then the new contacts are inserted and the others updated, each in
    one `executemany` and in batch order (so new contacts get their ids in that order), and the memberships, tags
    and values written last.
    """
    emails = [normalize(contact["email"]) for contact in contacts]
    marks = ",".join("?" * len(emails))
    excluded = {row[0] for row in conn.execute(f"SELECT email FROM exclusions WHERE email IN ({marks})", emails)}
    bounced: set[str] = set()  # addresses that bounced hard: on the account's bounce list
    contact_ids: dict[str, int] = {}
    for email, contact_id, bounced_hard in conn.execute(
        f"SELECT email, id, bounced_hard FROM contacts WHERE email IN ({marks})", emails
    ):
        contact_ids[email] = contact_id
        if bounced_hard:
            bounced.add(email)
    email_of = {contact_id: email for email, contact_id in contact_ids.items()}
    known_marks = ",".join("?" * len(email_of))
    # (email, list id): a normalised email names one contact, and names it before a new one has its id.
    unsubscribed = {
        (email_of[row[0]], row[1])
        for row in conn.execute(
            f"SELECT contact_id, list_id FROM memberships WHERE status = 2 AND contact_id IN ({known_marks})",
            list(email_of),
        )
    }
    exists = set(contact_ids)  # in the account before the batch, or created by an earlier row of it
    created: list[str] = []  # emails of the contacts the batch creates, in order
    inserts: list[tuple[Any, ...]] = []
    updates: list[tuple[Any, ...]] = []
    applied: list[tuple[str, dict[str, Any], list[int], list[int], list[tuple[Any, str]]]] = []
    failure: list[str] = []
    reasons: dict[str, str] = {}
    for contact, email in zip(contacts, emails, strict=True):
        subscribe = _list_ids(contact, "subscribe")
        opted_out = [list_id for list_id in subscribe if (email, list_id) in unsubscribed]
        # Each value as text once, for the length checks and the writes (validation made sure they are text).
        values = {column: _text(contact[key]) for key, column in TEXT_FIELDS.items() if contact.get(key) is not None}
        fields = [(item["id"], _text(item["value"])) for item in contact.get("fields", [])]
        reason = _failure_reason(email, values, fields, email in excluded, opted_out) or (
            "address is on the bounce list (it bounced hard)" if email in bounced else None
        )
        if reason is not None:
            failure.append(contact["email"])
            reasons[contact["email"]] = reason
            continue
        if email in exists:
            updates.append((values.get("first_name"), values.get("last_name"), values.get("phone"), now, email))
        else:
            exists.add(email)
            created.append(email)
            inserts.append(
                (email, values.get("first_name", ""), values.get("last_name", ""), values.get("phone", ""), now, now)
            )
        unsubscribe = _list_ids(contact, "unsubscribe")
        unsubscribed.update((email, list_id) for list_id in unsubscribe)  # later rows of the batch see it
        applied.append((email, contact, subscribe, unsubscribe, fields))
    conn.executemany(CONTACT_INSERT, inserts)
    conn.executemany(CONTACT_UPDATE, updates)
    if created:
        new_marks = ",".join("?" * len(created))
        contact_ids.update(conn.execute(f"SELECT email, id FROM contacts WHERE email IN ({new_marks})", created))
    memberships: list[tuple[Any, ...]] = []
    tag_links: list[tuple[Any, ...]] = []
    field_values: list[tuple[Any, ...]] = []
    tag_ids: dict[str, int] = {}
    for email, contact, subscribe, unsubscribe, fields in applied:
        contact_id = contact_ids[email]
        memberships += [membership_params(contact_id, list_id, 1, None, now) for list_id in subscribe]
        memberships += [membership_params(contact_id, list_id, 2, IMPORT_UNSUBSCRIBE, now) for list_id in unsubscribe]
        tag_links += [(contact_id, _tag_id(conn, name.strip(), now, tag_ids), now) for name in contact.get("tags", [])]
        field_values += [(contact_id, id_of(field_id), value, now, now) for field_id, value in fields]
    conn.executemany(MEMBERSHIP_UPSERT, memberships)
    conn.executemany(TAG_LINK, tag_links)
    conn.executemany(FIELD_VALUE_UPSERT, field_values)
    return {"success": [str(contact_ids[email]) for email in created], "failure": failure, "reasons": reasons}


def _list_ids(contact: dict[str, Any], key: str) -> list[int]:
    """The list ids in a validated contact's `subscribe` or `unsubscribe` (validation made sure they are ids)."""
    return [int(item["listid"]) for item in contact.get(key, [])]


def _text(value: Any) -> str:
    """`text_of` a validated value (a string, or a number sent for text), with strings on the fast path."""
    return value if type(value) is str else text_of(value) or ""


def _failure_reason(
    email: str, values: dict[str, str], fields: list[tuple[Any, str]], excluded: bool, opted_out: list[int]
) -> str | None:
    """Why a contact of an accepted batch is not applied at all, or None if it is. `values` are its text
    fields, `fields` its custom field (id as sent, value) pairs."""
    too_long_value = _too_long_value(email, values, fields)
    if too_long_value:
        return too_long_value
    if not is_valid(email):
        return "email is not a valid address"
    if excluded:
        return "address is on the exclusion list"
    if opted_out:
        return f"contact unsubscribed from list {opted_out[0]}; bulk import does not re-subscribe"
    return None


def _too_long_value(email: str, values: dict[str, str], fields: list[tuple[Any, str]]) -> str | None:
    """The first value of a validated contact that is longer than ActiveCampaign keeps, said, or None."""
    for key, value in {"email": email, **values}.items():
        problem = too_long(key, value, BULK_LIMITS[key])
        if problem:
            return problem
    for field_id, value in fields:
        problem = too_long(f"fields (custom field {field_id}) value", value, FIELD_VALUE_LIMIT)
        if problem:
            return problem
    return None


def _tag_id(conn: sqlite3.Connection, name: str, now: str, cache: dict[str, int]) -> int:
    """The id of the tag with this name (ignoring case), created if missing, as bulk import does."""
    key = name.lower()
    if key not in cache:
        row = conn.execute("SELECT id FROM tags WHERE tag = ? COLLATE NOCASE ORDER BY id", (name,)).fetchone()
        if row is None:
            cursor = conn.execute(
                "INSERT INTO tags (tag, tag_type, description, cdate) VALUES (?, 'contact', '', ?)", (name, now)
            )
            cache[key] = int(cursor.lastrowid or 0)
        else:
            cache[key] = int(row[0])
    return cache[key]
