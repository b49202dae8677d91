"""The diff: applying the changes to the snapshot gives the members (property-based), with the
special cases of people the pipeline removed and people who opted out."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ac_pipeline.audiences.changes import apply, counts, diff, skipped_opt_outs

EMAILS = [f"p{i}@example.com" for i in range(40)]
HASHES = ["h1", "h2", "h3"]


@st.composite
def members_and_snapshot(draw):
    member_emails = draw(st.lists(st.sampled_from(EMAILS), unique=True, max_size=30))
    members = pl.DataFrame(
        {"email": member_emails, "fields_hash": [draw(st.sampled_from(HASHES)) for _ in member_emails]},
        schema={"email": pl.String, "fields_hash": pl.String},
    ).with_columns(first_name=pl.col("email").str.to_uppercase())
    snapshot_emails = draw(st.lists(st.sampled_from(EMAILS), unique=True, max_size=30))
    snapshot = pl.DataFrame(
        {
            "email": snapshot_emails,
            "fields_hash": [draw(st.sampled_from(HASHES)) for _ in snapshot_emails],
            "contact_id": [str(i) for i, _ in enumerate(snapshot_emails)],
            "status": [
                draw(st.sampled_from(["member", "member", "removed", "opted_out", "rejected"])) for _ in snapshot_emails
            ],
        },
        schema={"email": pl.String, "fields_hash": pl.String, "contact_id": pl.String, "status": pl.String},
    )
    return members, snapshot


@settings(max_examples=300, deadline=None)
@given(members_and_snapshot())
def test_applying_the_changes_gives_the_members(case) -> None:
    members, snapshot = case
    changes = diff(members, snapshot)
    after = apply(snapshot, changes)

    opted_out = set(snapshot.filter(pl.col("status") == "opted_out").get_column("email"))
    # Refused contacts are sent again only when their fields changed.
    refused = set(snapshot.filter(pl.col("status") == "rejected").select("email", "fields_hash").iter_rows())
    expected = {
        (e, h)
        for e, h in members.select("email", "fields_hash").iter_rows()
        if e not in opted_out and (e, h) not in refused
    }
    listed = {(e, h) for e, h in after.filter(pl.col("status") == "member").select("email", "fields_hash").iter_rows()}
    assert listed == expected
    # Opt-outs are never touched, and each contact has at most one change.
    assert not set(changes.get_column("email")) & opted_out
    assert changes.get_column("email").n_unique() == changes.height
    assert skipped_opt_outs(members, snapshot) == len(opted_out & set(members.get_column("email")))


@settings(max_examples=100, deadline=None)
@given(members_and_snapshot())
def test_a_second_diff_after_applying_is_empty(case) -> None:
    members, snapshot = case
    after = apply(snapshot, diff(members, snapshot)).with_columns(contact_id=pl.lit(None, dtype=pl.String))
    assert diff(members, after).is_empty()


def test_each_kind_of_change() -> None:
    members = pl.DataFrame(
        {
            "email": ["new@x.io", "back@x.io", "same@x.io", "changed@x.io", "optout@x.io"],
            "fields_hash": ["a", "b", "c", "d", "e"],
        }
    )
    snapshot = pl.DataFrame(
        {
            "email": ["back@x.io", "same@x.io", "changed@x.io", "optout@x.io", "gone@x.io"],
            "fields_hash": ["b", "c", "old", "e", "f"],
            "contact_id": ["1", "2", "3", "4", "5"],
            "status": ["removed", "member", "member", "opted_out", "member"],
        }
    )
    changes = diff(members, snapshot).sort("email")
    assert changes.select("op", "email", "contact_id").rows() == [
        ("readd", "back@x.io", "1"),
        ("update", "changed@x.io", "3"),
        ("remove", "gone@x.io", "5"),
        ("add", "new@x.io", None),
    ]
    assert counts(changes) == {"add": 1, "readd": 1, "update": 1, "remove": 1}


def test_the_first_sync_is_all_adds() -> None:
    members = pl.DataFrame({"email": ["a@x.io", "b@x.io"], "fields_hash": ["1", "2"]})
    empty = pl.DataFrame(
        schema={"email": pl.String, "fields_hash": pl.String, "contact_id": pl.String, "status": pl.String}
    )
    assert counts(diff(members, empty)) == {"add": 2, "readd": 0, "update": 0, "remove": 0}


def test_the_audience_members_table_counts_only_its_member_rows() -> None:
    table = pl.DataFrame(
        {
            "email": ["a@x.io", "a@x.io", "bad", "b@x.io"],
            "fields_hash": ["1", "1", None, "2"],
            "status": ["member", "duplicate", "rejected", "member"],
            "reason": [None, "same email as customer 1", "email missing", None],
        }
    )
    snapshot = pl.DataFrame(
        {
            "email": ["b@x.io", "c@x.io"],
            "fields_hash": ["2", "3"],
            "contact_id": [None, "9"],
            "status": ["member", "member"],
        }
    )
    changes = diff(table, snapshot).sort("email")
    assert changes.select("op", "email", "contact_id").rows() == [("add", "a@x.io", None), ("remove", "c@x.io", "9")]
    assert "status" not in changes.columns and "reason" not in changes.columns


@contextmanager
def every_email_hashing_alike() -> Iterator[None]:
    """Every value of an expression hashes to 0 (a collision between all emails) inside the block."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pl.Expr, "hash", lambda self, *args, **kwargs: self.is_null().cast(pl.UInt64))
        yield


@settings(max_examples=50, deadline=None)
@given(members_and_snapshot())
def test_a_hash_collision_never_pairs_two_people(case) -> None:
    # The diff pairs rows on a 64-bit hash of the email; with every email hashing alike, it must still pair
    # each address only with itself, and give the changes it gives with the real hash.
    members, snapshot = case
    expected = diff(members, snapshot)
    with every_email_hashing_alike():
        colliding = diff(members, snapshot)
    assert colliding.sort("op", "email").equals(expected.sort("op", "email"))
