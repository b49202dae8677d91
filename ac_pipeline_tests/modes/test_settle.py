"""`settle` on frames: what each mode sends, and the hash that keeps a list in step from being sent again (it
equals the read-back's hash of the values ActiveCampaign then holds)."""

from __future__ import annotations

import polars as pl

from ac_pipeline.audiences.config import parse_audiences
from ac_pipeline.audiences.modes import changes_for, settle
from ac_pipeline.readback.reader import with_hash

AUDIENCE = parse_audiences("""
audiences:
  - key: shop
    list: {name: Shop}
    condition: 'true'
    sync_mode: upsert
    fields:
      email: email
      first_name: first_name
      phone: {column: phone, mode: never_clear}
      custom: {City: {column: city, mode: fill}}
    tags: [t]
""").audiences[0]
S = pl.String


def _members(rows: list[tuple]) -> pl.DataFrame:
    frame = pl.DataFrame(
        rows, schema={"email": S, "first_name": S, "phone": S, "field:City": S}, orient="row"
    ).with_columns(last_name=pl.lit(None, dtype=S), status=pl.lit("member"), fields_hash=pl.lit("stale"))
    return frame


def _read_back(rows: list[tuple]) -> pl.DataFrame:
    frame = pl.DataFrame(rows, schema={"email": S, "first_name": S, "phone": S, "field:City": S}, orient="row")
    return with_hash(frame.with_columns(tags=pl.lit(["t"], dtype=pl.List(S))), AUDIENCE)


def _snapshot(emails: list[str], hashes: list[str | None] | None = None) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "email": emails,
            "fields_hash": hashes or [None] * len(emails),
            "contact_id": ["1"] * len(emails),
            "status": ["member"] * len(emails),
        },
        schema={"email": S, "fields_hash": S, "contact_id": S, "status": S},
    )


def test_what_each_mode_sends() -> None:
    members = _members(
        [
            ("typed@x.com", "Ann", "1", "Lyon"),  # AC has a city typed by hand: fill keeps it
            ("empty@x.com", "Bob", None, "Lyon"),  # AC's city is empty: filled; phone empty here: never cleared
            ("new@x.com", "Cy", "3", "Nice"),  # never seen: new, gets everything
            ("unread@x.com", "Di", "4", "Pau"),  # in the snapshot, not in the read-back: city unknown, left alone
        ]
    )
    read = _read_back([("typed@x.com", "Ann", "1", "By hand"), ("empty@x.com", "Bob", "555", None)])
    settled, kept = settle(members, AUDIENCE, _snapshot(["typed@x.com", "empty@x.com", "unread@x.com"]), read)
    sent = {row["email"]: (row["phone"], row["field:City"]) for row in settled.to_dicts()}
    assert sent == {
        "typed@x.com": ("1", None),
        "empty@x.com": (None, "Lyon"),
        "new@x.com": ("3", "Nice"),
        "unread@x.com": ("4", None),
    }
    assert kept == {"fill_kept": 2, "never_clear_kept": 1}
    # The hash is of what ActiveCampaign holds afterwards: for `typed`, its own city; for `empty`, its own phone.
    after = _read_back([("typed@x.com", "Ann", "1", "By hand"), ("empty@x.com", "Bob", "555", "Lyon")])
    hashes = dict(settled.select("email", "fields_hash").iter_rows())
    assert hashes["typed@x.com"] == after["fields_hash"][0] and hashes["empty@x.com"] == after["fields_hash"][1]


def test_in_step_means_no_change_and_upsert_removes_nobody() -> None:
    members = _members([("typed@x.com", "Ann", None, "Lyon")])
    read = _read_back([("typed@x.com", "Ann", "555", "By hand"), ("leaver@x.com", "Lee", "9", "Rome")])
    snapshot = _snapshot(["typed@x.com", "leaver@x.com"], list(read["fields_hash"]))
    moded = changes_for(members, snapshot, AUDIENCE, read)
    assert moded.changes.is_empty()  # the hash matches the read-back's: nothing to send, sync after sync
    assert moded.skipped["leavers_kept"] == 1 and moded.skipped["fill_kept"] == 1


def test_a_field_the_read_back_did_not_know_is_left_alone() -> None:
    members = _members([("seen@x.com", "Ann", "1", "Lyon")])
    read = _read_back([("seen@x.com", "Ann", "1", None)]).drop("field:City")
    settled, _ = settle(members, AUDIENCE, _snapshot(["seen@x.com"]), read)
    assert settled["field:City"][0] is None
