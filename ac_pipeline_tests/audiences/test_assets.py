"""The audience assets through real Dagster runs, on a real DuckDB customer 360 in a temporary folder."""

from __future__ import annotations

import json
import re
from datetime import datetime

import dagster as dg
import duckdb
import polars as pl

from ac_pipeline.definitions import build_definitions
from ac_pipeline.state.store import SyncState


def _run(defs: dg.Definitions, partition: str, tags: dict[str, str] | None = None, run_config: dict | None = None):
    """Materialize the two audience assets (not the push: these tests stand in for it).
    Resolved assets come with their resources bound."""
    assets = [defs.resolve_assets_def(name) for name in ("audience_members", "audience_changes")]
    return dg.materialize(
        assets,
        partition_key=partition,
        tags=tags,
        run_config=run_config,
        raise_on_error=False,
        instance=dg.DagsterInstance.ephemeral(),
    )


def _metadata(result, asset: str) -> dict:
    for event in result.get_asset_materialization_events():
        if event.asset_key == dg.AssetKey(asset):
            return {k: v.value for k, v in event.materialization.metadata.items()}
    raise AssertionError(f"{asset} was not materialized")


def _guard(result):
    return [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]


def _confirm_everything(home, partition: str) -> None:
    """Stand in for a push that ActiveCampaign confirmed in full."""
    changes = pl.read_parquet(home.assets / "audience_changes" / f"{partition}.parquet")
    confirmed = changes.select(
        "email",
        "fields_hash",
        status=pl.when(pl.col("op") == "remove").then(pl.lit("removed")).otherwise(pl.lit("member")),
    )
    SyncState(home.state).commit_confirmed(partition, "test-run", confirmed)


def test_every_definition_loads(home) -> None:
    defs = build_definitions()
    defs.resolve_all_job_defs()
    keys = defs.resolve_job_def("audience_sync").partitions_def.get_partition_keys()
    assert keys == ["vip_customers", "lapsed_buyers", "newsletter_canada", "welcome_series"]


def test_partitions_follow_the_configuration(home) -> None:
    text = (home.audiences).read_text()
    home.audiences.write_text(
        text
        + """
  - key: big_spenders
    list: {name: Big spenders}
    condition: lifetime_value > 1500
    fields: {email: email}
"""
    )
    keys = build_definitions().resolve_job_def("audience_sync").partitions_def.get_partition_keys()
    assert keys[-1] == "big_spenders"


def test_members_then_changes_then_an_incremental_diff(home) -> None:
    defs = build_definitions()
    first = _run(defs, "vip_customers")
    assert first.success
    members = _metadata(first, "audience_members")
    changes = _metadata(first, "audience_changes")
    assert members["members"] > 100
    assert members["rejected"] > 0  # the sample data is dirty on purpose
    assert changes["adds"] == members["members"]
    assert changes["updates"] == changes["removals"] == 0
    for name in ("members", "rejected", "duplicates", "excluded", "seconds"):
        assert isinstance(members[name], (int, float))
    assert [g.passed for g in _guard(first)] == [True]

    _confirm_everything(home, "vip_customers")
    with duckdb.connect(str(home.customer_360)) as connection:
        # A tenth of the VIPs drop out, and one VIP's name changes.
        connection.execute("""UPDATE customers SET loyalty_tier = 'bronze'
                              WHERE loyalty_tier IN ('gold', 'platinum') AND customer_id % 10 = 0""")
        connection.execute("""UPDATE customers SET first_name = 'Renamed'
                              WHERE customer_id = (SELECT min(customer_id) FROM customers
                                                   WHERE loyalty_tier = 'gold' AND email_consent AND customer_id % 10 = 1)""")
    second = _run(defs, "vip_customers")
    assert second.success
    changes = _metadata(second, "audience_changes")
    assert changes["adds"] == 0
    assert changes["updates"] >= 1
    assert 0 < changes["removals"] < members["members"] * 0.2
    assert [g.passed for g in _guard(second)] == [True]


def test_the_guard_blocks_a_mass_removal_until_a_person_overrides_it(home) -> None:
    defs = build_definitions()
    assert _run(defs, "welcome_series").success
    _confirm_everything(home, "welcome_series")
    with duckdb.connect(str(home.customer_360)) as connection:
        connection.execute("UPDATE customers SET email_consent = NULL")  # a broken upstream load

    blocked = _run(defs, "welcome_series")
    assert not blocked.success
    [verdict] = _guard(blocked)
    assert not verdict.passed
    assert "held back, nothing was sent" in verdict.description
    assert "ac_pipeline/allow_removals" in verdict.description
    assert SyncState(home.state).snapshot_counts("welcome_series")["removed"] == 0

    # The command-line way the message gives: `dagster asset materialize` has no tags option, so the message
    # gives a --config-json. Run with exactly that run config (the CLI itself takes ~25 s to start two steps).
    command = re.search(r"(dagster asset materialize .*--config-json '(\{.*\})')", verdict.description)
    assert command, verdict.description
    assert "--partition welcome_series" in command.group(1)
    assert SyncState(home.state).snapshot_counts("welcome_series")["removed"] == 0
    from_cli = _run(defs, "welcome_series", run_config=json.loads(command.group(2)))
    assert from_cli.success
    [verdict] = _guard(from_cli)
    assert verdict.passed and "overridden for this run by a person" in verdict.description

    # The UI's way: the run tag, for this audience.
    allowed = _run(defs, "welcome_series", tags={"ac_pipeline/allow_removals": "welcome_series"})
    assert allowed.success
    [verdict] = _guard(allowed)
    assert verdict.passed and "overridden for this run by a person" in verdict.description


def test_a_missing_customer_360_says_how_to_make_one(home) -> None:
    home.customer_360.unlink()
    result = _run(build_definitions(), "vip_customers")
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "ac-pipeline generate" in failure.event_specific_data.error.message


def test_the_daily_schedule_asks_for_one_run_per_audience_and_starts_stopped(home) -> None:
    defs = build_definitions()
    schedule = defs.resolve_schedule_def("daily_audience_sync")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 11, 22, 6), repository_def=defs.get_repository_def()
    )
    requests = list(schedule.evaluate_tick(context).run_requests)
    assert [r.partition_key for r in requests] == [
        "vip_customers",
        "lapsed_buyers",
        "newsletter_canada",
        "welcome_series",
    ]
    assert len({r.run_key for r in requests}) == 4
