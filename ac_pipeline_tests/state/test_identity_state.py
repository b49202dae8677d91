"""state.identity on both backends: a row moves to a new address whole, in one transaction with its ledger row
and the end of its intent; ids are learnt only where none is known."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from ac_pipeline.state import identity
from ac_pipeline.state.store import SyncState

WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def rows(state: SyncState) -> dict[str, tuple]:
    snapshot = state.snapshot("a")
    columns = ("fields_hash", "contact_id", "status", "reason", "removed_at", "customer_id")
    return {r["email"]: tuple(r[c] for c in columns) for r in snapshot.iter_rows(named=True)}


def test_a_row_moves_whole_and_replaces_a_stale_row_at_its_new_address(state: SyncState) -> None:
    state.commit_confirmed(
        "a",
        "r1",
        pl.DataFrame(
            {
                "email": ["old@x.com", "new@x.com", "other@x.com"],
                "fields_hash": ["h1", "h2", "h3"],
                "contact_id": ["7", "8", None],
                "status": ["removed", "member", "member"],
                "reason": ["left", None, None],
                "removed_at": [WHEN, None, None],
                "customer_id": ["42", "43", None],
            }
        ),
    )
    state.journal_intents("a", pl.DataFrame({"email": ["old@x.com"], "op": ["email_change"]}), "r2")
    identity.move_row(
        state, "a", "r2", old="old@x.com", new="new@x.com", contact_id=None, customer_id=None, reason="old -> new"
    )
    assert rows(state) == {
        "new@x.com": ("h1", "7", "removed", "left", WHEN, "42"),
        "other@x.com": ("h3", None, "member", None, None, None),
    }
    assert state.journal("a").is_empty()
    [ledger] = state.ledger("a", "r2").iter_rows(named=True)
    assert (ledger["email"], ledger["op"], ledger["status"], ledger["reason"]) == (
        "new@x.com",
        "email_change",
        "confirmed",
        "old -> new",
    )

    identity.learn(
        state,
        "a",
        pl.DataFrame({"email": ["new@x.com", "other@x.com"], "contact_id": ["9", "10"], "customer_id": ["1", "44"]}),
    )
    assert rows(state)["new@x.com"][1:] == ("7", "removed", "left", WHEN, "42")  # known ids are kept
    assert rows(state)["other@x.com"] == ("h3", "10", "member", None, None, "44")

    state.journal_intents("a", pl.DataFrame({"email": ["other@x.com"], "op": ["email_change"]}), "r3")
    identity.settle(state, "a", "r3", email="other@x.com", status="fallback", reason="taken")
    assert state.journal("a").is_empty()
    assert state.ledger("a", "r3").get_column("status").to_list() == ["fallback"]
