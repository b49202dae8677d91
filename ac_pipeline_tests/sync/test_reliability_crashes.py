"""Reliability, against a real sandbox: a fault storm, and crashes (SIGKILL) mid-sync.

Every loop is bounded in count and time; nothing here asserts on durations. Faults are seeded, crash
points are seeded and chosen by progress (the number of bulk imports the sandbox accepted), not by time.
The other reliability tests are in test_reliability_audiences.py and test_reliability_api_key.py.
"""

from __future__ import annotations

import random
import shutil
import signal
from pathlib import Path

import dagster as dg
import pytest

from ac_pipeline.definitions import build_definitions
from ac_pipeline.sandbox import SandboxServer
from ac_pipeline.settings import Paths
from ac_pipeline_tests.fixtures.pipeline import Pipeline, materialization, quoted
from ac_pipeline_tests.sync.reliability_helpers import (
    AUDIENCES,
    BULK,
    MAX_IN_FLIGHT,
    POLL,
    STORM,
    SYNC_STEP,
    assert_in_step,
    bulk_accepted,
    bulk_batches,
    listed,
    requests_total,
    run_crash_child,
    use_sandbox,
)

# -- fault storm ---------------------------------------------------------------------------------------


def test_every_audience_syncs_exactly_through_a_fault_storm(pipeline: Pipeline) -> None:
    admin = pipeline.sandbox.admin
    instance = dg.DagsterInstance.ephemeral()  # runs the RetryPolicy in process, should a step need it
    admin.set_faults(STORM, seed=3)
    for key in AUDIENCES:
        result = pipeline.sync(key, instance=instance)
        assert result.success, key
        assert materialization(result, SYNC_STEP)["adds"] == len(pipeline.audience(key)) > 0
    for key in AUDIENCES:
        assert_in_step(pipeline, key)

    # An incremental change under the same storm: people leave and join audiences, fields change, and a
    # handful of changes to welcome_series goes the one-by-one way.
    pipeline.execute(
        "UPDATE customers SET loyalty_tier = 'bronze' WHERE loyalty_tier IN ('gold', 'platinum') AND customer_id % 17 = 0"
    )
    pipeline.execute("UPDATE customers SET first_name = 'Storm' WHERE customer_id % 41 = 0")
    pipeline.execute(
        "UPDATE customers SET last_order_date = DATE '2026-10-20' WHERE order_count >= 2 AND customer_id % 13 = 0"
    )
    pipeline.execute("UPDATE customers SET city = 'Halifax' WHERE country = 'CA' AND customer_id % 23 = 0")
    leaving = sorted(pipeline.audience("welcome_series"))[:4]
    pipeline.execute(f"UPDATE customers SET order_count = 1 WHERE lower(trim(email)) IN ({quoted(leaving)})")
    admin.set_faults(STORM, seed=4)
    for key in AUDIENCES:
        result = pipeline.sync(key, instance=instance)
        assert result.success, key
        pushed = materialization(result, SYNC_STEP)
        assert pushed["updates"] + pushed["removals"] + pushed["adds"] > 0, key
        assert pushed["failed"] == 0
        if key == "welcome_series":
            assert pushed["batches"] == 0 and pushed["removals"] == len(leaving)  # one by one
    for key in AUDIENCES:
        assert_in_step(pipeline, key)
    statuses = admin.requests()["by_status"]
    assert {"500", "503", "429", "dropped"} <= set(statuses), statuses  # the storm did hit

    # Nothing is left unconfirmed: without faults, another sync of everything sends nothing.
    admin.set_faults(None)
    before = requests_total(pipeline.sandbox)
    for key in AUDIENCES:
        result = pipeline.sync(key, instance=instance)
        # One read per push: the list is still the one the snapshot describes.
        assert result.success and materialization(result, SYNC_STEP)["requests"] == 1
    assert requests_total(pipeline.sandbox) == before + len(AUDIENCES)


# -- crashes -------------------------------------------------------------------------------------------

CRASH_SPEED = 5.0
CRASH_AUDIENCE = "lapsed_buyers"  # ~4,900 members: 20 bulk imports


def crash_trials(seed: int) -> list[tuple[str, int]]:
    """(how the child dies, parameter): self-kills at exact points, then SIGKILLs from outside mid-push,
    once the sandbox has accepted a seeded number of bulk imports (while batches are being sent) or
    answered a seeded number of import/info polls (while they are being confirmed and committed)."""
    rng = random.Random(seed)
    return [
        ("members-write", 0),
        ("changes-write", 0),
        ("before-commit", 1),
        ("after-commit", 1),
        *[("kill-after-bulk", rng.randint(1, 14)) for _ in range(2)],
        *[("kill-after-polls", rng.randint(3, 18)) for _ in range(2)],
    ]


def progress(sandbox: SandboxServer, how: str) -> int:
    """Bulk imports accepted, or import/info polls answered, so far."""
    path = BULK if how == "kill-after-bulk" else POLL
    return int(sandbox.admin.requests()["by_path_status"].get(path, {}).get("200", 0))


def fresh_start(pipeline: Pipeline) -> None:
    """An empty account and no sync state: each trial starts a first sync from nothing."""
    pipeline.sandbox.admin.reset()
    for leftover in (pipeline.home.state, Path(f"{pipeline.home.state}.wal")):
        leftover.unlink(missing_ok=True)
    shutil.rmtree(pipeline.home.assets, ignore_errors=True)


def test_a_sync_killed_at_random_points_resumes_without_drift_or_resending(
    home: Paths, make_sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sandbox = make_sandbox(speed=CRASH_SPEED)
    use_sandbox(monkeypatch, sandbox)
    pipeline = Pipeline(home=home, sandbox=sandbox, defs=build_definitions())
    for trial, (how, n) in enumerate(crash_trials(seed=3)):
        fresh_start(pipeline)
        die_in = {
            "members-write": how,
            "changes-write": how,
            "before-commit": f"before-commit:{n}",
            "after-commit": f"after-commit:{n}",
        }.get(how, "")
        returncode = run_crash_child(
            CRASH_AUDIENCE,
            die_in,
            tmp_path / f"child-{trial}.log",
            (lambda how=how, n=n: progress(sandbox, how) >= n) if how.startswith("kill-after-") else None,
        )
        log = (tmp_path / f"child-{trial}.log").read_text(errors="replace")
        assert returncode == -signal.SIGKILL, (trial, how, n, returncode, log[-3000:])

        # What the kill left: in-flight imports finish on their own; the snapshot (its WAL replayed by
        # DuckDB on open) holds only what ActiveCampaign has.
        sandbox.admin.wait_for_imports()
        if how == "after-commit":
            assert Path(f"{home.state}.wal").exists()  # the last commit lives only in the WAL
        confirmed = pipeline.snapshot_members(CRASH_AUDIENCE)
        assert confirmed <= listed(pipeline, CRASH_AUDIENCE), (trial, how)
        if how == "after-commit":
            # The commit the process died right after survived: the child said what it had committed.
            assert f"committed {len(confirmed)} members" in log, (len(confirmed), log[-3000:])
            assert confirmed
        if how == "before-commit":
            assert "dying before COMMIT" in log, log[-3000:]
            assert not confirmed  # the first commit never happened: nothing is confirmed
            assert bulk_accepted(sandbox) > 0
        if how in ("members-write", "changes-write"):
            assert not confirmed and bulk_accepted(sandbox) == 0
            assert list(home.assets.rglob("*.parquet.partial"))  # the half-written file is there...
        if how.startswith("kill-after-"):
            assert progress(sandbox, how) >= n
        accepted_before = bulk_accepted(sandbox)

        resumed = pipeline.sync(CRASH_AUDIENCE)
        assert resumed.success, (trial, how)
        members = pipeline.audience(CRASH_AUDIENCE)
        assert_in_step(pipeline, CRASH_AUDIENCE)  # ...and did no harm; no contact lost
        unconfirmed = len(members) - len(confirmed)
        pushed = materialization(resumed, SYNC_STEP)
        assert pushed["adds"] == unconfirmed, (trial, how)
        # Only what the snapshot did not hold was sent again: at most the batches in flight at the kill.
        resent = bulk_accepted(sandbox) - accepted_before
        assert resent == bulk_batches(unconfirmed), (trial, how)
        assert accepted_before + resent <= bulk_batches(len(members)) + MAX_IN_FLIGHT
        assert pipeline.state.snapshot_counts(CRASH_AUDIENCE)["member"] == len(members)
