"""Saying, at INFO level and while it happens, that a push is waiting for the account's pool.

Dagster records a step blocked by its pool only as a DEBUG engine event, and no code of the step runs
before it holds a slot, so a push stuck behind another run (or behind a dead run that still holds the
slot) looks idle. This sensor looks at the `activecampaign` pool and writes an INFO event into each run
whose push has waited longer than a threshold: how long, which run holds the slot, how to free it. It
only writes log events, so it runs by default (under `dagster dev` or the daemon).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import dagster as dg

# A push is first told about after this long, then again at most this often.
WAIT_BEFORE_SAYING_SECONDS = 30
SAY_AGAIN_AFTER_SECONDS = 300


def report_pool_waits(
    instance: dg.DagsterInstance, pool: str, now: datetime, told: dict[str, float]
) -> dict[str, float]:
    """Write an INFO engine event into each run waiting for `pool` long enough; returns the updated
    {run_id:step_key: when last told} (the sensor's cursor)."""
    info = instance.event_log_storage.get_concurrency_info(pool)
    holders = sorted({slot.run_id for slot in info.claimed_slots})
    still_waiting: dict[str, float] = {}
    for step in info.pending_steps:
        if step.assigned_timestamp is not None:
            continue
        key = f"{step.run_id}:{step.step_key}"
        enqueued = step.enqueued_timestamp.replace(tzinfo=step.enqueued_timestamp.tzinfo or UTC)
        waited = (now - enqueued).total_seconds()
        last = told.get(key)
        still_waiting[key] = last or 0.0
        if waited < WAIT_BEFORE_SAYING_SECONDS or (last and now.timestamp() - last < SAY_AGAIN_AFTER_SECONDS):
            continue
        run = instance.get_run_by_id(step.run_id)
        if run is None or run.is_finished:
            continue
        held_by = ", ".join(holders) or "no run (the pool's limit may be 0)"
        instance.report_engine_event(
            f"{step.step_key} has waited {waited:.0f} s for a slot of the {pool!r} pool (limit {info.limit}), "
            f"held by run {held_by}. One push per ActiveCampaign account runs at a time; if the holder is dead "
            "(killed), mark it failed (Runs -> Terminate) and free its slots (Deployment -> Concurrency), or "
            "let run monitoring do it (see the README)",
            run,
            step_key=step.step_key,
        )
        still_waiting[key] = now.timestamp()
    return still_waiting


def build_pool_wait_sensor(pool: str) -> dg.SensorDefinition:
    @dg.sensor(
        name="activecampaign_pool_waits",
        minimum_interval_seconds=WAIT_BEFORE_SAYING_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def activecampaign_pool_waits(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        """Tells each push waiting for the ActiveCampaign pool, in its own run log at INFO, how long it has
        waited and which run holds the slot. Launches nothing."""
        told = json.loads(context.cursor) if context.cursor else {}
        told = report_pool_waits(context.instance, pool, datetime.now(UTC), told)
        context.update_cursor(json.dumps(told))
        return dg.SkipReason(f"{len(told)} push(es) waiting for the {pool!r} pool")

    return activecampaign_pool_waits
