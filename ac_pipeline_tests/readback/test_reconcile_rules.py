"""The reconciliation's rules on small frames (no network): each kind of drift, the consent rules, and the hash a
read-back gives matching the members' hash for the same values, whatever the values are."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import duckdb
import polars as pl
import pytest

from ac_pipeline.audiences.config import parse_audiences
from ac_pipeline.audiences.members import field_column, select_sql
from ac_pipeline.readback.reader import RECORD_KEYS, frame_schema, with_hash
from ac_pipeline.readback.reconcile import ownership, reconcile
from ac_pipeline.state.schema import SNAPSHOT_COLUMNS

AUDIENCES = parse_audiences("""
source: {table: customers, id_column: id, updated_column: updated}
audiences:
  - key: rules
    list: {name: Rules}
    condition: "true"
    fields: {email: email, first_name: first, phone: phone, custom: {City: city}}
    tags: [b, a]
""")
AUDIENCE = AUDIENCES.audiences[0]
SYNCED = datetime(2026, 11, 1, 12, tzinfo=UTC)


def read_row(email: str, status: int = 1, city: str | None = "Oslo", **record: str | None) -> dict:
    return {
        "contact_id": str(abs(hash(email)) % 10**6),
        "email": email,
        "list_status": status,
        **{key: record.get(key) for key in RECORD_KEYS},
        "first_name": "Ada",
        "phone": "",
        field_column("City"): city,
        "tags": ["a", "b"],
        "contact_updated_at": None,
    }


def read_back(*rows: dict) -> pl.DataFrame:
    return with_hash(pl.DataFrame(list(rows), schema=frame_schema(AUDIENCE), orient="row"), AUDIENCE)


def snapshot(*rows: tuple[str, str, str | None, datetime | None]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {"email": e, "fields_hash": h, "contact_id": None, "status": s, "reason": None, "removed_at": at}
            for e, s, h, at in rows
        ],
        schema=SNAPSHOT_COLUMNS,
        orient="row",
    )


def kinds(outcome) -> dict[str, str]:
    return dict(outcome.drift.select("email", "kind").iter_rows())


def statuses(outcome) -> dict[str, str]:
    return dict(outcome.upserts.select("email", "status").iter_rows())


def test_each_kind_of_drift_and_what_the_snapshot_becomes() -> None:
    in_step = read_back(read_row("same@x.org"))
    h = in_step["fields_hash"][0]
    read = read_back(
        read_row("same@x.org"),
        read_row("edited@x.org", city="Hand"),
        read_row("quit@x.org", 2, campaign="3", message="3", udate="2026-11-02T00:00:00+00:00"),
        read_row("bounced@x.org", 3),
        read_row("stranger@x.org"),
        read_row("flying@x.org", 2, udate="2026-11-02T00:00:00+00:00"),
    )
    snap = snapshot(
        ("same@x.org", "member", h, None),
        ("edited@x.org", "member", h, None),
        ("quit@x.org", "member", h, None),
        ("bounced@x.org", "member", h, None),
        ("deleted@x.org", "member", h, None),
        ("flying@x.org", "member", h, None),
        ("gone_opted_out@x.org", "opted_out", None, None),
    )
    outcome = reconcile(read, snap, in_flight=["flying@x.org"])
    assert kinds(outcome) == {
        "edited@x.org": "edited",
        "quit@x.org": "opted_out",
        "bounced@x.org": "bounced",
        "stranger@x.org": "unmanaged",
        "deleted@x.org": "gone",
    }
    assert statuses(outcome) == {
        "edited@x.org": "member",
        "quit@x.org": "opted_out",
        "bounced@x.org": "opted_out",
        "same@x.org": "member",  # its contact id, learnt
    }
    assert outcome.forgotten.to_list() == ["deleted@x.org"]  # an opt-out gone from the list is remembered
    assert "campaign 3" in outcome.upserts.filter(pl.col("email") == "quit@x.org")["reason"][0]


@pytest.mark.parametrize(
    ("record", "unsubscribed_at", "ours"),
    [
        ({}, SYNCED, True),  # our own unsubscribe, as we saw it confirmed
        ({}, SYNCED + timedelta(seconds=1), True),  # within the clock's skew
        ({}, SYNCED + timedelta(days=3), False),  # unsubscribed again, later
        ({"campaign": "4", "message": "4"}, SYNCED, False),  # their own, through a campaign
        ({"unsubscribeAutomation": "9"}, SYNCED, False),
        ({"ip4Unsub": "2130706433"}, SYNCED, False),
    ],
)
def test_an_unsubscribe_is_ours_only_when_the_record_proves_it(
    record: dict, unsubscribed_at: datetime, ours: bool
) -> None:
    read = read_back(read_row("left@x.org", 2, udate=unsubscribed_at.isoformat(), **record))
    outcome = reconcile(read, snapshot(("left@x.org", "removed", None, SYNCED)))
    assert statuses(outcome) == ({} if ours else {"left@x.org": "opted_out"})
    # Against another list's snapshot nothing is proven: every unsubscribe is the person's.
    other = reconcile(read, snapshot(("left@x.org", "removed", None, SYNCED)), same_destination=False)
    assert statuses(other) == {"left@x.org": "opted_out"}


def test_adoption_and_ownership() -> None:
    read = read_back(read_row("ours@x.org"), read_row("theirs@x.org"), read_row("back@x.org"))
    snap = snapshot(("back@x.org", "opted_out", None, None))
    keep = ownership(read, snap, ["ours@x.org"], "keep")
    assert sorted(keep) == ["back@x.org", "ours@x.org"]
    outcome = reconcile(read, snap, adopt=keep)
    # Someone who opted out and is active again is never taken in: the sync leaves them alone.
    assert statuses(outcome) == {"ours@x.org": "member"} and outcome.adopted == 1
    assert sorted(ownership(read, snap, [], "remove")) == ["back@x.org", "ours@x.org", "theirs@x.org"]


VALUES = [None, "", " ", "O'Brien", 'say "hi"', "Zoë", "漢字", "a\u001fb", "a\u0000b", "1234.50", "|", "\\"]


@pytest.mark.parametrize("seed", range(5))
def test_a_read_back_hashes_like_the_members_it_came_from(seed: int) -> None:
    """What the sync sent, read back as ActiveCampaign holds it (NULL sent as ''), hashes as the members did."""
    rng = random.Random(seed)
    rows = [(i, f"p{i}@x.org", rng.choice(VALUES), rng.choice(VALUES), rng.choice(VALUES)) for i in range(40)]
    with duckdb.connect() as connection:
        connection.execute(
            "CREATE TABLE customers (id INT, updated INT, email VARCHAR, first VARCHAR, phone VARCHAR, city VARCHAR)"
        )
        connection.executemany("INSERT INTO customers VALUES (?, 0, ?, ?, ?, ?)", rows)
        members = connection.sql(select_sql(AUDIENCE, AUDIENCES.source)).pl()
    held = [
        {**read_row(email, city="" if city is None else city), "first_name": first or "", "phone": phone or ""}
        for _, email, first, phone, city in rows
    ]
    read = read_back(*held)
    assert members.get_column("fields_hash").to_list() == read.get_column("fields_hash").to_list()
    # A tag removed by hand reads as an edit.
    untagged = read_back({**held[0], "tags": ["a"]})
    assert untagged["fields_hash"][0] != members["fields_hash"][0]
