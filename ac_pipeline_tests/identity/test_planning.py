"""Which email changes the diff plans (audiences.identity), without a sandbox: chains in order, cycles and
held addresses left to the fallback, one contact per customer, and rows without customer ids left alone."""

from __future__ import annotations

import polars as pl

from ac_pipeline.audiences.changes import diff
from ac_pipeline.audiences.identity import email_changes


def snapshot(*rows: tuple[str, str, str | None]) -> pl.DataFrame:
    """(email, status, customer id) rows; the contact id is the email's first letter."""
    return pl.DataFrame(
        [
            {"email": e, "fields_hash": "h", "contact_id": e[0], "status": s, "customer_id": c, "removed_at": None}
            for e, s, c in rows
        ],
        schema={
            "email": pl.String,
            "fields_hash": pl.String,
            "contact_id": pl.String,
            "status": pl.String,
            "customer_id": pl.String,
            "removed_at": pl.Datetime("us", "UTC"),
        },
    )


def members(**addresses: str) -> pl.DataFrame:
    """customer id (as `c<id>`) -> address."""
    return pl.DataFrame(
        {
            "customer_id": [int(c[1:]) for c in addresses],
            "email": list(addresses.values()),
            "fields_hash": ["h"] * len(addresses),
            "status": ["member"] * len(addresses),
        }
    )


def planned(m: pl.DataFrame, s: pl.DataFrame) -> list[tuple[str, str, int]]:
    return [(r["previous_email"], r["email"], r["step"]) for r in email_changes(m, s).iter_rows(named=True)]


def test_a_chain_is_ordered_from_its_free_end() -> None:
    s = snapshot(("a", "member", "1"), ("b", "member", "2"), ("c", "member", "3"))
    m = members(c1="b", c2="c", c3="d")  # a -> b -> c -> d
    assert planned(m, s) == [("c", "d", 0), ("b", "c", 1), ("a", "b", 2)]
    changes = diff(m, s)
    assert set(changes.get_column("op")) == {"email_change"}  # nothing leaves, nothing joins


def test_cycles_and_held_addresses_are_left_to_the_fallback() -> None:
    s = snapshot(
        ("a", "member", "1"),
        ("b", "member", "2"),
        ("c", "member", "3"),
        ("x", "member", "4"),
        ("y", "removed", "5"),
        ("z", "member", None),
    )
    m = members(c1="b", c2="c", c3="a", c4="y", c6="z")  # a 3-cycle; x into y, which stays (removed)
    assert planned(m, s) == []
    ops = dict(diff(m, s).select("email", "op").iter_rows())
    assert ops == {"y": "readd", "x": "remove"}  # a, b, c keep their contacts (hashes equal: no update)


def test_a_customer_with_several_rows_moves_the_opted_out_one_and_settled_customers_stay() -> None:
    s = snapshot(("a", "member", "1"), ("o", "opted_out", "1"), ("b", "member", "2"), ("old-b", "removed", "2"))
    m = members(c1="new", c2="b")
    assert planned(m, s) == [("o", "new", 0)]
    ops = sorted(diff(m, s).select("email", "op").iter_rows())
    assert ops == [("a", "remove"), ("new", "email_change")]  # the customer stays opted out at `new`


def test_rows_without_customer_ids_and_ambiguous_customers_do_not_move() -> None:
    s = snapshot(("a", "member", None), ("b", "member", "2"))
    m = pl.concat([members(c1="new-a", c2="new-b"), members(c2="other-b")])  # customer 2 on two rows
    assert planned(m, s) == []
    assert planned(m.drop("customer_id"), s) == [] and planned(m, s.drop("customer_id")) == []
