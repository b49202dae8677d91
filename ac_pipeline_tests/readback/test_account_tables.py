"""The account tables: writes replace only their own rows, the views say what they should, and a reader in
another process never sees half an audience. Real DuckDB files in a temporary folder."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

from ac_pipeline.readback.tables import SCHEMA_VERSION, AccountTables

READ_AT = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
CHANGED = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def members(*rows: tuple[str, str, str | None]) -> pl.DataFrame:
    """(email, status, unsubscribed_by) -> a list read as the reader hands it over."""
    return pl.DataFrame(
        {
            "contact_id": [str(i + 1) for i in range(len(rows))],
            "email": [email for email, _, _ in rows],
            "status": [status for _, status, _ in rows],
            "subscribed_at": [datetime(2026, 1, 1, tzinfo=UTC)] * len(rows),
            "status_changed_at": [None if status == "active" else CHANGED for _, status, _ in rows],
            "unsubscribed_by": [by for _, _, by in rows],
            "how": [None if by is None else f"by {by}" for _, _, by in rows],
            "fields_hash": ["ignored"] * len(rows),  # the reader's other columns are not stored
        },
        schema_overrides={"status_changed_at": pl.Datetime("us", "UTC"), "unsubscribed_by": pl.String},
    )


def query(path: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as connection:
        return connection.sql(sql).fetchall()


def test_writes_replace_only_their_audiences_rows(tmp_path: Path) -> None:
    tables = AccountTables(tmp_path / "activecampaign.duckdb")
    tables.write_list_members("vip", 7, "VIP customers", members(("a@x.com", "active", None)), READ_AT)
    tables.write_list_members(
        "lapsed", "8", "Lapsed buyers", members(("b@x.com", "active", None), ("c@x.com", "active", None)), READ_AT
    )
    tables.write_contact_tags("vip", pl.DataFrame({"email": ["a@x.com"], "contact_id": ["1"], "tag": ["VIP"]}))
    tables.write_contact_tags("lapsed", pl.DataFrame({"email": ["b@x.com"], "contact_id": ["1"], "tag": ["win-back"]}))

    # A second read of VIP replaces VIP's rows, and only those.
    again = members(("  D@X.com ", "active", None), ("e@x.com", "unsubscribed", "person"))
    assert tables.write_list_members("vip", 7, "VIP customers", again, READ_AT) == 2
    tables.write_contact_tags("vip", pl.DataFrame({"email": ["e@x.com"], "contact_id": ["2"], "tag": ["VIP"]}))

    path = tables.path
    assert query(path, "SELECT audience, list_id, list, email FROM list_members ORDER BY audience, email") == [
        ("lapsed", "8", "Lapsed buyers", "b@x.com"),
        ("lapsed", "8", "Lapsed buyers", "c@x.com"),
        ("vip", "7", "VIP customers", "d@x.com"),  # trimmed and lower-cased, as audience members are
        ("vip", "7", "VIP customers", "e@x.com"),
    ]
    assert query(path, "SELECT audience, email, tag FROM contact_tags ORDER BY audience") == [
        ("lapsed", "b@x.com", "win-back"),
        ("vip", "e@x.com", "VIP"),
    ]
    [(read_at, changed)] = query(path, "SELECT read_at, status_changed_at FROM list_members WHERE email = 'e@x.com'")
    assert (read_at, changed) == (READ_AT, CHANGED)
    assert "fields_hash" not in [row[0] for row in query(path, "DESCRIBE list_members")]
    # An empty read empties the audience (the list has nobody), nothing else.
    tables.write_list_members("vip", 7, "VIP customers", pl.DataFrame(), READ_AT)
    assert query(path, "SELECT DISTINCT audience FROM list_members") == [("lapsed",)]
    assert query(path, "SELECT max(version) FROM schema_version") == [(SCHEMA_VERSION,)]
    assert tables.schema_version() == SCHEMA_VERSION


def test_the_views_tell_opt_outs_from_the_syncs_own_removals(tmp_path: Path) -> None:
    tables = AccountTables(tmp_path / "activecampaign.duckdb")
    read = members(
        ("active@x.com", "active", None),
        ("person@x.com", "unsubscribed", "person"),
        ("ours@x.com", "unsubscribed", "sync"),
        ("unknown@x.com", "unsubscribed", None),  # no proof it was ours: theirs
        ("automation@x.com", "unsubscribed", "automation"),
        ("bounced@x.com", "bounced", "bounce"),
        ("pending@x.com", "unconfirmed", None),
    )
    tables.write_list_members("vip", 7, "VIP customers", read, READ_AT)
    opt_outs = query(
        tables.path, "SELECT email, list, list_id, audience, status, changed_at, how FROM opt_outs ORDER BY 1"
    )
    assert [row[0] for row in opt_outs] == ["automation@x.com", "bounced@x.com", "person@x.com", "unknown@x.com"]
    assert opt_outs[2] == ("person@x.com", "VIP customers", "7", "vip", "unsubscribed", CHANGED, "by person")
    unsubscribes = query(tables.path, "SELECT email, unsubscribed_by FROM unsubscribes ORDER BY 1")
    assert [row[0] for row in unsubscribes] == [
        "automation@x.com",
        "bounced@x.com",
        "ours@x.com",
        "person@x.com",
        "unknown@x.com",
    ]
    columns = ["email", "list", "list_id", "audience", "status", "changed_at", "how", "unsubscribed_by"]
    for view in ("opt_outs", "unsubscribes"):
        assert [row[0] for row in query(tables.path, f"DESCRIBE {view}")] == columns


def test_lists_and_tags_are_replaced_whole(tmp_path: Path) -> None:
    tables = AccountTables(tmp_path / "activecampaign.duckdb")
    lists = pl.DataFrame({"id": ["1", "2"], "name": ["VIP customers", "Lapsed buyers"], "stringid": ["vip", "lapsed"]})
    tables.write_lists(lists, READ_AT)
    tables.write_lists(lists.head(1).with_columns(created_at=pl.lit(datetime(2026, 1, 2))), READ_AT)  # naive: UTC
    assert query(tables.path, "SELECT id, name, stringid, created_at, read_at FROM lists") == [
        ("1", "VIP customers", "vip", datetime(2026, 1, 2, tzinfo=UTC), READ_AT)
    ]
    tags = pl.DataFrame({"id": [3], "name": ["VIP"], "tag_type": ["contact"], "description": [""]})
    assert tables.write_tags(tags) == 1
    assert query(tables.path, "SELECT id, name, tag_type, created_at FROM tags") == [("3", "VIP", "contact", None)]


def test_what_the_tables_cannot_hold_is_refused_by_name(tmp_path: Path) -> None:
    tables = AccountTables(tmp_path / "activecampaign.duckdb")
    with pytest.raises(ValueError, match=r"status must be one of .* got 'gone'"):
        tables.write_list_members("vip", 7, "VIP", members(("a@x.com", "gone", None)), READ_AT)
    with pytest.raises(ValueError, match=r"unsubscribed_by must be one of .* got 'us'"):
        tables.write_list_members("vip", 7, "VIP", members(("a@x.com", "unsubscribed", "us")), READ_AT)
    with pytest.raises(ValueError, match="need the column"):
        tables.write_list_members("vip", 7, "VIP", members(("a@x.com", "active", None)).drop("status"), READ_AT)


WRITER = """
import sys, time
from datetime import UTC, datetime
import polars as pl
from ac_pipeline.readback.tables import AccountTables

tables = AccountTables(sys.argv[1])
n = int(sys.argv[2])
frames = [
    pl.DataFrame({{"contact_id": [str(i) for i in range(n)], "email": [f"p{{i}}@x.com" for i in range(n)],
                  "status": "active", "how": version}})
    for version in ("first", "second")
]
tables.write_list_members("other", 1, "Other", frames[0].head(3), datetime.now(UTC))
print("ready", flush=True)
deadline, give_up = time.monotonic() + {seconds}, time.monotonic() + 30
writes = 0
# At least three replacements, however long a busy machine makes the reader hold the file (bounded).
while (time.monotonic() < deadline or writes < 3) and time.monotonic() < give_up:
    tables.write_list_members("big", 2, "Big", frames[writes % 2], datetime.now(UTC))
    writes += 1
    time.sleep(0.01)
print(writes, flush=True)
"""


def test_a_reader_in_another_process_never_sees_half_an_audience(tmp_path: Path) -> None:
    path = tmp_path / "activecampaign.duckdb"
    rows = 50_000
    writer = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(WRITER.format(seconds=2.5)), str(path), str(rows)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "ready"
        seen: list[tuple[int, int, int]] = []
        deadline = time.monotonic() + 40
        while writer.poll() is None and time.monotonic() < deadline:
            try:
                connection = duckdb.connect(str(path), read_only=True)
            except duckdb.IOException:  # the writer holds the file: try again
                time.sleep(0.002)
                continue
            with connection:
                [counts] = connection.sql(
                    "SELECT count(*) FILTER (audience = 'big'), count(DISTINCT how) FILTER (audience = 'big'), "
                    "count(*) FILTER (audience = 'other') FROM list_members"
                ).fetchall()
            seen.append(counts)
            time.sleep(0.02)  # leave the writer room to take the file
        writes = int(writer.communicate(timeout=30)[0].strip())
    finally:
        writer.kill()
    assert writer.returncode == 0
    assert writes >= 3, writes
    assert seen, "the reader never got the file"
    for big, versions, other in seen:
        assert big in (0, rows), seen
        assert versions == (1 if big else 0), seen
        assert other == 3
    assert any(big == rows for big, _, _ in seen), seen
