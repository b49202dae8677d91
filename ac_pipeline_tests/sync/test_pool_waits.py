"""A push waiting for the ActiveCampaign pool is told so at INFO level in its own run, with the holder.

Real instance (local_temp, pool limit 1), real concurrency claims in its event log storage, the sensor's
function evaluated at chosen times.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus

from ac_pipeline.defs.activecampaign.assets import POOL
from ac_pipeline.defs.activecampaign.sensors import build_pool_wait_sensor, report_pool_waits

STEP = "activecampaign_sync"


def told_events(instance: dg.DagsterInstance, run_id: str) -> list[dg.EventLogEntry]:
    return [e for e in instance.all_logs(run_id) if "for a slot of the 'activecampaign' pool" in (e.message or "")]


def test_a_waiting_push_is_told_at_info_who_holds_the_slot_and_how_to_free_it() -> None:
    with dg.DagsterInstance.local_temp(overrides={"concurrency": {"pools": {"default_limit": 1}}}) as instance:
        holder, waiter = (
            instance.add_run(DagsterRun(job_name="audience_sync", run_id=f"run-{n}", status=DagsterRunStatus.STARTED))
            for n in ("holder", "waiter")
        )
        storage = instance.event_log_storage
        storage.set_concurrency_slots(POOL, 1)  # what `dagster instance concurrency set activecampaign 1` does
        assert storage.claim_concurrency_slot(POOL, holder.run_id, STEP).is_claimed
        assert not storage.claim_concurrency_slot(POOL, waiter.run_id, STEP).is_claimed
        start = datetime.now(UTC)

        told = report_pool_waits(instance, POOL, start + timedelta(seconds=5), {})
        assert not told_events(instance, waiter.run_id)  # a short wait is not worth a line

        told = report_pool_waits(instance, POOL, start + timedelta(seconds=45), told)
        [event] = told_events(instance, waiter.run_id)
        assert event.level == logging.INFO and event.step_key == STEP
        assert holder.run_id in event.message and "Terminate" in event.message
        assert not told_events(instance, holder.run_id)

        told = report_pool_waits(instance, POOL, start + timedelta(seconds=90), told)
        assert len(told_events(instance, waiter.run_id)) == 1  # not every 30 s
        report_pool_waits(instance, POOL, start + timedelta(seconds=400), told)
        assert len(told_events(instance, waiter.run_id)) == 2  # but again after a while

        # The sensor itself runs against the instance and launches nothing.
        sensor = build_pool_wait_sensor(POOL)
        result = sensor(dg.build_sensor_context(instance=instance))
        assert isinstance(result, dg.SkipReason)
