"""The read-back's part of the sync state: the last read of each audience's list, and the commit that
applies a reconciliation.

The last read is kept so that the next one can be incremental: only what ActiveCampaign updated since is read
and merged in. It lives in the sync state, not only in the asset value, because it must move together with
the snapshot corrections it justifies: `commit` writes the read, the snapshot rows, the ledger and (after a
resync) the destination in one transaction. A crash anywhere leaves the last read and the snapshot as they
were, and the next read starts from there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl

from ac_pipeline.audiences.config import Audience
from ac_pipeline.readback.reader import RECORD_KEYS, frame_schema, value_columns
from ac_pipeline.state.backend import Session
from ac_pipeline.state.store import SyncState, append_ledger, upsert_snapshot, write_destination

# list_members as stored: the record, values and tags JSON-encoded (their shape depends on the audience).
STORED_MEMBERS: dict[str, pl.DataType] = {
    "contact_id": pl.String(),
    "email": pl.String(),
    "list_status": pl.Int16(),
    "fields_hash": pl.String(),
    "record": pl.String(),
    "values": pl.String(),
    "tags": pl.String(),
    "contact_updated_at": pl.String(),
}


@dataclass(frozen=True)
class ListRead:
    """Which list a read describes, the ids it resolved, and when it began by the server's clock."""

    account: str
    list_id: str
    field_ids: dict[str, str]
    tag_ids: dict[str, str]
    began_at: datetime
    full_at: datetime
    members: int


def _encode(frame: pl.DataFrame, audience: Audience) -> pl.DataFrame:
    values = value_columns(audience)
    return frame.select(
        "contact_id",
        "email",
        "list_status",
        "fields_hash",
        record=pl.struct(list(RECORD_KEYS)).struct.json_encode(),
        values=pl.struct(values).struct.json_encode() if values else pl.lit("{}"),
        tags=pl.col("tags").list.join("\u001f"),
        contact_updated_at="contact_updated_at",
    )


def _decode(frame: pl.DataFrame, audience: Audience) -> pl.DataFrame:
    schema = frame_schema(audience)
    values = value_columns(audience)
    decoded = frame.with_columns(
        pl.col("record").str.json_decode(pl.Struct({key: pl.String for key in RECORD_KEYS})),
        pl.col("values").str.json_decode(pl.Struct({name: pl.String for name in values})) if values else pl.lit(None),
        pl.when(pl.col("tags") == "")
        .then(pl.lit([], dtype=pl.List(pl.String)))
        .otherwise(pl.col("tags").str.split("\u001f"))
        .alias("tags"),
    )
    unnested = decoded.unnest("record")
    unnested = unnested.unnest("values") if values else unnested.drop("values")
    return unnested.select(*[pl.col(name).cast(dtype) for name, dtype in schema.items()], pl.col("fields_hash"))


class ReadBackState:
    """The read-back tables of one SyncState file."""

    def __init__(self, state: SyncState):
        self.state = state

    def last_read(self, audience: str) -> ListRead | None:
        with self.state.connect(read_only=True) as session:
            rows = session.rows(
                "SELECT account, list_id, field_ids, tag_ids, began_at, full_at, members FROM list_reads "
                "WHERE audience = $audience",
                {"audience": audience},
            )
        if not rows:
            return None
        account, list_id, field_ids, tag_ids, began_at, full_at, members = rows[0]
        return ListRead(account, list_id, json.loads(field_ids), json.loads(tag_ids), began_at, full_at, members)

    def members(self, audience: Audience) -> pl.DataFrame:
        """The last read of the audience's list (reader.frame_schema plus fields_hash)."""
        with self.state.connect(read_only=True) as session:
            frame = session.frame(
                'SELECT contact_id, email, list_status, fields_hash, record, "values", tags, contact_updated_at '
                "FROM list_members WHERE audience = $audience ORDER BY contact_id",
                STORED_MEMBERS,
                {"audience": audience.key},
            )
        return _decode(frame, audience)

    def confirmed_sends(self, audience: str) -> pl.Series:
        """Emails the ledger shows the sync ever added, re-added or updated with success."""
        with self.state.connect(read_only=True) as session:
            return session.frame(
                "SELECT DISTINCT email FROM ledger WHERE audience = $audience AND status = 'confirmed' "
                "AND op IN ('add', 'readd', 'update')",
                {"email": pl.String()},
                {"audience": audience},
            ).get_column("email")

    def commit(
        self,
        audience: Audience,
        run_id: str,
        read: ListRead | None,
        *,
        members: pl.DataFrame,
        full: bool,
        upserts: pl.DataFrame,
        forgotten: pl.Series,
        ledger: pl.DataFrame,
        record_destination: bool,
    ) -> None:
        """Apply one reconciliation, in one transaction.

        `read`: the list read, or None when it does not exist (the last read is dropped). `members`: the whole
        list after a full read (it replaces the last read), or the contacts read since the last one (merged
        in). `upserts` and `forgotten` correct the snapshot; `ledger` says why. `record_destination`: the
        snapshot now describes `read`'s list (after a resync)."""
        key, now = audience.key, datetime.now(UTC)
        encoded = _encode(members, audience)
        params = {"audience": key}
        with self.state.connect() as session, session.transaction():
            session.stage("read_rows", encoded)
            if full or read is None:
                session.execute("DELETE FROM list_members WHERE audience = $audience", params)
            else:  # merged in: the contacts read replace their earlier rows
                session.execute(
                    "DELETE FROM list_members WHERE audience = $audience "
                    "AND contact_id IN (SELECT contact_id FROM read_rows)",
                    params,
                )
            if read is None:
                session.execute("DELETE FROM list_reads WHERE audience = $audience", params)
            else:
                self._write_read(session, key, read)
            if upserts.height:
                upsert_snapshot(session, key, run_id, upserts, now)
            if forgotten.len():
                session.stage("forgotten_rows", forgotten.to_frame("email").cast(pl.String))
                session.execute(
                    "DELETE FROM snapshot WHERE audience = $audience AND email IN (SELECT email FROM forgotten_rows)",
                    params,
                )
            if ledger.height:
                append_ledger(session, key, run_id, ledger, now)
            if record_destination and read is not None:
                write_destination(session, key, read.account, read.list_id, now)

    @staticmethod
    def _write_read(session: Session, key: str, read: ListRead) -> None:
        session.execute(
            """INSERT INTO list_members
               SELECT $audience, contact_id, email, list_status, fields_hash, record, "values", tags,
                      contact_updated_at FROM read_rows""",
            {"audience": key},
        )
        session.execute(
            """INSERT INTO list_reads VALUES ($audience, $account, $list_id, $field_ids, $tag_ids,
               $began_at, $full_at, (SELECT count(*) FROM list_members WHERE audience = $audience))
               ON CONFLICT (audience) DO UPDATE SET account = excluded.account, list_id = excluded.list_id,
                   field_ids = excluded.field_ids, tag_ids = excluded.tag_ids, began_at = excluded.began_at,
                   full_at = excluded.full_at, members = excluded.members""",
            {
                "audience": key,
                "account": read.account,
                "list_id": read.list_id,
                "field_ids": json.dumps(read.field_ids),
                "tag_ids": json.dumps(read.tag_ids),
                "began_at": read.began_at,
                "full_at": read.full_at,
            },
        )
