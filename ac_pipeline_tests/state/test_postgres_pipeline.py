"""The pipeline with its sync state on Postgres (AC_PIPELINE_STATE=postgresql://...), through real Dagster runs
against a real sandbox: adds, updates, removals, a person's own unsubscribe and a read-back land in Postgres,
and the list matches the audience and the snapshot contact by contact."""

from __future__ import annotations

import polars as pl
import pytest

from ac_pipeline.definitions import build_definitions
from ac_pipeline.sandbox import SandboxServer
from ac_pipeline.settings import Paths, paths
from ac_pipeline.state.postgres_backend import PostgresBackend
from ac_pipeline_tests.deploy.postgres import PostgresDatabase
from ac_pipeline_tests.fixtures.pipeline import Pipeline, materialization, quoted
from ac_pipeline_tests.fixtures.sandbox import point_at

AUDIENCE = "newsletter_canada"


def test_syncs_keep_their_state_in_postgres(
    home: Paths, sandbox: SandboxServer, postgres_database: PostgresDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The URL as Dagster's own storage takes it (DAGSTER_PG_URL, postgresql+psycopg2://): one URL serves both.
    url = postgres_database.dagster_env()["DAGSTER_PG_URL"]
    monkeypatch.setenv("AC_PIPELINE_STATE", url)
    point_at(monkeypatch, sandbox)
    pipeline = Pipeline(home=paths(), sandbox=sandbox, defs=build_definitions())
    assert pipeline.home.state == url
    assert isinstance(pipeline.state.backend, PostgresBackend)

    def sync() -> dict:
        result = pipeline.sync(AUDIENCE)
        assert result.success, [e.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        return materialization(result, "activecampaign_sync")

    def in_step() -> None:
        audience = pipeline.audience(AUDIENCE)
        assert pipeline.listed(AUDIENCE) == audience
        assert pipeline.snapshot_members(AUDIENCE) == audience

    first = sync()
    assert first["adds"] > 0
    in_step()
    members = sorted(pipeline.audience(AUDIENCE))
    leaving, renamed, unsubscribing = members[:20], members[20:40], members[40]
    pipeline.execute(f"UPDATE customers SET newsletter_opt_in = false WHERE lower(trim(email)) IN ({quoted(leaving)})")
    pipeline.execute(f"UPDATE customers SET first_name = 'Renamed' WHERE lower(trim(email)) IN ({quoted(renamed)})")
    list_name = pipeline.defs.resources["audiences"].load().get(AUDIENCE).list.name
    sandbox.admin.unsubscribe(unsubscribing, list_name)
    # The read-back brings the unsubscribe home, into the Postgres snapshot.
    reconcile = pipeline.defs.resolve_job_def("list_reconcile").execute_in_process(
        partition_key=AUDIENCE, raise_on_error=False
    )
    assert reconcile.success
    second = sync()
    assert second["removals"] == len(leaving) and second["updates"] >= len(renamed)
    assert pipeline.listed(AUDIENCE) == pipeline.audience(AUDIENCE) - {unsubscribing}
    assert pipeline.snapshot_members(AUDIENCE) == pipeline.audience(AUDIENCE) - {unsubscribing}
    snapshot = pipeline.state.snapshot(AUDIENCE)
    assert snapshot.filter(pl.col("email") == unsubscribing)["status"].to_list() == ["opted_out"]
    assert set(snapshot.filter(pl.col("status") == "removed")["email"]) == set(leaving)
    # A third sync finds nothing to send, and the ledger and runs are in Postgres too.
    assert sync()["adds"] == 0
    ledger = pipeline.state.ledger(AUDIENCE)
    assert set(ledger.filter(pl.col("op") == "remove")["email"]) == set(leaving)
    assert pipeline.state.runs(AUDIENCE).height == 3
    # Nothing was written to a local state file.
    assert not (home.home / "state.duckdb").exists()
