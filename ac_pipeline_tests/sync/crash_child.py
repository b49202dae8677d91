"""A sync run in a process of its own, for the crash test of test_reliability_crashes.py to kill.

    python crash_child.py PARTITION [--die-in MODE]

Runs the audience_sync job for one audience, exactly as `dagster dev` would run it in one process,
with its locations and destination taken from the environment (AC_PIPELINE_HOME,
ACTIVECAMPAIGN_API_URL, ACTIVECAMPAIGN_API_KEY, AC_PIPELINE_SANDBOX_SPEED). Exit code 0 when the run
succeeded, 1 when it failed; a killed run ends with -SIGKILL.

MODE makes the process SIGKILL itself at a precise point (the test kills it from outside otherwise):
- `members-write`: half-way through writing audience_members' Parquet file (the first Parquet write);
- `changes-write`: half-way through writing audience_changes' Parquet file (the second);
- `after-commit:N`: right after the COMMIT of the N-th snapshot commit of the push, before the
  connection is closed, so DuckDB's write-ahead log is left for the next process to replay;
- `before-commit:N`: inside the N-th snapshot commit's transaction, its rows inserted, just before COMMIT.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import sys
from typing import Any


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def die_while_writing_parquet(nth: int) -> None:
    """The nth `DataFrame.write_parquet` writes half of the file and the process dies."""
    import polars as pl

    original = pl.DataFrame.write_parquet
    calls = [0]

    def write_parquet(self: pl.DataFrame, file: Any, *args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] < nth:
            return original(self, file, *args, **kwargs)
        buffer = io.BytesIO()
        original(self, buffer, *args, **kwargs)
        data = buffer.getvalue()
        with open(file, "wb") as partial:
            partial.write(data[: len(data) // 2])
            partial.flush()
            os.fsync(partial.fileno())
        die()

    pl.DataFrame.write_parquet = write_parquet  # type: ignore[method-assign]


def die_in_commit(nth: int, committed: bool) -> None:
    """The nth `SyncState.commit_confirmed` dies just before its COMMIT, or (`committed`) right after it,
    before closing the connection."""
    from ac_pipeline.state.duckdb_backend import DuckDBSession
    from ac_pipeline.state.store import SyncState

    original_transaction = DuckDBSession.transaction
    original_commit = SyncState.commit_confirmed
    state = {"commits": 0, "inside": False}

    @contextlib.contextmanager
    def transaction(self: DuckDBSession) -> Any:
        if not state["inside"]:
            with original_transaction(self):
                yield
            return
        self.connection.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        if not committed and state["commits"] + 1 == nth:
            print("dying before COMMIT", flush=True)
            die()
        self.connection.execute("COMMIT")
        state["commits"] += 1
        if committed and state["commits"] == nth:
            members = self.connection.execute("SELECT count(*) FROM snapshot WHERE status = 'member'").fetchall()[0][0]
            print(f"committed {members} members", flush=True)
            die()

    def commit_confirmed(self: SyncState, *args: Any, **kwargs: Any) -> int:
        state["inside"] = True
        try:
            return original_commit(self, *args, **kwargs)
        finally:
            state["inside"] = False

    DuckDBSession.transaction = transaction  # type: ignore[method-assign]
    SyncState.commit_confirmed = commit_confirmed  # type: ignore[method-assign]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("partition")
    parser.add_argument("--die-in", default="")
    args = parser.parse_args()
    if args.die_in == "members-write":
        die_while_writing_parquet(1)
    elif args.die_in == "changes-write":
        die_while_writing_parquet(2)
    elif args.die_in.startswith(("after-commit:", "before-commit:")):
        where, nth = args.die_in.split(":", 1)
        die_in_commit(int(nth), committed=where == "after-commit")
    elif args.die_in:
        parser.error(f"unknown --die-in {args.die_in!r}")

    import dagster as dg

    from ac_pipeline.definitions import build_definitions

    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    job = build_definitions().resolve_job_def("audience_sync")
    print("started", flush=True)
    result = job.execute_in_process(
        partition_key=args.partition, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False, run_config=quiet
    )
    print("success" if result.success else "failure", flush=True)
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
