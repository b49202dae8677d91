"""A process of its own for the state suite (`python -m ac_pipeline_tests.state.state_child ACTION LOCATION ...`):
it holds a lock, commits batches, or dies in the middle of a commit, as a second step or a second machine would.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import polars as pl

from ac_pipeline.state import store
from ac_pipeline.state.store import SyncState


def hold(location: str, audience: str) -> None:
    """Hold the audience, say so on stdout, and sleep until killed."""
    with SyncState(location).hold(audience, holder="child holder"):
        print("held", flush=True)
        time.sleep(300)


def commit_batches(location: str, audience: str, prefix: str, batches: int) -> None:
    """Commit `batches` batches of 50 contacts, each with its ledger rows."""
    state = SyncState(location)
    for batch in range(batches):
        emails = [f"{prefix}-{batch}-{n}@x.io" for n in range(50)]
        confirmed = pl.DataFrame({"email": emails, "fields_hash": [prefix] * 50, "status": ["member"] * 50})
        ledger = confirmed.select(
            "email", op=pl.lit("add"), batch=pl.lit(f"{prefix}{batch}"), status=pl.lit("confirmed")
        )
        state.journal_intents(audience, confirmed.select("email", op=pl.lit("add")), f"run-{prefix}")
        state.commit_confirmed(audience, f"run-{prefix}", confirmed, ledger)


def keep_committing(location: str, audience: str, prefix: str, batches: int) -> None:
    """Commit `batches` batches of 50 contacts a tenth of a second apart, sharing a kept connection as a push's
    writes do (state.duckdb_keep); say "started" after the first."""
    state = SyncState(location)
    with state.keeping_open():
        for batch in range(batches):
            emails = [f"{prefix}-{batch}-{n}@x.io" for n in range(50)]
            confirmed = pl.DataFrame({"email": emails, "fields_hash": [prefix] * 50, "status": ["member"] * 50})
            state.commit_confirmed(audience, f"run-{prefix}", confirmed)
            if batch == 0:
                print("started", flush=True)
            time.sleep(0.1)


def die_in_commit(location: str, audience: str) -> None:
    """Start a commit of 1,000 contacts and be killed after the snapshot rows are written, before the ledger."""
    state = SyncState(location)

    def killed(*args: object, **kwargs: object) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    store.append_ledger = killed  # type: ignore[assignment]
    emails = [f"dead-{n}@x.io" for n in range(1_000)]
    confirmed = pl.DataFrame({"email": emails, "fields_hash": ["h"] * 1_000, "status": ["member"] * 1_000})
    ledger = confirmed.select("email", op=pl.lit("add"), batch=pl.lit("b"), status=pl.lit("confirmed"))
    state.commit_confirmed(audience, "run-dead", confirmed, ledger)


if __name__ == "__main__":
    action, location, audience, *rest = sys.argv[1:]
    if action == "hold":
        hold(location, audience)
    elif action == "commit":
        commit_batches(location, audience, rest[0], int(rest[1]))
    elif action == "keep-committing":
        keep_committing(location, audience, rest[0], int(rest[1]))
    elif action == "die-in-commit":
        die_in_commit(location, audience)
    else:
        raise SystemExit(f"unknown action {action!r}")
