"""The sync state file: created on first use, versioned, and moved only by confirmed rows."""

from __future__ import annotations

import duckdb
import polars as pl
import pytest

from ac_pipeline.state.store import SCHEMA_VERSION, StateError, SyncState


def test_created_on_first_use_with_its_schema_version(tmp_path) -> None:
    state = SyncState(tmp_path / "sub" / "state.duckdb")
    assert state.snapshot("vip").is_empty()
    assert state.schema_version() == SCHEMA_VERSION
    assert state.snapshot_counts("vip") == {"member": 0, "removed": 0, "opted_out": 0, "rejected": 0}


def test_a_newer_schema_is_refused_with_what_to_do(tmp_path) -> None:
    state = SyncState(tmp_path / "state.duckdb")
    state.schema_version()
    with duckdb.connect(str(state.path)) as connection:
        connection.execute("INSERT INTO schema_version VALUES (99, now())")
    with pytest.raises(StateError, match="upgrade ac-pipeline"):
        state.snapshot("vip")


def test_commit_confirmed_moves_the_snapshot_and_the_ledger_together(tmp_path) -> None:
    state = SyncState(tmp_path / "state.duckdb")
    confirmed = pl.DataFrame({"email": ["a@x.io", "b@x.io"], "fields_hash": ["1", "2"], "status": ["member", "member"]})
    ledger = confirmed.select("email", op=pl.lit("add"), batch=pl.lit("b1"), status=pl.lit("confirmed"))
    state.commit_confirmed("vip", "run-1", confirmed, ledger)
    # An update that knows the contact id, then one that does not: the id is kept.
    state.commit_confirmed(
        "vip",
        "run-2",
        pl.DataFrame({"email": ["a@x.io"], "fields_hash": ["9"], "contact_id": ["17"], "status": ["member"]}),
    )
    state.commit_confirmed("vip", "run-3", pl.DataFrame({"email": ["a@x.io"], "status": ["removed"]}))
    snapshot = state.snapshot("vip").sort("email")
    assert snapshot.select("email", "fields_hash", "contact_id", "status").rows() == [
        ("a@x.io", "9", "17", "removed"),
        ("b@x.io", "2", None, "member"),
    ]
    assert state.ledger("vip").height == 2
    assert state.snapshot("other").is_empty()


def test_bad_rows_write_nothing(tmp_path) -> None:
    state = SyncState(tmp_path / "state.duckdb")
    state.commit_confirmed(
        "vip", "run-1", pl.DataFrame({"email": ["a@x.io"], "fields_hash": ["1"], "status": ["member"]})
    )
    with pytest.raises(ValueError, match="same email twice"):
        state.commit_confirmed(
            "vip", "run-2", pl.DataFrame({"email": ["b@x.io", "b@x.io"], "status": ["member", "member"]})
        )
    with pytest.raises(ValueError, match="member, removed, opted_out, rejected"):
        state.commit_confirmed("vip", "run-2", pl.DataFrame({"email": ["c@x.io"], "status": ["gone"]}))
    # A failure inside the transaction (a ledger row without an op) rolls the snapshot back too.
    with pytest.raises(duckdb.Error):
        state.commit_confirmed(
            "vip",
            "run-2",
            pl.DataFrame({"email": ["d@x.io"], "status": ["member"]}),
            pl.DataFrame({"email": ["d@x.io"], "status": ["confirmed"]}),
        )
    assert state.snapshot("vip").get_column("email").to_list() == ["a@x.io"]
    assert state.ledger("vip").is_empty()


def test_runs_record_counts(tmp_path) -> None:
    state = SyncState(tmp_path / "state.duckdb")
    state.start_run("vip", "run-1")
    state.finish_run("vip", "run-1", "success", {"adds": 3, "removals": 1, "seconds": 0.5})
    runs = state.runs("vip")
    assert runs.select("run_id", "status", "adds", "removals").rows() == [("run-1", "success", 3, 1)]
    with pytest.raises(ValueError, match="unknown run counts"):
        state.finish_run("vip", "run-1", "success", {"bogus": 1})
