"""A push's writes share a DuckDB connection kept open between them (state.duckdb_keep), and that never locks
another process out: it lets go when someone waits for the file, and soon after its last write."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from ac_pipeline.duckdb_files import want
from ac_pipeline.state import duckdb_keep
from ac_pipeline.state.store import SyncState

CHILD = [sys.executable, "-m", "ac_pipeline_tests.state.state_child"]


def members(prefix: str, n: int = 50) -> pl.DataFrame:
    return pl.DataFrame({"email": [f"{prefix}{i}@x.io" for i in range(n)], "status": ["member"] * n})


def wait_until_closed(path: Path) -> None:
    deadline = time.monotonic() + 30
    while duckdb_keep.kept_open(path) and time.monotonic() < deadline:
        time.sleep(0.02)


def test_writes_share_one_connection_while_kept_and_every_session_sees_them(tmp_path: Path) -> None:
    path = tmp_path / "state.duckdb"
    state = SyncState(path)
    state.snapshot("vip")  # created (a write) before
    with state.keeping_open():
        state.snapshot("vip")  # a read opens no kept connection
        assert not duckdb_keep.kept_open(path)
        state.commit_confirmed("vip", "run-1", members("a"))
        assert duckdb_keep.kept_open(path)
        # Reads in this process, of this state or another object on the same file, are sessions on it.
        assert state.snapshot("vip").height == 50
        assert SyncState(path).snapshot("vip").height == 50
        state.commit_confirmed("vip", "run-1", members("b"))
    assert not duckdb_keep.kept_open(path)  # the block's end lets go
    assert SyncState(path).snapshot("vip").height == 100


def test_the_kept_connection_is_let_go_when_idle_or_wanted(tmp_path: Path) -> None:
    path = tmp_path / "state.duckdb"
    state = SyncState(path)
    with state.keeping_open():
        state.commit_confirmed("vip", "run-1", members("a"))
        assert duckdb_keep.kept_open(path)
        wait_until_closed(path)  # idle for IDLE_SECONDS
        assert not duckdb_keep.kept_open(path)

        state.commit_confirmed("vip", "run-1", members("b"))
        assert duckdb_keep.kept_open(path)
        want(path)  # another process found the file locked
        wait_until_closed(path)
        assert not duckdb_keep.kept_open(path)
        # While someone has wanted it lately, each session opens and closes the file, as without keeping.
        state.commit_confirmed("vip", "run-1", members("c"))
        assert not duckdb_keep.kept_open(path)
    assert state.snapshot("vip").height == 150


def test_another_process_reads_and_writes_while_a_push_keeps_the_file(tmp_path: Path) -> None:
    """The child commits for several seconds with a kept connection; this process's reads and writes get the file
    while the child is still at it (they would wait for its end if it never let go), and nothing is lost."""
    path = tmp_path / "state.duckdb"
    state = SyncState(path)
    state.snapshot("vip")  # created and migrated before the child starts
    batches = 100
    child = subprocess.Popen(
        [*CHILD, "keep-committing", str(path), "vip", "k", str(batches)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == b"started"
        for i in range(5):
            assert state.snapshot("vip").height >= 50
            state.commit_confirmed("other", "run-o", members(f"o{i}-"))
        assert child.poll() is None, "the reads waited for the child to finish: it never let go of the file"
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err.decode()[-2000:]
    finally:
        child.kill()
        child.wait()
    assert state.snapshot("vip").height == batches * 50
    assert state.snapshot("other").height == 5 * 50
