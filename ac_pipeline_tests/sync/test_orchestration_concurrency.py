"""The pipeline as Dagster runs it side by side: the `activecampaign` concurrency pool letting one push
per account at a time, and a run waiting while another run's push writes the sync state.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from ac_pipeline.definitions import build_definitions
from ac_pipeline.sandbox import SandboxServer
from ac_pipeline.settings import Paths
from ac_pipeline_tests.fixtures.pipeline import QUIET, Pipeline
from ac_pipeline_tests.fixtures.sandbox import point_at
from ac_pipeline_tests.sync.orchestration_helpers import (
    JOB,
    PARTITION_TAG,
    PUSH,
    REPO,
    failure_message,
    instance_dir,
    step_events,
)

# --- one push per account at a time -----------------------------------------------------------

# Each run is its own process, as runs launched from the UI are (Dagster's in-process APIs are not
# safe to call from several threads at once: two execute_job calls in threads deadlock on logging).
# It loads everything first, then waits for the test's word, so that the test decides when it starts.
RUN_ONE = """
import sys
import dagster as dg
from ac_pipeline_tests.fixtures.pipeline import QUIET
from ac_pipeline_tests.sync.orchestration_helpers import audience_sync_job

with dg.DagsterInstance.get() as instance:
    print("ready", flush=True)
    sys.stdin.readline()
    result = dg.execute_job(dg.reconstructable(audience_sync_job), instance, tags={"dagster/partition": sys.argv[1]},
                            run_config=QUIET, asset_selection=[dg.AssetKey("activecampaign_sync")], raise_on_error=False)
    print("RUN", result.run_id, result.success, flush=True)
"""


def _audience_and_changes(defs: dg.Definitions, key: str) -> None:
    """The audience and its changes first (in process: they are files), so that a run of the push alone follows."""
    result = defs.resolve_job_def(JOB).execute_in_process(
        partition_key=key,
        run_config=QUIET,
        instance=dg.DagsterInstance.ephemeral(),
        asset_selection=[dg.AssetKey("audience_members"), dg.AssetKey("audience_changes")],
    )
    assert result.success


def _wait_for_claimed_slot(instance: dg.DagsterInstance, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if instance.event_log_storage.get_concurrency_info("activecampaign").claimed_slots:
            return
        time.sleep(0.05)
    raise AssertionError(f"no push took a slot of the activecampaign pool within {seconds:g} s")


def test_a_push_waits_for_the_pool_while_another_audience_is_pushed(
    home: Paths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each bulk import takes 4 s (at speed 100): the first push outlasts the second run's start.
    with SandboxServer(api_key="test-sandbox-key", speed=100.0, import_delay=400) as sandbox:
        point_at(monkeypatch, sandbox)
        dagster_home = instance_dir(tmp_path / "dagster_home", pool_limit=1)
        first_key, second_key = "newsletter_canada", "welcome_series"
        defs = build_definitions()
        for key in (first_key, second_key):
            _audience_and_changes(defs, key)

        # Opening the instance here creates its storage: two processes creating a fresh SQLite home at
        # once race on its migrations (alembic "more than one head").
        with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
            env = {**os.environ, "DAGSTER_HOME": str(dagster_home)}
            processes = {}
            for key in (first_key, second_key):
                with open(tmp_path / f"{key}.stderr", "w") as stderr:
                    processes[key] = subprocess.Popen(
                        [sys.executable, "-c", RUN_ONE, key],
                        cwd=REPO,
                        env=env,
                        text=True,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=stderr,
                    )
            outputs = {}
            try:
                for key, process in processes.items():
                    assert process.stdout.readline().strip() == "ready", (tmp_path / f"{key}.stderr").read_text()
                # The first push starts; once it holds the pool's one slot, the second run starts.
                processes[first_key].stdin.write("go\n")
                processes[first_key].stdin.flush()
                _wait_for_claimed_slot(instance)
                processes[second_key].stdin.write("go\n")
                processes[second_key].stdin.flush()
                for key, process in processes.items():
                    outputs[key] = process.communicate(timeout=180)[0]
            finally:
                for process in processes.values():
                    if process.poll() is None:
                        process.kill()
                        process.wait(timeout=10)
            for key, process in processes.items():
                assert process.returncode == 0 and " True" in outputs[key], (
                    outputs[key] + (tmp_path / f"{key}.stderr").read_text()[-3000:]
                )

            runs = {
                r.dagster_run.tags[PARTITION_TAG]: r.dagster_run.run_id
                for r in instance.get_run_records(dg.RunsFilter(job_name=JOB))
            }
            assert sorted(runs) == sorted((first_key, second_key))
            spans = {}
            for key, run_id in runs.items():
                events = step_events(instance, run_id, PUSH)
                assert [kind for kind, _, _ in events] == ["STEP_START", "STEP_SUCCESS"], (key, events)
                spans[key] = (events[0][2], events[1][2])
            assert spans[first_key][1] <= spans[second_key][0], f"pushes overlapped: {spans}"
            # The pool did the ordering: the second run waited for the first one's slot.
            blocked = [
                e
                for e in instance.all_logs(runs[second_key])
                if "blocked by limit for pool activecampaign" in (e.message or "")
            ]
            assert blocked
            info = instance.event_log_storage.get_concurrency_info("activecampaign")
            assert info.limit == 1 and not info.claimed_slots
        for key in (first_key, second_key):
            listed = set(sandbox.admin.members(defs.resources["audiences"].load().get(key).list.name))
            members = pl.read_parquet(home.assets / "audience_members" / f"{key}.parquet")
            assert listed == set(members.filter(pl.col("status") == "member").get_column("email"))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/<pid>/stat, in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_run_waiting_for_the_pool_sleeps_and_then_takes_the_slot(
    pipeline: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runs of a backfill wait for the pool while one audience is pushed; they must leave the CPU to it.
    (Dagster's own in-process executor never sleeps in that wait: ac_pipeline/defs/one_process.py.)"""
    key = "welcome_series"
    _audience_and_changes(pipeline.defs, key)
    dagster_home = instance_dir(tmp_path / "dagster_home", pool_limit=1)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        storage = instance.event_log_storage
        storage.set_concurrency_slots("activecampaign", 1)
        assert storage.claim_concurrency_slot("activecampaign", "another-run", PUSH).is_claimed
        process = subprocess.Popen(
            [sys.executable, "-c", RUN_ONE, key],
            cwd=REPO,
            env={**os.environ, "DAGSTER_HOME": str(dagster_home)},
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert process.stdout.readline().strip() == "ready"
            process.stdin.write("go\n")
            process.stdin.flush()
            deadline = time.monotonic() + 120
            while not any(
                "blocked by limit for pool activecampaign" in (e.message or "")
                for record in instance.get_run_records(dg.RunsFilter(job_name=JOB))
                for e in instance.all_logs(record.dagster_run.run_id)
            ):
                assert time.monotonic() < deadline and process.poll() is None, "the run never waited for the pool"
                time.sleep(0.2)
            cpu, wall = _cpu_seconds(process.pid), time.monotonic()
            time.sleep(3.0)
            share = (_cpu_seconds(process.pid) - cpu) / (time.monotonic() - wall)
            assert share < 0.25, f"the waiting run used {share:.0%} of a core while it waited for the pool"
            assert not instance.get_run_records(dg.RunsFilter(job_name=JOB))[0].dagster_run.is_finished
            storage.free_concurrency_slots_for_run("another-run")
            output = process.communicate(timeout=120)[0]
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
    assert " True" in output, output
    assert pipeline.listed(key) == pipeline.audience(key)


# --- runs side by side on one state file -----------------------------------------------------------

# Another run's push committing confirmed contacts: DuckDB lets one process write a file, and while it
# does, no other process may open it, not even to read.
HOLD_THE_STATE = """
import sys
import threading
import duckdb

connection = duckdb.connect(sys.argv[1])
print("holding", flush=True)
sys.stdin.read()  # until the test lets go
connection.close()
"""


def test_a_run_waits_while_another_runs_push_writes_the_sync_state(pipeline: Pipeline) -> None:
    """A backfill of every audience (the UI's way to sync them all) runs the audiences side by side: one
    run's audience_changes reads the snapshot while another run's push commits to it. That must cost a
    short wait, not a failed run (audience_changes has no retry policy)."""
    assert pipeline.sync("welcome_series").success  # the state file exists, as after any first sync
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_STATE, str(pipeline.home.state)],
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        # The other push's commit ends a few seconds later (a real one takes milliseconds; a few seconds
        # leaves no doubt that the run below reaches the state file while it is held).
        release = threading.Timer(4.0, holder.stdin.close)
        release.start()
        try:
            result = pipeline.sync("vip_customers")
        finally:
            release.cancel()
    finally:
        if not holder.stdin.closed:
            holder.stdin.close()
        try:
            holder.wait(timeout=10)
        except subprocess.TimeoutExpired:
            holder.kill()
    assert result.success, failure_message(result.all_events)
    assert pipeline.listed("vip_customers") == pipeline.audience("vip_customers")
