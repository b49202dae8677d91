"""The production Dagster instance, deploy/dagster.yaml, loaded as written against this machine's Postgres: its
storages are Postgres, the `activecampaign` pool allows one push, and the `audience_sync` job runs on it for
real (the push waits for a slot held by another run, then syncs the list).
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.instance.config import PoolGranularity
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from ac_pipeline_tests.conftest import REPO
from ac_pipeline_tests.deploy.postgres import PostgresDatabase
from ac_pipeline_tests.fixtures.pipeline import Pipeline

DAGSTER_YAML = REPO / "deploy" / "dagster.yaml"
POOL, PUSH = "activecampaign", "activecampaign_sync"
# The smallest sample audience: the test is about the instance, not the volume.
AUDIENCE = "newsletter_canada"


@pytest.fixture
def production_instance(
    postgres_database: PostgresDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dg.DagsterInstance:
    """deploy/dagster.yaml, unchanged, in a Dagster home of its own, with the scratch database's coordinates in
    the environment variables it reads."""
    for name, value in postgres_database.dagster_env().items():
        monkeypatch.setenv(name, value)
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(DAGSTER_YAML, dagster_home / "dagster.yaml")
    return dg.DagsterInstance.from_config(str(dagster_home))


def _wait_until(condition, what: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {seconds:g} s"
        time.sleep(0.1)


def test_the_production_instance_is_postgres_with_one_push_at_a_time(
    production_instance: dg.DagsterInstance,
) -> None:
    with production_instance as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert instance.event_log_storage.supports_global_concurrency_limits
        # Through psycopg2, as dagster-postgres expects: with psycopg 3 installed, a plain postgresql:// URL
        # would go through it (SQLAlchemy 2.1) and the first event would fail (see deploy/dagster.yaml).
        for storage in (instance.run_storage, instance.event_log_storage, instance.schedule_storage):
            assert storage.postgres_url.startswith("postgresql+psycopg2://"), type(storage).__name__
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)

        pools = instance.get_concurrency_config().pool_config
        assert pools.default_pool_limit == 1 and pools.pool_granularity == PoolGranularity.OP
        # The pool exists in the database once something uses it; it takes the default limit.
        instance.event_log_storage.initialize_concurrency_limit_to_default(POOL)
        info = instance.event_log_storage.get_concurrency_info(POOL)
        assert info.limit == 1 and info.slot_count == 1

        monitoring = instance.run_monitoring_settings
        assert monitoring["enabled"] and monitoring["free_slots_after_run_end_seconds"] > 0
        assert monitoring["max_resume_run_attempts"] == 0  # the default run launcher cannot resume
        assert instance.run_monitoring_enabled
        assert not instance.telemetry_enabled


def test_audience_sync_runs_on_the_production_instance(
    pipeline: Pipeline, production_instance: dg.DagsterInstance, postgres_database: PostgresDatabase
) -> None:
    with production_instance as instance:
        storage = instance.event_log_storage
        # Another run holds the pool's one slot: the push must wait for it, in Postgres.
        storage.initialize_concurrency_limit_to_default(POOL)
        assert storage.claim_concurrency_slot(POOL, "holder-run", "holder-step").is_claimed

        outcome: dict[str, object] = {}

        def run() -> None:
            try:
                outcome["result"] = pipeline.sync(AUDIENCE, instance=instance)
            except BaseException as error:  # surfaced by the assertions below
                outcome["error"] = error

        worker = threading.Thread(target=run, name="audience_sync", daemon=True)
        worker.start()
        try:
            _wait_until(
                lambda: (
                    not worker.is_alive()
                    or any(step.step_key == PUSH for step in storage.get_concurrency_info(POOL).pending_steps)
                ),
                f"{PUSH} waiting for the {POOL} pool",
            )
            assert worker.is_alive(), f"the run ended while another run held the pool's only slot: {outcome}"
            with postgres_database.connect() as connection:
                [run_id] = {s.run_id for s in storage.get_concurrency_info(POOL).pending_steps if s.step_key == PUSH}
                started = connection.execute(
                    "SELECT step_key FROM event_logs WHERE run_id = %s AND dagster_event_type = 'STEP_START'",
                    (run_id,),
                ).fetchall()
                assert (PUSH,) not in started, "the push started while another run held the pool's only slot"
        finally:
            storage.free_concurrency_slots_for_run("holder-run")
            worker.join(timeout=120)
        assert not worker.is_alive(), "the run did not end within 120 s"
        assert "error" not in outcome, outcome.get("error")
        result = outcome["result"]
        assert isinstance(result, dg.ExecuteInProcessResult)
        assert result.success, [e.message for e in result.all_events if e.is_failure]
        assert result.run_id == run_id

        # The run, its events and the pool are rows in this Postgres database (not a SQLite file in the home).
        with postgres_database.connect() as connection:
            [(status, partition)] = connection.execute(
                "SELECT status, partition FROM runs WHERE run_id = %s", (run_id,)
            ).fetchall()
            assert (status, partition) == ("SUCCESS", AUDIENCE)
            events = connection.execute(
                "SELECT dagster_event_type, step_key FROM event_logs WHERE run_id = %s", (run_id,)
            ).fetchall()
            materialized = connection.execute(
                "SELECT DISTINCT asset_key FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
                (run_id,),
            ).fetchall()
            [(limit,)] = connection.execute(
                'SELECT "limit" FROM concurrency_limits WHERE concurrency_key = %s', (POOL,)
            ).fetchall()
            slots = connection.execute(
                "SELECT run_id FROM concurrency_slots WHERE concurrency_key = %s AND NOT deleted", (POOL,)
            ).fetchall()
        # Event types as stored (a run's success is still PIPELINE_SUCCESS in the table).
        assert (dg.DagsterEventType.RUN_SUCCESS.value, None) in events
        assert (dg.DagsterEventType.STEP_SUCCESS.value, PUSH) in events
        assert {key for (key,) in materialized} == {
            dg.AssetKey(name).to_string() for name in ("audience_members", "audience_changes", PUSH)
        }
        assert limit == 1 and slots == [(None,)], "the pool should have one slot, free after the run"
        assert not list(Path(instance.root_directory).rglob("*.db")), "a SQLite file in the Dagster home"

    # And the list is the audience.
    audience = pipeline.audience(AUDIENCE)
    assert audience and pipeline.listed(AUDIENCE) == audience
