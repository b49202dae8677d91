"""The account tables: what the read-back brings home from ActiveCampaign, in a DuckDB file of its own.

The customer 360 is read-only and belongs to someone else, so the read-back writes here (`Paths.activecampaign`,
`AC_PIPELINE_ACTIVECAMPAIGN_DB`). The customer 360's owner can query and join this file, and audience SQL sees
it as `activecampaign.<table>` (the members asset attaches it read-only):

- `list_members`: per audience, every contact on its list as last read, with the list status and how that
  status came about (`unsubscribed_by`: person, automation, sync, user_or_unknown, bounce; `how`: a sentence).
- `opt_outs` (view): the unsubscribed and bounced members, except the sync's own removals, which are not
  opt-outs. `unsubscribes` (view): every unsubscribed or bounced member, the sync's own included.
- `contact_tags`: per audience, the tags of its list's contacts. `lists`, `tags`: the account's, as a whole.

Emails are stored trimmed and lower-cased, as the audience members are (`members.normalise_email`), so that
`lower(trim(email)) NOT IN (SELECT email FROM activecampaign.opt_outs)` matches.

Every write opens the file for that write only (DuckDB allows one writing process per file, and Dagster
runs steps in processes of their own), waits while another process holds it, and replaces its rows in one
transaction: a reader never sees half an audience.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl

from ac_pipeline.audiences.members import normalise_email
from ac_pipeline.duckdb_files import connect_waiting, first_line, stored_schema_version
from ac_pipeline.migrations import migrate

# How long a write waits for another process to let go of the file before giving up.

LIST_STATUSES = ("unconfirmed", "active", "unsubscribed", "bounced")
UNSUBSCRIBED_BY = ("person", "automation", "sync", "user_or_unknown", "bounce")

# Each migration takes the file from version N-1 to N. Append, never edit a released one.
MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE list_members (
            audience VARCHAR NOT NULL,
            list_id VARCHAR NOT NULL,
            list VARCHAR NOT NULL,
            contact_id VARCHAR,
            email VARCHAR,
            status VARCHAR NOT NULL,
            subscribed_at TIMESTAMPTZ,
            status_changed_at TIMESTAMPTZ,
            unsubscribed_by VARCHAR,
            how VARCHAR,
            read_at TIMESTAMPTZ NOT NULL
        )""",
        # A NULL unsubscribed_by is an opt-out: when the record does not prove an unsubscribe was the sync's,
        # it was the person's (DESIGN.md), so nobody is left out of an exclusion for want of a reason. No NULL
        # email: one would make `x NOT IN (SELECT email FROM opt_outs)` true for nobody, emptying the audience.
        """CREATE VIEW opt_outs AS
            SELECT email, list, list_id, audience, status, status_changed_at AS changed_at, how, unsubscribed_by
            FROM list_members
            WHERE status IN ('unsubscribed', 'bounced') AND unsubscribed_by IS DISTINCT FROM 'sync'
                AND email IS NOT NULL""",
        """CREATE VIEW unsubscribes AS
            SELECT email, list, list_id, audience, status, status_changed_at AS changed_at, how, unsubscribed_by
            FROM list_members
            WHERE status IN ('unsubscribed', 'bounced')""",
        """CREATE TABLE contact_tags (
            audience VARCHAR NOT NULL,
            email VARCHAR,
            contact_id VARCHAR,
            tag VARCHAR
        )""",
        """CREATE TABLE lists (
            id VARCHAR NOT NULL,
            name VARCHAR,
            stringid VARCHAR,
            created_at TIMESTAMPTZ,
            read_at TIMESTAMPTZ NOT NULL
        )""",
        """CREATE TABLE tags (
            id VARCHAR NOT NULL,
            name VARCHAR,
            tag_type VARCHAR,
            description VARCHAR,
            created_at TIMESTAMPTZ,
            read_at TIMESTAMPTZ NOT NULL
        )""",
    ],
}
SCHEMA_VERSION = max(MIGRATIONS)

_UTC = pl.Datetime("us", "UTC")
# The frames each write takes: column -> type. Columns not listed are ignored; listed ones that are missing
# are NULL, except the required ones.
MEMBER_COLUMNS: dict[str, pl.DataType] = {
    "contact_id": pl.String(),
    "email": pl.String(),
    "status": pl.String(),
    "subscribed_at": _UTC,
    "status_changed_at": _UTC,
    "unsubscribed_by": pl.String(),
    "how": pl.String(),
}
CONTACT_TAG_COLUMNS: dict[str, pl.DataType] = {"email": pl.String(), "contact_id": pl.String(), "tag": pl.String()}
LIST_COLUMNS: dict[str, pl.DataType] = {
    "id": pl.String(),
    "name": pl.String(),
    "stringid": pl.String(),
    "created_at": _UTC,
}
TAG_COLUMNS: dict[str, pl.DataType] = {
    "id": pl.String(),
    "name": pl.String(),
    "tag_type": pl.String(),
    "description": pl.String(),
    "created_at": _UTC,
}


class AccountTablesError(RuntimeError):
    """The account tables file cannot be used as it is; the message says what to do."""


def _utc(value: datetime | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _column(frame: pl.DataFrame, name: str, dtype: pl.DataType) -> pl.Expr:
    if name not in frame.columns:
        return pl.lit(None, dtype=dtype).alias(name)
    current = frame.schema[name]
    if isinstance(dtype, pl.Datetime) and isinstance(current, pl.Datetime):
        # A naive time is taken as UTC (ActiveCampaign's *_utc_timestamp fields are naive UTC).
        column = pl.col(name).cast(pl.Datetime("us", current.time_zone))
        if current.time_zone is None:
            return column.dt.replace_time_zone("UTC")
        return column.dt.convert_time_zone("UTC")
    return pl.col(name).cast(dtype)


def conform(
    frame: pl.DataFrame, columns: Mapping[str, pl.DataType], required: tuple[str, ...], what: str
) -> pl.DataFrame:
    """The frame with exactly `columns`, in order and typed; `required` must be there unless it is empty."""
    if frame.is_empty():
        return pl.DataFrame(schema=dict(columns))  # (selecting literals from no rows would make one row)
    missing = [name for name in required if name not in frame.columns]
    if missing:
        raise ValueError(f"{what} need the column(s) {', '.join(missing)}; got {', '.join(frame.columns) or 'none'}")
    try:
        conformed = frame.select([_column(frame, name, dtype) for name, dtype in columns.items()])
    except pl.exceptions.PolarsError as exc:
        raise ValueError(f"{what}: {str(exc).splitlines()[0]}; expected columns {dict(columns)}") from None
    if "email" in columns:
        conformed = conformed.with_columns(email=normalise_email(pl.col("email")))
    return conformed


def _check_values(frame: pl.DataFrame, column: str, allowed: tuple[str, ...], nullable: bool) -> None:
    values = frame.get_column(column)
    if not nullable and values.null_count():
        raise ValueError(f"list members: {column} must be one of {', '.join(allowed)}, got null")
    given = values.drop_nulls()
    bad = given.filter(~given.is_in(allowed))
    if bad.len():
        raise ValueError(f"list members: {column} must be one of {', '.join(allowed)}, got {bad[0]!r}")


class AccountTables:
    """The account tables file. Cheap to construct; every method opens and closes its own connection."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    # --- writes: each replaces its rows in one transaction ---------------------------------------------

    def write_list_members(
        self, audience: str, list_id: str | int, list_name: str, members: pl.DataFrame, read_at: datetime
    ) -> int:
        """Replace the audience's list members with `members`, as read at `read_at`.

        `members`: contact_id, email, status ('unconfirmed' | 'active' | 'unsubscribed' | 'bounced'), and
        subscribed_at, status_changed_at (Datetime, UTC; a naive one is taken as UTC), unsubscribed_by
        ('person' | 'automation' | 'sync' | 'user_or_unknown' | 'bounce'), how (a sentence), all nullable.
        Other columns are ignored. Returns the number of rows written.
        """
        rows = conform(members, MEMBER_COLUMNS, ("contact_id", "email", "status"), "list members")
        _check_values(rows, "status", LIST_STATUSES, nullable=False)
        _check_values(rows, "unsubscribed_by", UNSUBSCRIBED_BY, nullable=True)
        self._replace(
            "list_members",
            "audience = $audience",
            rows,
            "SELECT $audience, $list_id, $list, contact_id, email, status, subscribed_at, status_changed_at, "
            "unsubscribed_by, how, $read_at FROM incoming",
            {"audience": audience, "list_id": str(list_id), "list": list_name, "read_at": _utc(read_at)},
        )
        return rows.height

    def write_contact_tags(self, audience: str, frame: pl.DataFrame) -> int:
        """Replace the audience's contact tags with `frame`: email, contact_id, tag (the tag's name)."""
        rows = conform(frame, CONTACT_TAG_COLUMNS, ("email", "tag"), "contact tags")
        self._replace(
            "contact_tags",
            "audience = $audience",
            rows,
            "SELECT $audience, email, contact_id, tag FROM incoming",
            {"audience": audience},
        )
        return rows.height

    def write_lists(self, frame: pl.DataFrame, read_at: datetime | None = None) -> int:
        """Replace the account's lists with `frame`: id, name, stringid, created_at (UTC)."""
        rows = conform(frame, LIST_COLUMNS, ("id", "name"), "lists")
        self._replace(
            "lists",
            None,
            rows,
            "SELECT id, name, stringid, created_at, $read_at FROM incoming",
            {"read_at": _utc(read_at)},
        )
        return rows.height

    def write_tags(self, frame: pl.DataFrame, read_at: datetime | None = None) -> int:
        """Replace the account's tags with `frame`: id, name, tag_type, description, created_at (UTC)."""
        rows = conform(frame, TAG_COLUMNS, ("id", "name"), "tags")
        self._replace(
            "tags",
            None,
            rows,
            "SELECT id, name, tag_type, description, created_at, $read_at FROM incoming",
            {"read_at": _utc(read_at)},
        )
        return rows.height

    def schema_version(self) -> int:
        """The file's schema version (0 before the first write)."""
        if not self.path.exists():
            return 0
        with contextlib.closing(self._open(read_only=True)) as connection:
            return stored_schema_version(connection)

    def _replace(
        self, table: str, where: str | None, rows: pl.DataFrame, select: str, params: dict[str, object]
    ) -> None:
        """Delete the rows `where` says (all without it) and insert `select` over `rows`, as one transaction."""
        # Only the parameters a statement names may be bound to it.
        delete_params = {k: v for k, v in params.items() if where and f"${k}" in where}
        insert_params = {k: v for k, v in params.items() if f"${k}" in select}
        with self._connect() as connection:
            connection.register("incoming", rows)
            connection.execute("BEGIN TRANSACTION")
            try:
                connection.execute(f"DELETE FROM {table}" + (f" WHERE {where}" if where else ""), delete_params)
                connection.execute(f"INSERT INTO {table} {select}", insert_params)
                connection.execute("COMMIT")
            except Exception:
                connection.execute("ROLLBACK")
                raise
            finally:
                connection.unregister("incoming")

    # --- the file ------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived writing connection on a migrated file. Never hold one across network calls."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = self._open(read_only=False)
        try:
            connection.execute("SET enable_progress_bar = false")  # no bars on a step's stderr
            version = stored_schema_version(connection)
            if version > SCHEMA_VERSION:
                raise AccountTablesError(
                    f"{self.path} has schema version {version}, newer than this ac-pipeline understands "
                    f"({SCHEMA_VERSION}); upgrade ac-pipeline, or point AC_PIPELINE_ACTIVECAMPAIGN_DB at another file"
                )
            migrate(connection, version, MIGRATIONS)
            yield connection
        finally:
            connection.close()

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        return connect_waiting(self.path, read_only, unreadable=self._unreadable, locked=AccountTablesError)

    def _unreadable(self, exc: Exception) -> AccountTablesError:
        return AccountTablesError(
            f"the ActiveCampaign account tables {self.path} cannot be opened ({first_line(exc)}); if the file is "
            "damaged, move it aside: the next read-back writes it anew"
        )
