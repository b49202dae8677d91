"""What an operator reads in the Dagster UI, through real in-process runs on a sandbox: each audience has its own
removal-guard status, a held-back sync's failed step says why and what to do, and metadata is explained and never
blank."""

from __future__ import annotations

import dagster as dg
from dagster._core.event_api import PartitionKeyFilter

from ac_pipeline.defs.audiences.checks import REMOVAL_GUARD
from ac_pipeline.defs.meanings import ACTIVECAMPAIGN_SYNC, AUDIENCE_CHANGES, AUDIENCE_MEMBERS, LIST_MEMBERS
from ac_pipeline.defs.metadata import LEGEND, is_empty, meaning
from ac_pipeline_tests.fixtures.pipeline import Pipeline
from ac_pipeline_tests.sync.orchestration_helpers import WELCOME_LIST_CREATED, WELCOME_LIST_MUST_EXIST, write_audiences

GUARD = dg.AssetCheckKey(dg.AssetKey("audience_changes"), REMOVAL_GUARD)
BLOCKED, PASSING = "welcome_series", "vip_customers"
MEANINGS = {
    "audience_members": AUDIENCE_MEMBERS,
    "audience_changes": AUDIENCE_CHANGES,
    "activecampaign_sync": ACTIVECAMPAIGN_SYNC,
    "activecampaign_list_members": LIST_MEMBERS,
}


def _latest_guard(instance: dg.DagsterInstance, partition: str):
    [record] = instance.event_log_storage.get_asset_check_execution_history(
        GUARD, limit=1, partition_filter=PartitionKeyFilter(key=partition)
    )
    return record.event.dagster_event.event_specific_data


def test_each_audience_has_its_own_guard_status_and_a_blocked_one_says_why(pipeline: Pipeline) -> None:
    instance = dg.DagsterInstance.ephemeral()
    assert pipeline.sync(BLOCKED, instance=instance).success
    pipeline.execute("UPDATE customers SET email_consent = NULL WHERE lifetime_value < 1000000")  # a broken load
    blocked = pipeline.sync(BLOCKED, instance=instance)
    assert not blocked.success
    # A later passing audience does not turn the blocked one's status back to passed.
    passing = pipeline.sync(PASSING, instance=instance, tags={"ac_pipeline/allow_removals": PASSING})
    assert passing.success

    held, passed = _latest_guard(instance, BLOCKED), _latest_guard(instance, PASSING)
    assert not held.passed and held.partition == BLOCKED and held.description.startswith(f"{BLOCKED} (list ")
    assert passed.passed and passed.partition == PASSING and passed.description.startswith(f"{PASSING} (list ")
    assert held.metadata["audience"].value == BLOCKED and passed.metadata["audience"].value == PASSING

    # The failed step is a dg.Failure that carries the verdict and what to do, not Dagster's bare message.
    [failure] = [e for e in blocked.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failure.step_key == "audience_changes"
    user = failure.step_failure_data.user_failure_data
    assert user is not None, failure.step_failure_data.error.message
    assert "blocking asset check failed" not in user.description
    assert BLOCKED in user.description and "the audience is empty" in user.description
    assert "ac_pipeline/allow_removals" in user.description
    assert "ac_pipeline/allow_removals" in user.metadata["what_to_do"].value
    started = {e.step_key for e in blocked.all_events if e.event_type_value == "STEP_START"}
    assert "activecampaign_sync" not in started


def test_metadata_is_explained_never_blank_and_previews_have_no_empty_column(pipeline: Pipeline) -> None:
    first = pipeline.sync(PASSING)
    again = pipeline.sync(PASSING)  # nothing changed: the run that showed a blank list_id
    read = pipeline.defs.resolve_job_def("list_reconcile").execute_in_process(
        partition_key=PASSING, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )
    assert first.success and again.success and read.success
    for result in (first, again, read):
        for event in result.get_asset_materialization_events():
            asset = event.asset_key.to_user_string()
            metadata = event.materialization.metadata
            meanings = MEANINGS[asset]
            assert LEGEND in metadata, asset
            for key, value in metadata.items():
                assert not is_empty(value), (asset, key)
                if key == LEGEND:
                    continue
                assert meaning(key, meanings), (asset, key)
                assert f"`{key}`" in metadata[LEGEND].value, (asset, key)
            for name in ("preview", "not_members_by_reason", "drift_sample"):
                if name in metadata:
                    _assert_no_empty_column(metadata[name].value, (asset, name))


def _assert_no_empty_column(table: str, where: tuple[str, str]) -> None:
    rows = [line for line in table.splitlines() if line.startswith("|")]
    if not rows:
        return
    cells = [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows[2:]]
    for index, column in enumerate(rows[0].strip("|").split(" | ")):
        assert any(row[index] for row in cells), (*where, column.strip())


def test_a_failed_push_says_why_and_what_to_do(pipeline: Pipeline) -> None:
    write_audiences(pipeline.home, (WELCOME_LIST_CREATED, WELCOME_LIST_MUST_EXIST))  # the list does not exist
    result = pipeline.sync(BLOCKED)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    user = failure.step_failure_data.user_failure_data
    assert failure.step_key == "activecampaign_sync" and user is not None
    assert user.description.startswith(f"Sync of audience '{BLOCKED}' (list 'Welcome series') stopped: ")
    assert "'Welcome series'" in user.metadata["reason"].value and "What to do: " in user.description
    assert user.metadata["audience"].value == BLOCKED and user.metadata["retried"].value is False
    assert user.metadata["what_to_do"].value and pipeline.sandbox.api_key not in user.description


def test_the_dry_run_logs_a_sentence(pipeline: Pipeline) -> None:
    instance = dg.DagsterInstance.ephemeral()
    result = pipeline.sync(PASSING, instance=instance, tags={"ac_pipeline/dry_run": "true"})
    assert result.success
    [line] = [e.user_message for e in instance.all_logs(result.run_id) if "Dry run" in e.user_message]
    assert line.startswith(f"Dry run of audience '{PASSING}' (list ") and line.endswith(".")
    assert "{" not in line and "it would send " in line
