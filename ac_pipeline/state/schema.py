"""The sync state's tables, and the migrations that build them.

Each migration takes the database from version N-1 to N. Append, never edit a released one: a state
file written by an older ac-pipeline is migrated forward when it is first opened. The same migrations build
the DuckDB file and the Postgres schema, so the SQL is the dialect both speak (`DOUBLE PRECISION`, which
DuckDB reads as the `DOUBLE` version 1 first said).
"""

from __future__ import annotations

import polars as pl

MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE snapshot (
            audience VARCHAR NOT NULL,
            email VARCHAR NOT NULL,
            fields_hash VARCHAR,
            contact_id VARCHAR,
            status VARCHAR NOT NULL CHECK (status IN ('member', 'removed', 'opted_out', 'rejected')),
            reason VARCHAR,
            run_id VARCHAR,
            updated_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (audience, email)
        )""",
        """CREATE TABLE ledger (
            run_id VARCHAR NOT NULL,
            audience VARCHAR NOT NULL,
            email VARCHAR NOT NULL,
            op VARCHAR NOT NULL,
            batch VARCHAR,
            status VARCHAR NOT NULL,
            reason VARCHAR,
            recorded_at TIMESTAMPTZ NOT NULL
        )""",
        """CREATE TABLE runs (
            run_id VARCHAR NOT NULL,
            audience VARCHAR NOT NULL,
            started_at TIMESTAMPTZ NOT NULL,
            finished_at TIMESTAMPTZ,
            status VARCHAR NOT NULL,
            dry_run BOOLEAN NOT NULL DEFAULT false,
            adds BIGINT, updates BIGINT, removals BIGINT, readds BIGINT,
            confirmed BIGINT, failed BIGINT, opted_out BIGINT, skipped BIGINT,
            requests BIGINT, seconds DOUBLE PRECISION,
            PRIMARY KEY (run_id, audience)
        )""",
    ],
    2: [
        # When ActiveCampaign recorded an unsubscribe the sync made (its own `udate` when the answer gave
        # it, else when the sync saw the removal confirmed). A re-add is allowed only when the list's
        # record still shows that same unsubscribe: nobody is re-subscribed who unsubscribed since.
        "ALTER TABLE snapshot ADD COLUMN removed_at TIMESTAMPTZ",
        # Intent journal: what a push is about to send, written before the batch goes out and cleared
        # when its outcome is recorded. After a crash it tells our unsubscribes from the person's own.
        """CREATE TABLE journal (
            audience VARCHAR NOT NULL,
            email VARCHAR NOT NULL,
            op VARCHAR NOT NULL,
            run_id VARCHAR NOT NULL,
            intended_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (audience, email)
        )""",
        # Which account and list each audience's snapshot describes. A snapshot means nothing against
        # another account or a recreated list, so the push refuses to send a diff against it.
        """CREATE TABLE destination (
            audience VARCHAR PRIMARY KEY,
            account VARCHAR NOT NULL,
            list_id VARCHAR NOT NULL,
            recorded_at TIMESTAMPTZ NOT NULL
        )""",
    ],
    3: [
        # The last read-back of each audience's list (readback/): one row per contact on the list, as
        # ActiveCampaign holds it. An incremental read merges what changed since into it. No primary key: a
        # full read replaces an audience's rows, and DuckDB deletes a million indexed rows five times slower.
        """CREATE TABLE list_members (
            audience VARCHAR NOT NULL,
            contact_id VARCHAR NOT NULL,
            email VARCHAR NOT NULL,
            list_status SMALLINT NOT NULL,
            fields_hash VARCHAR,
            -- the contactLists record's dates and unsubscribe fields, the mapped values and the tags, as JSON:
            -- what they are depends on the audience
            record VARCHAR NOT NULL,
            "values" VARCHAR NOT NULL,
            tags VARCHAR NOT NULL,
            contact_updated_at VARCHAR
        )""",
        # Which list that read describes, the ids it resolved, and the server's clock when it began (the
        # next incremental read asks for what changed since).
        """CREATE TABLE list_reads (
            audience VARCHAR PRIMARY KEY,
            account VARCHAR NOT NULL,
            list_id VARCHAR NOT NULL,
            field_ids VARCHAR NOT NULL,
            tag_ids VARCHAR NOT NULL,
            began_at TIMESTAMPTZ NOT NULL,
            full_at TIMESTAMPTZ NOT NULL,
            members BIGINT NOT NULL
        )""",
    ],
    4: [
        # The customer 360's stable id of each contact (source.id_column): a customer whose email changes is
        # the same contact, and the sync changes the contact's email instead of removing one and adding another.
        "ALTER TABLE snapshot ADD COLUMN customer_id VARCHAR",
        # Treatment and control groups: which group each audience member was assigned, kept while they stay in
        # the audience (assignment is sticky), and queryable for measuring lift. Control members are recorded
        # here and never sent.
        """CREATE TABLE audience_groups (
            audience VARCHAR NOT NULL,
            customer_id VARCHAR NOT NULL,
            email VARCHAR NOT NULL,
            group_name VARCHAR NOT NULL,
            assigned_at TIMESTAMPTZ NOT NULL,
            run_id VARCHAR,
            PRIMARY KEY (audience, customer_id)
        )""",
    ],
}
SCHEMA_VERSION = max(MIGRATIONS)

SNAPSHOT_STATUSES = ("member", "removed", "opted_out", "rejected")
SNAPSHOT_COLUMNS: dict[str, pl.DataType] = {
    "email": pl.String(),
    "fields_hash": pl.String(),
    "contact_id": pl.String(),
    "status": pl.String(),
    "reason": pl.String(),
    "removed_at": pl.Datetime("us", "UTC"),
    "customer_id": pl.String(),
}
LEDGER_COLUMNS: dict[str, pl.DataType] = {
    "email": pl.String(),
    "op": pl.String(),
    "batch": pl.String(),
    "status": pl.String(),
    "reason": pl.String(),
}
JOURNAL_COLUMNS: dict[str, pl.DataType] = {"email": pl.String(), "op": pl.String()}
# What the store's queries return, in both backends alike.
LEDGER_ROWS: dict[str, pl.DataType] = {
    "run_id": pl.String(),
    **LEDGER_COLUMNS,
    "recorded_at": pl.Datetime("us", "UTC"),
}
JOURNAL_ROWS: dict[str, pl.DataType] = {
    "email": pl.String(),
    "op": pl.String(),
    "run_id": pl.String(),
    "intended_at": pl.Datetime("us", "UTC"),
}
RUNS_COLUMNS: dict[str, pl.DataType] = {
    "run_id": pl.String(),
    "audience": pl.String(),
    "started_at": pl.Datetime("us", "UTC"),
    "finished_at": pl.Datetime("us", "UTC"),
    "status": pl.String(),
    "dry_run": pl.Boolean(),
    **{
        name: pl.Int64()
        for name in ("adds", "updates", "removals", "readds", "confirmed", "failed", "opted_out", "skipped", "requests")
    },
    "seconds": pl.Float64(),
}
# The runs columns finish_run does not take as counts.
RUNS_COLUMNS_NOT_COUNTS = ("run_id", "audience", "started_at", "finished_at", "status", "dry_run")
