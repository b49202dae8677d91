"""A run killed with SIGKILL keeps its `activecampaign` pool slot, and every later push would wait behind it.

Two ways out, both tested against a real (SQLite) Dagster instance with real processes killed in the pool:
the demo marks its own dead runs failed and frees their slots (`free_dead_runs`), and Dagster's run
monitoring, as configured by the dagster.yaml the demo writes, frees the slots of runs that ended.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from ac_pipeline.demo import DAGSTER_YAML, PID_TAG, SOURCE_TAG, free_dead_runs
from ac_pipeline.sandbox import SandboxServer
from ac_pipeline.settings import Paths
from ac_pipeline_tests.fixtures.pool import HOLDER, PUSH_ONE, dagster_home, holders, kill, start, wait_for_holder
from ac_pipeline_tests.fixtures.sandbox import point_at

REPO = Path(__file__).resolve().parent.parent


def _waiting(instance: dg.DagsterInstance) -> set[str]:
    """The runs with a step waiting for a slot of the pool."""
    info = instance.event_log_storage.get_concurrency_info("activecampaign")
    return {step.run_id for step in info.pending_steps if step.assigned_timestamp is None}


def test_the_demo_s_dagster_yaml_turns_on_run_monitoring_that_frees_slots(tmp_path: Path) -> None:
    with dg.DagsterInstance.from_config(str(dagster_home(tmp_path / "dagster_home"))) as instance:
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_max_resume_run_attempts == 0  # the default launcher cannot resume
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] > 0
        assert instance.event_log_storage.get_concurrency_info("activecampaign").limit == 1


def test_a_push_killed_in_the_pool_no_longer_blocks_the_next_once_the_demo_cleans_up(
    home: Paths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each bulk import takes 4 s (at speed 100): the push is still in the pool when it is killed.
    with SandboxServer(api_key="test-sandbox-key", speed=100.0, import_delay=400) as sandbox:
        point_at(monkeypatch, sandbox)
        where = dagster_home(tmp_path / "dagster_home")
        with dg.DagsterInstance.from_config(str(where)) as instance:
            push = start(PUSH_ONE, "newsletter_canada", home=where, cwd=REPO)
            try:
                dead = wait_for_holder(instance, push)
                os.kill(push.pid, signal.SIGKILL)
            finally:
                kill(push)
            # The dead run still says it is running, and holds the pool's one slot: the next push would wait.
            run = instance.get_run_by_id(dead)
            assert run is not None and run.status == dg.DagsterRunStatus.STARTED
            assert run.tags[SOURCE_TAG] == "demo" and run.tags[PID_TAG] == str(push.pid)
            assert holders(instance) == {dead}

            # The next push (another audience) waits behind the dead run.
            env = {**os.environ, "DAGSTER_HOME": str(where)}
            with open(tmp_path / "next.log", "w") as log:
                following = subprocess.Popen(
                    [sys.executable, "-c", PUSH_ONE, "welcome_series"], env=env, cwd=REPO, stdout=log, stderr=log
                )
            try:
                deadline = time.monotonic() + 60
                while not _waiting(instance) and time.monotonic() < deadline:
                    assert following.poll() is None, (tmp_path / "next.log").read_text()[-3000:]
                    time.sleep(0.1)
                [waiting] = _waiting(instance)
                assert holders(instance) == {dead}

                # A live run of the demo is left alone; the dead one is failed and its slot freed.
                assert free_dead_runs(instance, pid=os.getpid()) == []
                lines = free_dead_runs(instance)
                assert len(lines) == 1 and dead in lines[0] and "newsletter_canada" in lines[0], lines
                run = instance.get_run_by_id(dead)
                assert run is not None and run.status == dg.DagsterRunStatus.FAILURE
                assert free_dead_runs(instance) == []  # nothing left to clean

                # The waiting push takes the slot and finishes.
                following.wait(timeout=120)
            finally:
                kill(following)
            output = (tmp_path / "next.log").read_text()
            assert following.returncode == 0 and f"RUN {waiting} True" in output, output[-3000:]
            assert holders(instance) == set()
            # It said so at INFO level, in its own log.
            waited = [
                entry
                for entry in instance.all_logs(waiting)
                if "for a slot of the 'activecampaign' pool" in (entry.message or "")
            ]
            assert [entry.level for entry in waited] == [logging.INFO], waited
        members = pl.read_parquet(home.assets / "audience_members" / "welcome_series.parquet")
        expected = set(members.filter(pl.col("status") == "member").get_column("email"))
        assert expected and set(sandbox.admin.members("Welcome series", status=1)) == expected


# The holder's job as a code location, for the daemon to load.
HOLDER_DEFS = """
import time
import dagster as dg

@dg.op(pool="activecampaign")
def hold_the_pool():
    time.sleep(600)

@dg.job
def holder():
    hold_the_pool()

defs = dg.Definitions(jobs=[holder])
"""


def test_run_monitoring_frees_the_slot_of_a_dead_run_marked_failed(tmp_path: Path) -> None:
    """Under `dagster dev` the code server marks a run failed when its process dies (reported here as it
    reports it); run monitoring, in the daemon, then frees the slot the run still holds."""
    fast = DAGSTER_YAML.replace("poll_interval_seconds: 30", "poll_interval_seconds: 1").replace(
        "free_slots_after_run_end_seconds: 30", "free_slots_after_run_end_seconds: 1"
    )
    assert fast != DAGSTER_YAML
    where = dagster_home(tmp_path / "dagster_home", fast)
    (tmp_path / "holder_defs.py").write_text(HOLDER_DEFS)
    with dg.DagsterInstance.from_config(str(where)) as instance:
        holder = start(HOLDER, "ui", home=where)
        try:
            dead = wait_for_holder(instance, holder)
        finally:
            kill(holder)
        run = instance.get_run_by_id(dead)
        assert run is not None and run.status == dg.DagsterRunStatus.STARTED
        instance.report_run_failed(run, "Run execution process exited unexpectedly (killed).")
        assert holders(instance) == {dead}  # failing the run does not free its slot by itself

        daemon = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-f", str(tmp_path / "holder_defs.py")],
            env={**os.environ, "DAGSTER_HOME": str(where)},
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "daemon.log", "w"),  # noqa: SIM115 - handed to the child
            start_new_session=True,  # stopped with its group's SIGINT (it ignores a lone SIGINT in background)
        )
        try:
            deadline = time.monotonic() + 60
            while holders(instance) and time.monotonic() < deadline:
                assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()[-3000:]
                time.sleep(0.5)
            assert holders(instance) == set(), (tmp_path / "daemon.log").read_text()[-3000:]
        finally:
            os.killpg(daemon.pid, signal.SIGINT)
            try:
                daemon.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
                daemon.wait(timeout=10)
