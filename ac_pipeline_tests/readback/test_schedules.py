"""The read-back runs on its own schedules, stopped until someone turns them on, one run per audience."""

from __future__ import annotations

import datetime

import dagster as dg

from ac_pipeline.definitions import build_definitions
from ac_pipeline.settings import Paths


def test_reconciliation_has_its_own_schedules_stopped_by_default(home: Paths) -> None:
    defs = build_definitions()
    schedules = {schedule.name: schedule for schedule in defs.schedules}  # type: ignore[union-attr]
    assert set(schedules) == {"daily_audience_sync", "daily_list_reconcile", "daily_account_import"}
    for schedule in schedules.values():
        assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED, schedule.name
    reconcile = schedules["daily_list_reconcile"]
    assert reconcile.job_name == "list_reconcile"
    when = datetime.datetime(2026, 11, 23, 5, tzinfo=datetime.UTC)
    with dg.build_schedule_context(scheduled_execution_time=when) as context:
        requests = list(reconcile(context))  # type: ignore[arg-type]
    keys = defs.resolve_job_def("list_reconcile").partitions_def.get_partition_keys()  # type: ignore[union-attr]
    assert [r.partition_key for r in requests] == keys
    assert len({r.run_key for r in requests}) == len(keys)
