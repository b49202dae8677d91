"""The pipeline as Dagster runs it when something is wrong: one audience failing among partitioned runs and
re-executed from failure, the removal guard standing between a broken table and the list, and
configuration errors that are not retried.
"""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest

from ac_pipeline_tests.fixtures.pipeline import Pipeline, materialization
from ac_pipeline_tests.sync.orchestration_helpers import (
    KEYS,
    PARTITION_TAG,
    PUSH,
    WELCOME_LIST_CREATED,
    WELCOME_LIST_MUST_EXIST,
    execute,
    failure_message,
    started_steps,
    step_events,
    write_audiences,
)

# --- partitioned runs, one audience fails, re-execution from failure -----------------------------


def test_a_failed_audience_is_re_executed_alone_from_failure(pipeline: Pipeline, instance: dg.DagsterInstance) -> None:
    # The welcome series' list must exist already, and does not: its push fails, the others do not.
    write_audiences(pipeline.home, (WELCOME_LIST_CREATED, WELCOME_LIST_MUST_EXIST))
    runs = {key: execute(instance, key) for key in KEYS}

    for key, result in runs.items():
        assert instance.get_run_by_id(result.run_id).tags[PARTITION_TAG] == key
        if key == "welcome_series":
            continue
        assert result.success, key
        assert pipeline.listed(key) == pipeline.audience(key) == pipeline.snapshot_members(key)
    failed = runs["welcome_series"]
    assert not failed.success
    kinds = [(kind, step) for kind, step, _ in step_events(instance, failed.run_id)]
    assert ("STEP_SUCCESS", "audience_members") in kinds and ("STEP_SUCCESS", "audience_changes") in kinds
    assert ("STEP_FAILURE", PUSH) in kinds
    assert not [k for k in kinds if k[0] == "STEP_UP_FOR_RETRY"]  # a configuration error is not retried
    assert "Welcome series" in failure_message(failed.all_events)
    assert pipeline.state.snapshot("welcome_series").is_empty()
    assert set(instance.get_materialized_partitions(dg.AssetKey(PUSH))) == set(KEYS) - {"welcome_series"}

    # Someone fixes audiences.yaml and re-executes the failed run from failure.
    write_audiences(pipeline.home, (WELCOME_LIST_MUST_EXIST, WELCOME_LIST_CREATED))
    others = {key: pipeline.listed(key) for key in KEYS if key != "welcome_series"}
    before = pipeline.sandbox.admin.requests()["total"]
    # execute_job does not carry the parent's tags over (the UI does): name the partition again.
    again = execute(
        instance, "welcome_series", reexecution_options=dg.ReexecutionOptions.from_failure(failed.run_id, instance)
    )
    assert again.success
    run = instance.get_run_by_id(again.run_id)
    assert run.parent_run_id == failed.run_id and run.tags[PARTITION_TAG] == "welcome_series"
    # Only the push runs again: the audience and its changes come from the failed run's outputs.
    assert started_steps(instance, again.run_id) == {PUSH}
    pushed = materialization(again, PUSH)
    assert pushed["adds"] == pushed["confirmed"] == len(pipeline.audience("welcome_series")) > 0
    # Everything ActiveCampaign received was this audience's push, and nobody else's list moved.
    assert pipeline.sandbox.admin.requests()["total"] - before == pushed["requests"]
    assert {key: pipeline.listed(key) for key in others} == others
    assert pipeline.listed("welcome_series") == pipeline.audience("welcome_series")
    ran = pipeline.state.runs()
    assert set(ran.filter(pl.col("run_id") == again.run_id).get_column("audience")) == {"welcome_series"}
    assert set(instance.get_materialized_partitions(dg.AssetKey(PUSH))) == set(KEYS)
    for key in KEYS:  # one materialization of each audience's list, the re-executed one included
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(PUSH), asset_partitions=[key]), limit=10
        ).records
        assert len(records) == 1, key


# --- the removal guard --------------------------------------------------------------------------


def test_the_removal_guard_stops_the_push_before_anything_is_sent(pipeline: Pipeline) -> None:
    assert pipeline.sync("welcome_series").success
    listed = pipeline.listed("welcome_series")
    assert listed == pipeline.audience("welcome_series") and listed

    pipeline.execute("UPDATE customers SET email_consent = NULL")  # a broken upstream load: nobody qualifies
    before = pipeline.sandbox.admin.requests()["total"]
    blocked = pipeline.sync("welcome_series")
    assert not blocked.success
    started = {e.step_key for e in blocked.all_events if e.event_type_value == "STEP_START"}
    assert started == {"audience_members", "audience_changes"}  # the push never started
    [verdict] = [e.event_specific_data for e in blocked.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert not verdict.passed and "ac_pipeline/allow_removals" in verdict.description
    assert pipeline.sandbox.admin.requests()["total"] == before
    assert pipeline.listed("welcome_series") == listed
    assert pipeline.snapshot_members("welcome_series") == listed

    allowed = pipeline.sync("welcome_series", tags={"ac_pipeline/allow_removals": "welcome_series"})
    assert allowed.success
    assert materialization(allowed, PUSH)["removals"] == len(listed)
    assert pipeline.listed("welcome_series") == set()
    assert pipeline.snapshot_members("welcome_series") == set()


# --- configuration errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("partition", "replacement", "expected"),
    [
        pytest.param(
            "welcome_series",
            (WELCOME_LIST_CREATED, WELCOME_LIST_MUST_EXIST),
            ["'Welcome series'", "Create it", "list.create: true"],
            id="missing-list",
        ),
        pytest.param(
            "vip_customers",
            ("group: Admin ", "group: Marketing team "),
            ["'Marketing team'", "there are: Admin", "list.group"],
            id="unknown-group",
        ),
    ],
)
def test_a_configuration_error_fails_clearly_and_is_not_retried(
    pipeline: Pipeline, partition: str, replacement: tuple[str, str], expected: list[str]
) -> None:
    write_audiences(pipeline.home, replacement)
    result = pipeline.sync(partition)
    assert not result.success
    message = failure_message(result.all_events)
    for text in expected:
        assert text in message, message
    assert pipeline.sandbox.api_key not in message
    kinds = [e.event_type_value for e in result.all_events if e.step_key == PUSH]
    assert "STEP_UP_FOR_RETRY" not in kinds and "STEP_RESTARTED" not in kinds
    assert kinds.count("STEP_START") == 1 and kinds.count("STEP_FAILURE") == 1
    # Nothing was sent for it: no contacts, no list.
    assert not any(
        path.startswith(("POST /api/3/import", "POST /api/3/contact", "POST /api/3/lists"))
        for path in pipeline.sandbox.admin.requests()["by_path"]
    )
    assert pipeline.state.snapshot(partition).is_empty()
