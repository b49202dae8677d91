"""Normalisation, validation, de-duplication and exclusion rules, on the dirty cases real tables have."""

from __future__ import annotations

from datetime import datetime

import duckdb
import polars as pl
import pytest

from ac_pipeline.audiences.config import parse_audiences
from ac_pipeline.audiences.members import (
    apply_exclusions,
    compute_members,
    email_is_valid,
    email_rejection,
    normalise_email,
)


@pytest.mark.parametrize(
    ("raw", "email", "reason"),
    [
        ("ada@example.com", "ada@example.com", None),
        ("  Ada@Example.COM ", "ada@example.com", None),
        ("\u00a0ada@example.com\u200b", "ada@example.com", None),
        ("\tada.lovelace+news@mail.example.co.uk\n", "ada.lovelace+news@mail.example.co.uk", None),
        ("o'brien@example.ie", "o'brien@example.ie", "apostrophe (') in the address: ActiveCampaign refuses it"),
        (None, None, "email missing"),
        ("   ", "", "email missing"),
        ("ada at example.com", "ada at example.com", "email contains white space"),
        ("ada@@example.com", "ada@@example.com", "email must contain exactly one '@'"),
        ("ada.example.com", "ada.example.com", "email must contain exactly one '@'"),
        ("n/a", "n/a", "email must contain exactly one '@'"),
        ("jürgen@example.de", "jürgen@example.de", "email has non-ASCII characters"),
        ("@example.com", "@example.com", "nothing before the '@'"),
        ('"ada"@example.com', '"ada"@example.com', "character '\"' before the '@': ActiveCampaign refuses it"),
        ("ada(x)@example.com", "ada(x)@example.com", "character '(' before the '@': ActiveCampaign refuses it"),
        ("ada@", "ada@", "nothing after the '@'"),
        (
            "ada@exa_mple.com",
            "ada@exa_mple.com",
            "character '_' in the domain: only letters, digits, '-' and '.' are allowed",
        ),
        ("ada@examplecom", "ada@examplecom", "the domain has no '.' (e.g. example.com)"),
        ("ada@example..com", "ada@example..com", "empty part in the domain (a leading, trailing or double '.')"),
        ("ada@.example.com", "ada@.example.com", "empty part in the domain (a leading, trailing or double '.')"),
        ("ada@example.com.", "ada@example.com.", "empty part in the domain (a leading, trailing or double '.')"),
        ("ada@-example.com", "ada@-example.com", "a part of the domain starts or ends with '-'"),
        ("ada@example-.com", "ada@example-.com", "a part of the domain starts or ends with '-'"),
        ("ada@example.c", "ada@example.c", "top-level domain must be 2+ letters (the part after the last '.')"),
        ("ada@example.c0m", "ada@example.c0m", "top-level domain must be 2+ letters (the part after the last '.')"),
        ("ada@example.123", "ada@example.123", "top-level domain must be 2+ letters (the part after the last '.')"),
        # What ActiveCampaign accepts, as the sandbox models it: dots anywhere in the local part, `+tags`.
        (".ada@example.com", ".ada@example.com", None),
        ("ada..l+x@sub.example-1.co", "ada..l+x@sub.example-1.co", None),
        ("a" * 250 + "@example.com", "a" * 250 + "@example.com", "email longer than 250 characters"),
    ],
)
def test_emails_are_normalised_and_validated(raw: str | None, email: str | None, reason: str | None) -> None:
    frame = pl.DataFrame({"raw": [raw]}, schema={"raw": pl.String})
    result = frame.select(normalise_email(pl.col("raw")).alias("email")).with_columns(
        email_rejection(pl.col("email")).alias("reason")
    )
    assert result.row(0) == (email, reason)
    # The fast test used on every row agrees with the detailed one used on failures.
    assert result.select(email_is_valid(pl.col("email"))).item() is (reason is None)


AUDIENCE = """
audiences:
  - key: everyone
    list: {name: Everyone}
    condition: "true"
    fields: {email: email, first_name: first_name, custom: {Tier: tier}}
    tags: [all]
  - key: gold
    list: {name: Gold}
    condition: tier = 'gold'
    fields: {email: email}
  - key: not_gold
    list: {name: Not gold}
    condition: "true"
    exclude: {audiences: [gold], suppression_table: suppressed, emails: ["  BLOCKED@example.com"]}
    fields: {email: email}
"""


@pytest.fixture
def connection():
    rows = [
        # customer_id, email, first_name, tier, updated_at
        (1, "ada@example.com", "Ada", "gold", datetime(2026, 1, 1)),
        (2, "  ADA@example.com ", "Ada L.", "silver", datetime(2026, 3, 1)),  # same person, newer: wins
        (3, "bob@example.com", "Bob", "silver", datetime(2026, 1, 1)),
        (4, "Bob@Example.com", "Robert", "silver", datetime(2026, 1, 1)),  # same time: lowest id (3) wins
        (5, "not an email", "Eve", "silver", datetime(2026, 1, 1)),
        (6, None, "Nobody", "silver", datetime(2026, 1, 1)),
        (7, "carol@example.com", "Carol", "bronze", datetime(2026, 1, 1)),
        (8, "blocked@example.com", "Dan", "bronze", datetime(2026, 1, 1)),
        (9, "zoë.müller@example.de", "Zoë", "bronze", datetime(2026, 1, 1)),
    ]
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE customers (customer_id BIGINT, email VARCHAR, first_name VARCHAR, tier VARCHAR, updated_at TIMESTAMP)"
    )
    con.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?)", rows)
    con.execute("CREATE TABLE suppressed AS SELECT ' Carol@EXAMPLE.com' AS email")
    yield con
    con.close()


def _members(connection, key: str) -> pl.DataFrame:
    catalog = parse_audiences(AUDIENCE)
    return compute_members(connection, catalog.get(key), catalog.by_key, catalog.source)


def test_duplicates_keep_the_most_recently_updated_row_then_the_lowest_id(connection) -> None:
    rows = _members(connection, "everyone")
    members = rows.filter(pl.col("status") == "member").sort("customer_id")
    assert members.select("customer_id", "email", "first_name").rows() == [
        (2, "ada@example.com", "Ada L."),
        (3, "bob@example.com", "Bob"),
        (7, "carol@example.com", "Carol"),
        (8, "blocked@example.com", "Dan"),
    ]
    duplicates = dict(rows.filter(pl.col("status") == "duplicate").select("customer_id", "reason").iter_rows())
    assert duplicates == {
        1: "same email as customer 2, which was updated more recently",
        4: "same email as customer 3, which was updated more recently",
    }


def test_rejected_rows_are_kept_with_their_reason(connection) -> None:
    rows = _members(connection, "everyone")
    rejected = dict(rows.filter(pl.col("status") == "rejected").select("customer_id", "reason").iter_rows())
    assert rejected == {5: "email contains white space", 6: "email missing", 9: "email has non-ASCII characters"}
    # Nothing is silently dropped: every selected row is accounted for.
    assert rows.height == 9


def test_mapped_fields_and_hash(connection) -> None:
    members = _members(connection, "everyone").filter(pl.col("status") == "member")
    assert "field:Tier" in members.columns
    assert members.get_column("fields_hash").null_count() == 0
    assert members.get_column("fields_hash").n_unique() == members.height


def test_exclusions_by_audience_suppression_table_and_list(connection) -> None:
    rows = _members(connection, "not_gold")
    members = set(rows.filter(pl.col("status") == "member").get_column("email"))
    assert members == {"bob@example.com"}
    excluded = dict(rows.filter(pl.col("status") == "excluded").select("email", "reason").unique().iter_rows())
    # Ada's winning row is silver, but her older row is gold: the gold audience holds her email.
    assert excluded == {
        "ada@example.com": "excluded: in audience gold",
        "carol@example.com": "excluded: on suppression table suppressed",
        "blocked@example.com": "excluded: listed in exclude.emails",
    }


def test_an_email_in_an_excluded_audience_is_excluded(connection) -> None:
    connection.execute("UPDATE customers SET tier = 'gold' WHERE customer_id = 4")
    rows = _members(connection, "not_gold")
    bob = rows.filter(pl.col("email") == "bob@example.com").sort("customer_id")
    assert bob.select("customer_id", "status").rows() == [(3, "excluded"), (4, "duplicate")]
    assert bob.get_column("reason")[0] == "excluded: in audience gold"


def test_an_address_excluded_for_several_reasons_shows_the_first_and_only_members_are_marked() -> None:
    rows = pl.DataFrame(
        {
            "email": ["ada@example.com", "bob@example.com", "bob@example.com", "carol@example.com"],
            "status": ["member", "member", "duplicate", "member"],
            "reason": [None, None, "same email as customer 2, which was updated more recently", None],
        }
    )
    exclusions = {
        "in audience gold": pl.Series(["bob@example.com"]),
        "on suppression table suppressed": pl.Series(["bob@example.com", "ada@example.com"]),
    }
    marked = apply_exclusions(rows, exclusions)
    assert marked.rows() == [
        ("ada@example.com", "excluded", "excluded: on suppression table suppressed"),
        ("bob@example.com", "excluded", "excluded: in audience gold"),
        ("bob@example.com", "duplicate", "same email as customer 2, which was updated more recently"),
        ("carol@example.com", "member", None),
    ]
    assert apply_exclusions(rows, {}).equals(rows)


def test_the_hash_changes_only_with_what_is_sent(connection) -> None:
    before = _members(connection, "everyone").filter(pl.col("status") == "member").select("email", "fields_hash")
    connection.execute("UPDATE customers SET updated_at = updated_at + INTERVAL 1 SECOND WHERE customer_id = 3")
    connection.execute("UPDATE customers SET first_name = 'Carola' WHERE customer_id = 7")
    after = _members(connection, "everyone").filter(pl.col("status") == "member").select("email", "fields_hash")
    changed = before.join(after, on="email").filter(pl.col("fields_hash") != pl.col("fields_hash_right"))
    assert changed.get_column("email").to_list() == ["carol@example.com"]
