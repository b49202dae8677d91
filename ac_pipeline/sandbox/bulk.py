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

from ac_pipeline.sandbox.emails import is_valid, normalize
from ac_pipeline.sandbox.responses import id_of, text_of
from ac_pipeline.sandbox.store import Store, now_iso

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
    contacts = payload["contacts"]
    if len(contacts) > MAX_CONTACTS:
        return [{
            "contact": MAX_CONTACTS,
            "failureReason": f"Up to {MAX_CONTACTS} contacts may be imported per request; this one has {len(contacts)}.",
        }]
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
    if not isinstance(fields, list) or not all(isinstance(f, dict) and text_of(f.get("value")) is not None
                                               for f in fields):
        return "Field' fields' incorrect format: a list of {\"id\": field id, \"value\": text}"
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


class ImportQueue:
    """Accepted batches, applied by one worker thread in the order they fall due."""

    def __init__(self, store: Store, delay: float) -> None:
        self.store = store
        self.delay = delay
        self._due: list[tuple[float, str]] = []
        self._wakeup = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        # A restart with a state file resumes the batches that were still waiting.
        pending = self.store.all("SELECT due, id FROM batches WHERE applied = 0")
        with self._wakeup:
            self._due = [(row["due"], row["id"]) for row in pending]
            heapq.heapify(self._due)
            self._stopping = False
        self._thread = threading.Thread(target=self._run, name="sandbox-imports", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._wakeup:
            self._stopping = True
            self._wakeup.notify()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def clear(self) -> None:
        with self._wakeup:
            self._due.clear()

    def submit(self, raw_body: bytes, contacts: int) -> str:
        batch_id = str(uuid.uuid4())
        submitted = time.time()
        due = submitted + self.delay
        self.store.execute(
            "INSERT INTO batches (id, submitted, due, contacts, payload) VALUES (?, ?, ?, ?, ?)",
            (batch_id, submitted, due, contacts, raw_body),
        )
        with self._wakeup:
            heapq.heappush(self._due, (due, batch_id))
            self._wakeup.notify()
        return batch_id

    def info(self, batch_id: str) -> dict[str, Any] | None:
        """The batch as import/info shows it, plus per-contact failure reasons; None if unknown."""
        row = self.store.one("SELECT submitted, due, applied, result FROM batches WHERE id = ?", (batch_id,))
        if row is None:
            return None
        if row["applied"]:
            result = json.loads(row["result"])
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
        with self.store.transaction() as conn:
            row = conn.execute("SELECT payload FROM batches WHERE id = ? AND applied = 0", (batch_id,)).fetchone()
            if row is None:  # gone after a reset
                return
            payload = json.loads(row["payload"])
            result = _apply_contacts(conn, payload["contacts"], now_iso())
            conn.execute(
                "UPDATE batches SET applied = 1, payload = NULL, result = ? WHERE id = ?",
                (json.dumps(result), batch_id),
            )


def _apply_contacts(conn: sqlite3.Connection, contacts: list[dict[str, Any]], now: str) -> dict[str, Any]:
    success: list[str] = []
    failure: list[str] = []
    reasons: dict[str, str] = {}
    tag_ids: dict[str, int] = {}
    for contact in contacts:
        created_id, reason = _apply_contact(conn, contact, now, tag_ids)
        if reason is not None:
            failure.append(contact["email"])
            reasons[contact["email"]] = reason
        elif created_id is not None:
            success.append(str(created_id))
    return {"success": success, "failure": failure, "reasons": reasons}


def _apply_contact(
    conn: sqlite3.Connection, contact: dict[str, Any], now: str, tag_ids: dict[str, int]
) -> tuple[int | None, str | None]:
    """Apply one contact: (id if newly created, None) or (None, why it was not applied at all)."""
    email = normalize(contact["email"])
    if not is_valid(email):
        return None, "email is not a valid address"
    if conn.execute("SELECT 1 FROM exclusions WHERE email = ?", (email,)).fetchone():
        return None, "address is on the exclusion list"
    subscribe = [id_of(item["listid"]) for item in contact.get("subscribe", [])]
    unsubscribe = [id_of(item["listid"]) for item in contact.get("unsubscribe", [])]
    existing = conn.execute("SELECT id FROM contacts WHERE email = ?", (email,)).fetchone()
    if existing and subscribe:
        marks = ",".join("?" * len(subscribe))
        opted_out = conn.execute(
            f"SELECT list_id FROM memberships WHERE contact_id = ? AND status = 2 AND list_id IN ({marks})",
            (existing[0], *subscribe),
        ).fetchone()
        if opted_out:
            return None, f"contact unsubscribed from list {opted_out[0]}; bulk import does not re-subscribe"

    values = {column: text_of(contact[key]) for key, column in TEXT_FIELDS.items() if contact.get(key) is not None}
    if existing:
        contact_id, created = existing[0], False
        assignments = "".join(f"{column} = ?, " for column in values)
        conn.execute(f"UPDATE contacts SET {assignments}udate = ? WHERE id = ?", (*values.values(), now, contact_id))
    else:
        cursor = conn.execute(
            "INSERT INTO contacts (email, first_name, last_name, phone, cdate, udate) VALUES (?, ?, ?, ?, ?, ?)",
            (email, values.get("first_name", ""), values.get("last_name", ""), values.get("phone", ""), now, now),
        )
        contact_id, created = int(cursor.lastrowid or 0), True

    for list_id in subscribe:
        conn.execute(
            "INSERT INTO memberships (contact_id, list_id, status, sdate, udate) VALUES (?, ?, 1, ?, ?)"
            " ON CONFLICT (contact_id, list_id) DO UPDATE SET status = 1, unsubscribed_by = NULL,"
            " udate = excluded.udate WHERE status != 1",
            (contact_id, list_id, now, now),
        )
    for list_id in unsubscribe:
        conn.execute(
            "INSERT INTO memberships (contact_id, list_id, status, unsubscribed_by, sdate, udate)"
            " VALUES (?, ?, 2, 'api', ?, ?) ON CONFLICT (contact_id, list_id) DO UPDATE SET status = 2,"
            " unsubscribed_by = 'api', udate = excluded.udate WHERE status != 2",
            (contact_id, list_id, now, now),
        )
    for name in contact.get("tags", []):
        conn.execute(
            "INSERT OR IGNORE INTO contact_tags (contact_id, tag_id, cdate) VALUES (?, ?, ?)",
            (contact_id, _tag_id(conn, name.strip(), now, tag_ids), now),
        )
    for item in contact.get("fields", []):
        conn.execute(
            "INSERT INTO field_values (contact_id, field_id, value, cdate, udate) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (contact_id, field_id) DO UPDATE SET value = excluded.value, udate = excluded.udate",
            (contact_id, id_of(item["id"]), text_of(item["value"]), now, now),
        )
    return (contact_id if created else None), None


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
