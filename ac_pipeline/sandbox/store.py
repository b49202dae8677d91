"""The sandbox's account state: one SQLite database (a file, or memory only), behind one lock.

SQLite because the API needs indexed queries (contact by email, list members by status in id order for
`orders[id]` + `id_greater` paging, counts for `meta.total`), because a bulk import must land atomically (one
transaction per batch), and because a file in WAL mode survives a restart with no journal code of our own.
All access goes through one connection and one re-entrant lock: the event loop and the import worker are the
only users, each statement takes microseconds, and a single writer is what SQLite does best anyway.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from ac_pipeline.sandbox.provenance import MEMBERSHIP_UPSERT, Unsubscribe, membership_params
from ac_pipeline.sandbox.readcache import ReadCache

Row = sqlite3.Row

SCHEMA = """
CREATE TABLE IF NOT EXISTS contacts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT NOT NULL UNIQUE,
    first_name TEXT NOT NULL DEFAULT '',
    last_name TEXT NOT NULL DEFAULT '',
    phone TEXT NOT NULL DEFAULT '',
    cdate TEXT NOT NULL,
    udate TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS lists (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    stringid TEXT NOT NULL,
    sender_url TEXT NOT NULL,
    sender_reminder TEXT NOT NULL,
    cdate TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS user_groups (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL,
    descript TEXT NOT NULL DEFAULT '',
    cdate TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS list_groups (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    list_id INTEGER NOT NULL,
    group_id INTEGER NOT NULL,
    UNIQUE (list_id, group_id)
);
CREATE TABLE IF NOT EXISTS memberships (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    contact_id INTEGER NOT NULL,
    list_id INTEGER NOT NULL,
    status INTEGER NOT NULL,
    unsubscribed_by TEXT,
    sdate TEXT NOT NULL,
    udate TEXT NOT NULL,
    unsubreason TEXT DEFAULT '',
    campaign_id INTEGER,
    message_id INTEGER,
    ip4_unsub INTEGER NOT NULL DEFAULT 0,
    automation_id INTEGER,
    sourceid INTEGER NOT NULL DEFAULT 0,
    UNIQUE (contact_id, list_id)
);
CREATE INDEX IF NOT EXISTS memberships_by_list ON memberships (list_id, status, contact_id);
CREATE TABLE IF NOT EXISTS tags (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tag TEXT NOT NULL,
    tag_type TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    cdate TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tags_by_name ON tags (tag COLLATE NOCASE);
CREATE TABLE IF NOT EXISTS contact_tags (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    contact_id INTEGER NOT NULL,
    tag_id INTEGER NOT NULL,
    cdate TEXT NOT NULL,
    UNIQUE (contact_id, tag_id)
);
CREATE TABLE IF NOT EXISTS fields (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL,
    type TEXT NOT NULL,
    perstag TEXT NOT NULL,
    cdate TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS field_values (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    contact_id INTEGER NOT NULL,
    field_id INTEGER NOT NULL,
    value TEXT NOT NULL,
    cdate TEXT NOT NULL,
    udate TEXT NOT NULL,
    UNIQUE (contact_id, field_id)
);
CREATE TABLE IF NOT EXISTS exclusions (email TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS account (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY,
    submitted REAL NOT NULL,
    due REAL NOT NULL,
    contacts INTEGER NOT NULL,
    payload BLOB,
    applied INTEGER NOT NULL DEFAULT 0,
    result TEXT
);
"""

TABLES = (
    "contacts",
    "lists",
    "user_groups",
    "list_groups",
    "memberships",
    "tags",
    "contact_tags",
    "fields",
    "field_values",
    "exclusions",
    "batches",
    "account",
)
# Membership columns added after the first release: a state file written before them gets them on open.
ADDED_MEMBERSHIP_COLUMNS = {
    "unsubreason": "TEXT DEFAULT ''",
    "campaign_id": "INTEGER",
    "message_id": "INTEGER",
    "ip4_unsub": "INTEGER NOT NULL DEFAULT 0",
    "automation_id": "INTEGER",
    "sourceid": "INTEGER NOT NULL DEFAULT 0",
}
# Contact columns added later: how the contact bounced (shown as bounced_hard, bounced_soft, bounced_date).
ADDED_CONTACT_COLUMNS = {
    "bounced_hard": "INTEGER NOT NULL DEFAULT 0",
    "bounced_soft": "INTEGER NOT NULL DEFAULT 0",
    "bounced_date": "TEXT",
}
# What a contact owns that a list sync reads back with it. Writing or removing one of these moves the contact's
# udate, so that an incremental read (filters[updated_after]) finds the contact (docs/sandbox.md).
CONTACT_RECORDS = ("memberships", "contact_tags", "field_values")
TOUCH_CONTACT = "UPDATE contacts SET udate = ? WHERE id = ?"


def now_iso() -> str:
    """The current local time the way ActiveCampaign writes dates: 2018-09-28T13:50:41-05:00."""
    return datetime.now().astimezone().isoformat(timespec="seconds")


class DuplicateEmail(Exception):
    """Another contact already has this email address."""


class Store:
    """All account data. `path=None` keeps it in memory; a path keeps it in a WAL-mode SQLite file."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.lock = threading.RLock()
        # One connection shared by the event loop thread and the import worker, serialised by self.lock.
        self.conn = sqlite3.connect(path or ":memory:", check_same_thread=False, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        if path:
            # WAL + NORMAL: commits survive a process crash; only an OS crash may lose the last ones.
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(SCHEMA)
        self._migrate()
        self._seed()
        self.reads = ReadCache(self.conn)  # counts for `meta.total`, kept while the data is unchanged

    def _migrate(self) -> None:
        for table, added in (("memberships", ADDED_MEMBERSHIP_COLUMNS), ("contacts", ADDED_CONTACT_COLUMNS)):
            present = {row["name"] for row in self.all(f"PRAGMA table_info({table})")}
            for column, declaration in added.items():
                if column not in present:
                    self.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")

    def _seed(self) -> None:
        # The account's own id: made once when the state is created, kept in it, so a restart on the same file
        # is the same account and a reset (or a fresh in-memory sandbox) is another one.
        self.execute("INSERT OR IGNORE INTO account (key, value) VALUES ('id', ?)", (uuid.uuid4().hex,))
        # Every account has the admin user group.
        if self.one("SELECT 1 FROM user_groups WHERE id = 1") is None:
            self.execute(
                "INSERT INTO user_groups (id, title, descript, cdate) VALUES (1, 'Admin', ?, ?)",
                ("This is a group for admin users (people that can manage content)", now_iso()),
            )

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    def account_id(self) -> str:
        row = self.one("SELECT value FROM account WHERE key = 'id'")
        assert row is not None  # written by _seed
        return str(row[0])

    def reset(self) -> None:
        """Empty every table (ids start again from 1), re-create the admin group, and become a new account (a new
        account id)."""
        with self.transaction() as conn:
            for table in TABLES:
                conn.execute(f"DELETE FROM {table}")
            conn.execute("DELETE FROM sqlite_sequence")
        self._seed()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Hold the lock and run the block as one transaction: all of it lands, or none."""
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        with self.lock:
            return self.conn.execute(sql, params)

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        with self.lock:
            row: Row | None = self.conn.execute(sql, params).fetchone()
            return row

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self.lock:
            return self.conn.execute(sql, params).fetchall()

    def page(self, sql: str, params: Sequence[Any], limit: int, offset: int) -> tuple[list[Row], int]:
        """One page of a query's rows and the full count, read under one lock so they agree."""
        with self.lock:
            rows = self.all(f"{sql} LIMIT ? OFFSET ?", (*params, limit, offset))
            return rows, self.reads.count(sql, params)

    # Contacts ---------------------------------------------------------------------------------------

    def contact(self, contact_id: int) -> Row | None:
        return self.one("SELECT * FROM contacts WHERE id = ?", (contact_id,))

    def contact_by_email(self, email: str) -> Row | None:
        return self.one("SELECT * FROM contacts WHERE email = ?", (email,))

    def create_contact(self, email: str, values: dict[str, str]) -> Row:
        now = now_iso()
        with self.lock:
            try:
                cursor = self.conn.execute(
                    "INSERT INTO contacts (email, first_name, last_name, phone, cdate, udate)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        email,
                        values.get("first_name", ""),
                        values.get("last_name", ""),
                        values.get("phone", ""),
                        now,
                        now,
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise DuplicateEmail(email) from exc
            row = self.contact(int(cursor.lastrowid or 0))
        assert row is not None
        return row

    def update_contact(self, contact_id: int, values: dict[str, str]) -> Row | None:
        """Set the given columns (email, first_name, last_name, phone); None if there is no such contact."""
        with self.lock:
            if values:
                assignments = ", ".join(f"{column} = ?" for column in values)
                try:
                    self.conn.execute(
                        f"UPDATE contacts SET {assignments}, udate = ? WHERE id = ?",
                        (*values.values(), now_iso(), contact_id),
                    )
                except sqlite3.IntegrityError as exc:
                    raise DuplicateEmail(values.get("email", "")) from exc
            return self.contact(contact_id)

    def delete_contact(self, contact_id: int) -> bool:
        with self.transaction() as conn:
            if conn.execute("DELETE FROM contacts WHERE id = ?", (contact_id,)).rowcount == 0:
                return False
            for table in ("memberships", "contact_tags", "field_values"):
                conn.execute(f"DELETE FROM {table} WHERE contact_id = ?", (contact_id,))
            return True

    def delete_with(self, table: str, item_id: int, dependents: Sequence[tuple[str, str]] = ()) -> bool:
        """Delete one row and, in the same transaction, the rows of `dependents` ((table, column) pairs) that
        refer to it: a list's memberships, a tag's contactTags, a field's values. False if there was no row."""
        now = now_iso()
        owned = [(table, "id")] if table in CONTACT_RECORDS else []
        owned += [(dependent, column) for dependent, column in dependents if dependent in CONTACT_RECORDS]
        with self.transaction() as conn:
            # Before the delete, while the rows still say whose they were; one statement however many contacts.
            for records, column in owned:
                conn.execute(
                    f"UPDATE contacts SET udate = ? WHERE id IN (SELECT contact_id FROM {records} WHERE {column} = ?)",
                    (now, item_id),
                )
            if conn.execute(f"DELETE FROM {table} WHERE id = ?", (item_id,)).rowcount == 0:
                return False
            for dependent, column in dependents:
                conn.execute(f"DELETE FROM {dependent} WHERE {column} = ?", (item_id,))
            return True

    def rows_of_contacts(self, table: str, contact_ids: Sequence[int]) -> list[Row]:
        """Every row of `table` (contact_tags, field_values) for these contacts, in id order."""
        marks = ",".join("?" * len(contact_ids))
        return self.all(f"SELECT * FROM {table} WHERE contact_id IN ({marks}) ORDER BY id", contact_ids)

    # Lists, memberships, groups -------------------------------------------------------------------

    def list_row(self, list_id: int) -> Row | None:
        return self.one("SELECT * FROM lists WHERE id = ?", (list_id,))

    def find_list(self, id_or_name: str) -> Row | None:
        """A list by id (digits) or else by exact name, ignoring case."""
        if id_or_name.isdigit():
            row = self.list_row(int(id_or_name))
            if row is not None:
                return row
        return self.one("SELECT * FROM lists WHERE name = ? COLLATE NOCASE ORDER BY id", (id_or_name,))

    def list_groups_of(self, list_id: int) -> list[Row]:
        return self.all(
            "SELECT g.id, g.title FROM list_groups lg JOIN user_groups g ON g.id = lg.group_id"
            " WHERE lg.list_id = ? ORDER BY g.id",
            (list_id,),
        )

    def membership(self, contact_id: int, list_id: int) -> Row | None:
        return self.one("SELECT * FROM memberships WHERE contact_id = ? AND list_id = ?", (contact_id, list_id))

    def set_membership(
        self, contact_id: int, list_id: int, status: int, unsubscribe: Unsubscribe | None, sourceid: int = 0
    ) -> Row:
        """Set a contact's status on a list; for status 2, `unsubscribe` records who did it and how."""
        now = now_iso()
        params = membership_params(contact_id, list_id, status, unsubscribe, now, sourceid)
        with self.lock:
            if self.conn.execute(MEMBERSHIP_UPSERT, params).rowcount:  # 0: a repeated unsubscribe, left as it was
                self.conn.execute(TOUCH_CONTACT, (now, contact_id))
            row = self.membership(contact_id, list_id)
        assert row is not None
        return row

    def memberships_of(self, contact_ids: Sequence[int]) -> list[Row]:
        """Every membership of these contacts, in id order."""
        marks = ",".join("?" * len(contact_ids))
        return self.all(f"SELECT * FROM memberships WHERE contact_id IN ({marks}) ORDER BY id", contact_ids)

    def member_emails(self, list_id: int, status: int) -> list[str]:
        rows = self.all(
            "SELECT c.email FROM memberships m JOIN contacts c ON c.id = m.contact_id"
            " WHERE m.list_id = ? AND m.status = ? ORDER BY c.id",
            (list_id, status),
        )
        return [row[0] for row in rows]

    # Exclusions -------------------------------------------------------------------------------------

    def exclude(self, emails: Sequence[str]) -> None:
        with self.transaction() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO exclusions (email) VALUES (?)", [(e.strip().lower(),) for e in emails]
            )

    def exclusions(self) -> list[str]:
        return [row[0] for row in self.all("SELECT email FROM exclusions ORDER BY email")]

    # Custom field values ----------------------------------------------------------------------------

    def set_field_value(self, contact_id: int, field_id: int, value: str) -> Row:
        now = now_iso()
        with self.lock:
            self.conn.execute(
                "INSERT INTO field_values (contact_id, field_id, value, cdate, udate) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (contact_id, field_id) DO UPDATE SET value = excluded.value, udate = excluded.udate",
                (contact_id, field_id, value, now, now),
            )
            self.conn.execute(TOUCH_CONTACT, (now, contact_id))
            row = self.one("SELECT * FROM field_values WHERE contact_id = ? AND field_id = ?", (contact_id, field_id))
        assert row is not None
        return row

    def field_values_of(self, contact_id: int) -> list[Row]:
        return self.all("SELECT * FROM field_values WHERE contact_id = ? ORDER BY id", (contact_id,))
