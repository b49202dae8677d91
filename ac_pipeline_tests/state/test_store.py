"""The sync state, on both backends (a DuckDB file and Postgres, see conftest.py): created on first use,
versioned, moved only by confirmed rows in one transaction, the same values and types back as went in, and one
push per audience at a time across processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import psycopg
import pytest
from polars.testing import assert_frame_equal

from ac_pipeline.migrations import migrate
from ac_pipeline.state.backend import StateBusy, StateError
from ac_pipeline.state.groups import GroupState
from ac_pipeline.state.schema import MIGRATIONS, SCHEMA_VERSION, SNAPSHOT_COLUMNS
from ac_pipeline.state.store import SyncState

CHILD = [sys.executable, "-m", "ac_pipeline_tests.state.state_child"]
DATABASE_ERRORS = (duckdb.Error, psycopg.Error)


def members(*emails: str, fields_hash: str = "h") -> pl.DataFrame:
    n = len(emails)
    return pl.DataFrame({"email": list(emails), "fields_hash": [fields_hash] * n, "status": ["member"] * n})


def test_created_on_first_use_with_its_schema_version(state: SyncState) -> None:
    assert state.snapshot("vip").is_empty()
    assert state.schema_version() == SCHEMA_VERSION
    assert state.snapshot_counts("vip") == {"member": 0, "removed": 0, "opted_out": 0, "rejected": 0}


def test_a_newer_schema_is_refused_with_what_to_do(state: SyncState, location: Path | str) -> None:
    with state.connect() as session:
        session.execute("INSERT INTO schema_version VALUES (99, now())")
    if hasattr(state.backend, "close"):
        state.backend.close()  # Postgres checks the schema on each new connection; drop the idle ones
    with pytest.raises(StateError, match="upgrade ac-pipeline"):
        SyncState(location).snapshot("vip")


def test_commit_confirmed_moves_the_snapshot_and_the_ledger_together(state: SyncState) -> None:
    confirmed = members("a@x.io", "b@x.io")
    ledger = confirmed.select("email", op=pl.lit("add"), batch=pl.lit("b1"), status=pl.lit("confirmed"))
    state.commit_confirmed("vip", "run-1", confirmed, ledger)
    # An update that knows the contact id, then one that does not: the id is kept.
    state.commit_confirmed(
        "vip",
        "run-2",
        pl.DataFrame({"email": ["a@x.io"], "fields_hash": ["9"], "contact_id": ["17"], "status": ["member"]}),
    )
    removed_at = datetime(2026, 11, 23, 4, 5, 6, 789_012, tzinfo=UTC)
    state.commit_confirmed(
        "vip", "run-3", pl.DataFrame({"email": ["a@x.io"], "status": ["removed"], "removed_at": [removed_at]})
    )
    snapshot = state.snapshot("vip").sort("email")
    assert snapshot.select("email", "fields_hash", "contact_id", "status", "removed_at").rows() == [
        ("a@x.io", "9", "17", "removed", removed_at),
        ("b@x.io", "h", None, "member", None),
    ]
    # removed_at lives only as long as the status is `removed`.
    state.commit_confirmed("vip", "run-4", members("a@x.io"))
    assert state.snapshot("vip").filter(pl.col("email") == "a@x.io")["removed_at"].to_list() == [None]
    assert state.ledger("vip").select("run_id", "email", "op").sort("email").rows() == [
        ("run-1", "a@x.io", "add"),
        ("run-1", "b@x.io", "add"),
    ]
    assert state.snapshot("other").is_empty()


def test_bad_rows_write_nothing(state: SyncState) -> None:
    state.commit_confirmed("vip", "run-1", members("a@x.io"))
    with pytest.raises(ValueError, match="same email twice"):
        state.commit_confirmed("vip", "run-2", members("b@x.io", "b@x.io"))
    with pytest.raises(ValueError, match="member, removed, opted_out, rejected"):
        state.commit_confirmed("vip", "run-2", pl.DataFrame({"email": ["c@x.io"], "status": ["gone"]}))
    # A failure inside the transaction (a ledger row without an op) rolls the snapshot and the journal back.
    state.journal_intents("vip", pl.DataFrame({"email": ["d@x.io"], "op": ["add"]}), "run-2")
    with pytest.raises(DATABASE_ERRORS):
        state.commit_confirmed(
            "vip", "run-2", members("d@x.io"), pl.DataFrame({"email": ["d@x.io"], "status": ["confirmed"]})
        )
    assert state.snapshot("vip").get_column("email").to_list() == ["a@x.io"]
    assert state.ledger("vip").is_empty()
    assert state.journal("vip").get_column("email").to_list() == ["d@x.io"]
    # The failed session is not reused: the next commit goes through.
    state.commit_confirmed("vip", "run-3", members("d@x.io"))
    assert state.journal("vip").is_empty()


def test_a_process_killed_inside_a_commit_leaves_the_state_as_it_was(state: SyncState, location: Path | str) -> None:
    state.commit_confirmed("vip", "run-1", members("a@x.io"))
    state.journal_intents("vip", pl.DataFrame({"email": ["dead-1@x.io"], "op": ["add"]}), "run-dead")
    child = subprocess.run([*CHILD, "die-in-commit", str(location), "vip"], capture_output=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    assert state.snapshot("vip").get_column("email").to_list() == ["a@x.io"]
    assert state.ledger("vip").is_empty()
    assert state.journal("vip").get_column("email").to_list() == ["dead-1@x.io"]
    state.commit_confirmed("vip", "run-2", members("b@x.io"))  # and it is usable after
    assert state.snapshot_counts("vip")["member"] == 2


def test_values_and_types_come_back_as_they_went_in(state: SyncState) -> None:
    """Text that CSV, SQL or JSON could mangle, NULL beside the empty string, and microsecond timestamps."""
    awkward = [
        "",
        "comma, inside",
        'a "quoted" word',
        "new\nline and\r\nreturn",
        "tab\tand back\\slash \\N",
        "percent %s %(name)s $audience",
        "unicode: Zoë, 東京, emoji 🎉",
        "'; DROP TABLE snapshot; --",
    ]
    when = datetime(2026, 1, 2, 3, 4, 5, 600_007, tzinfo=UTC)
    rows = pl.DataFrame(
        {
            "email": [f"{n}@x.io" for n in range(len(awkward) + 1)],
            "fields_hash": [*awkward, None],
            "contact_id": [None, *(str(n) for n in range(len(awkward)))],
            "status": ["removed"] * (len(awkward) + 1),
            "reason": [None, *awkward],
            "removed_at": [when + timedelta(days=n) for n in range(len(awkward) + 1)],
            "customer_id": [*awkward, None],
        },
        schema=SNAPSHOT_COLUMNS,
    )
    state.commit_confirmed("weird audience 'x'", "run-1", rows)
    back = state.snapshot("weird audience 'x'")
    assert back.schema == rows.schema
    assert_frame_equal(back.sort("email"), rows.sort("email"))


def test_a_large_snapshot_round_trips(state: SyncState) -> None:
    n = 100_000
    rows = pl.DataFrame(
        {
            "email": [f"p{i}@x.io" for i in range(n)],
            "fields_hash": [f"{i:032x}" for i in range(n)],
            "contact_id": [str(i) for i in range(n)],
            "status": ["member"] * n,
        }
    )
    ledger = rows.select("email", op=pl.lit("add"), batch=pl.lit("b"), status=pl.lit("confirmed"))
    started = time.monotonic()
    state.commit_confirmed("big", "run-1", rows, ledger)
    snapshot = state.snapshot("big")
    print(f"100,000 rows committed and read back in {time.monotonic() - started:.2f} s")
    assert snapshot.height == n
    assert_frame_equal(snapshot.select(rows.columns).sort("email"), rows.sort("email"))


def test_runs_record_counts(state: SyncState) -> None:
    state.start_run("vip", "run-1", dry_run=True)
    state.finish_run("vip", "run-1", "success", {"adds": 3, "removals": 1, "seconds": 0.5})
    runs = state.runs("vip")
    assert runs.select("run_id", "status", "dry_run", "adds", "removals", "seconds").rows() == [
        ("run-1", "success", True, 3, 1, 0.5)
    ]
    assert runs["finished_at"][0] >= runs["started_at"][0]
    with pytest.raises(ValueError, match="unknown run counts"):
        state.finish_run("vip", "run-1", "success", {"bogus": 1})


def test_the_journal_holds_what_is_in_flight_until_its_outcome_is_committed(state: SyncState) -> None:
    state.journal_intents("vip", pl.DataFrame({"email": ["a@x.io", "b@x.io"], "op": ["add", "remove"]}), "run-1")
    state.commit_confirmed("vip", "run-1", members("a@x.io"))
    journal = state.journal("vip")
    assert journal.select("email", "op", "run_id").rows() == [("b@x.io", "remove", "run-1")]
    assert state.clear_journal_before("vip", journal["intended_at"][0]) == 0
    assert state.clear_journal_before("vip", datetime.now(UTC) + timedelta(seconds=1)) == 1
    assert state.journal("vip").is_empty()


def test_destination_and_forget(state: SyncState) -> None:
    assert state.destination("vip") is None
    state.record_destination("vip", "https://acct.api-us1.com", "7")
    state.record_destination("vip", "https://acct.api-us1.com", "8")
    assert state.destination("vip") == ("https://acct.api-us1.com", "8")
    sent = members("a@x.io")
    state.commit_confirmed("vip", "run-1", sent, sent.select("email", op=pl.lit("add"), status=pl.lit("confirmed")))
    state.commit_confirmed("other", "run-1", members("z@x.io"))
    removed = state.forget("vip")
    assert removed["snapshot"] == 1 and removed["destination"] == 1
    assert state.snapshot("vip").is_empty() and state.destination("vip") is None
    assert state.ledger("vip").height == 1  # history stays
    assert state.snapshot_counts("other")["member"] == 1


def test_one_holder_per_audience_across_processes(state: SyncState, location: Path | str) -> None:
    """A second push of an audience waits for the first, says who holds it when the wait runs out, and gets
    the audience as soon as the holder dies (SIGKILL: nothing is let go by hand)."""
    child = subprocess.Popen([*CHILD, "hold", str(location), "vip"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"held", child.stderr.read().decode() if child.stderr else ""
        started = time.monotonic()
        with (
            pytest.raises(StateBusy, match="child holder") as busy,
            state.hold("vip", holder="test", wait_seconds=0.5),
        ):
            pass
        assert 0.4 < time.monotonic() - started < 5
        assert "audience vip" in str(busy.value) and "Let it finish" in str(busy.value)
        with state.hold("other", holder="test", wait_seconds=0.5):  # other audiences are free
            pass
        child.kill()
        child.wait(timeout=10)
        started = time.monotonic()
        with state.hold("vip", holder="test", wait_seconds=10):
            assert time.monotonic() - started < 5
    finally:
        child.kill()
        child.wait(timeout=10)


def test_two_processes_committing_at_once_lose_nothing(state: SyncState, location: Path | str) -> None:
    batches = 20
    children = [
        subprocess.Popen([*CHILD, "commit", str(location), "vip", prefix, str(batches)], stderr=subprocess.PIPE)
        for prefix in ("p", "q")
    ]
    for child in children:
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err.decode()[-2000:]
    snapshot = state.snapshot("vip")
    assert snapshot.height == 2 * batches * 50
    per_process = snapshot.group_by("fields_hash").len().sort("fields_hash").rows()
    assert per_process == [("p", batches * 50), ("q", batches * 50)]
    assert state.ledger("vip").height == 2 * batches * 50
    assert state.journal("vip").is_empty()


def test_a_location_that_cannot_be_used_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="AC_PIPELINE_STATE=mysql://") as unknown:
        SyncState("mysql://root:hunter2@127.0.0.1/state")
    assert "hunter2" not in str(unknown.value)
    with pytest.raises(StateError, match="not reachable") as unreachable:
        SyncState("postgresql://someone:hunter2@127.0.0.1:1/state").snapshot("vip")
    assert "hunter2" not in str(unreachable.value) and "AC_PIPELINE_STATE" in str(unreachable.value)
    garbage = tmp_path / "state.duckdb"
    garbage.write_bytes(b"not a database" * 1000)
    with pytest.raises(StateError, match="cannot be read"):
        SyncState(garbage).snapshot("vip")


def test_a_state_file_of_an_earlier_version_is_migrated_forward(tmp_path: Path) -> None:
    """A version 3 file (before customer ids and groups) keeps its rows and gains the new columns and tables."""
    path = tmp_path / "state.duckdb"
    with duckdb.connect(str(path)) as connection:
        migrate(connection, 0, {version: MIGRATIONS[version] for version in (1, 2, 3)})
        connection.execute(
            "INSERT INTO snapshot (audience, email, fields_hash, status, updated_at) VALUES ('vip', 'a@x.io', 'h', 'member', now())"
        )
    state = SyncState(path)
    assert state.schema_version() == SCHEMA_VERSION
    assert state.snapshot("vip").select("email", "status", "customer_id").rows() == [("a@x.io", "member", None)]
    with state.connect() as session:
        assert session.rows("SELECT count(*) FROM audience_groups") == [(0,)]


def test_group_assignments_are_replaced_whole_and_keep_their_date(state: SyncState) -> None:
    """audience_groups (issue 11): a member who stays in their group keeps when they were put there; one who
    left is dropped; a move dates the new group."""
    groups = GroupState(state)
    first = pl.DataFrame({"customer_id": ["1", "2", "3"], "email": ["a@x.io", "b@x.io", "c@x.io"]})
    groups.replace("ab", first.with_columns(group_name=pl.Series(["a", "b", "control"])), "run-1")
    before = groups.assignments("ab")
    time.sleep(0.01)
    groups.replace(
        "ab",
        pl.DataFrame({"customer_id": ["1", "2"], "email": ["a@x.io", "b2@x.io"], "group_name": ["a", "a"]}),
        "run-2",
    )
    after = groups.assignments("ab")
    assert after.select("customer_id", "email", "group_name", "run_id").rows() == [
        ("1", "a@x.io", "a", "run-1"),
        ("2", "b2@x.io", "a", "run-2"),
    ]
    assert after["assigned_at"][0] == before["assigned_at"][0]
    assert after["assigned_at"][1] > before["assigned_at"][1]
    assert groups.assignments("other").is_empty()
