"""The alert sensor: tells a webhook (AC_PIPELINE_ALERT_WEBHOOK) when an audience's sync fails, its removal
guard holds a sync back, too many of its contacts are rejected, or it suddenly shrinks, and when that clears.

It reads the event log (latest sync run, guard verdict and materializations per audience), compares with the
alerts it last delivered (its cursor), and posts one notice per change of state (ac_pipeline/alerts.py). The
cursor moves only with what the webhook accepted, so a notice it could not deliver goes again next tick.
Stopped by default like the schedules, since it talks to a service outside the pipeline; without the variable
it sends nothing even when running.
"""

import json
import os
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
import httpx

from ac_pipeline import alerts
from ac_pipeline.audiences.config import Audience
from ac_pipeline.defs.activecampaign.assets import DRY_RUN_TAG
from ac_pipeline.defs.audiences.checks import REMOVAL_GUARD
from ac_pipeline.defs.audiences.resources import AudienceCatalog

WEBHOOK_ENV = "AC_PIPELINE_ALERT_WEBHOOK"
SYNC_JOB = "audience_sync"
MEMBERS = dg.AssetKey("audience_members")
CHANGES = dg.AssetKey("audience_changes")
PUSH = dg.AssetKey("activecampaign_sync")
PARTITION_TAG = "dagster/partition"
# Per notice: a few seconds each try, a few tries; a sensor tick must finish well within its 60 s.
TIMEOUT_SECONDS = 5.0
ATTEMPTS = 3
BACKOFF_SECONDS = 0.5
# A failure is told by the first line of its error, cut to this length (the run log has the rest).
REASON_CHARS = 500
# Secrets that must never leave in a notice, even if some message carried one.
SECRET_ENVS = ("ACTIVECAMPAIGN_API_KEY",)


def _is_sync_run(run: dg.DagsterRun) -> bool:
    """A run that pushed (or tried to push) an audience: the sync job, or the same assets materialized from the UI.
    Dry runs send nothing, so they say nothing about the sync."""
    if run.tags.get(DRY_RUN_TAG, "").lower() == "true":
        return False
    ops: Any = (run.run_config or {}).get("ops") or {}
    if ((ops.get(PUSH.path[-1]) or {}).get("config") or {}).get("dry_run"):
        return False
    return run.job_name == SYNC_JOB or bool(run.asset_selection and {CHANGES, PUSH} & set(run.asset_selection))


def _latest_sync_run(instance: dg.DagsterInstance, key: str) -> dg.DagsterRun | None:
    records = instance.get_run_records(
        filters=dg.RunsFilter(
            tags={PARTITION_TAG: key}, statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE]
        ),
        limit=20,
    )
    return next((record.dagster_run for record in records if _is_sync_run(record.dagster_run)), None)


def _failure_reason(instance: dg.DagsterInstance, run_id: str) -> str:
    """The first line of the first step failure (its exception names the cause), or the run's own failure."""
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        error = entry.dagster_event.step_failure_data.error if entry.dagster_event else None
        if error is not None:
            return f"{entry.step_key}: {error.message.strip().splitlines()[0][:REASON_CHARS]}"
    return "the run failed before a step did (see the run's log)"


def _guard_verdict(instance: dg.DagsterInstance, run_id: str) -> Any:
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.event_specific_data if entry.dagster_event else None
        if evaluation is not None and getattr(evaluation, "check_name", None) == REMOVAL_GUARD:
            return evaluation
    return None


def _materializations(instance: dg.DagsterInstance, asset: dg.AssetKey, key: str, limit: int) -> list[tuple]:
    """(run id, {metadata key: value}) of the partition's latest materializations, newest first."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset, asset_partitions=[key]), limit=limit
    ).records
    found = []
    for record in records:
        materialization = record.event_log_entry.asset_materialization
        if materialization is not None:
            metadata = {name: value.value for name, value in materialization.metadata.items()}
            found.append((record.event_log_entry.run_id, metadata))
    return found


def read_audience(instance: dg.DagsterInstance, audience: Audience) -> list[alerts.Reading]:
    """What the event log says about the audience now, for each kind it has evidence for."""
    readings = []
    run = _latest_sync_run(instance, audience.key)
    if run is not None:
        verdict = _guard_verdict(instance, run.run_id)
        if verdict is not None:
            figures = {name: value.value for name, value in verdict.metadata.items()}
            readings.append(alerts.guard(audience, verdict.passed, verdict.description or "", figures, run.run_id))
        held_back = verdict is not None and not verdict.passed
        if not held_back:  # a run the guard held back failed on purpose: the guard's alert says so
            failed = run.status == dg.DagsterRunStatus.FAILURE
            reason = _failure_reason(instance, run.run_id) if failed else ""
            readings.append(alerts.sync_failure(audience, failed, reason, run.run_id))
    members = _materializations(instance, MEMBERS, audience.key, limit=2)
    if members:
        run_id, latest = members[0]
        pushes = _materializations(instance, PUSH, audience.key, limit=1)
        push = pushes[0][1] if pushes else {}
        sent = sum(int(push.get(op, 0)) for op in ("adds", "readds", "updates"))
        readings.append(
            alerts.rejected_share(
                audience,
                int(latest.get("members", 0)),
                int(latest.get("rejected", 0)),
                run_id,
                push_sent=sent,
                push_rejected=int(push.get("rejected", 0)),
            )
        )
        if len(members) == 2:
            previous = int(members[1][1].get("members", 0))
            readings.append(alerts.size_drop(audience, previous, int(latest.get("members", 0)), run_id))
    return readings


def _body(reading: alerts.Reading) -> str:
    body = json.dumps(alerts.payload(reading, datetime.now(UTC)))
    for name in SECRET_ENVS:
        secret = os.environ.get(name)
        if secret:
            body = body.replace(secret, "[redacted]")
    return body


def deliver(url: str, body: str, log: Any) -> bool:
    """POST one notice; True once the webhook accepted it. Never raises: the sensor sends it again next tick."""
    problem = ""
    for attempt in range(ATTEMPTS):
        try:
            response = httpx.post(
                url, content=body, headers={"content-type": "application/json"}, timeout=TIMEOUT_SECONDS
            )
        except httpx.HTTPError as exc:
            problem = f"{type(exc).__name__}"
        else:
            if response.is_success:
                return True
            problem = f"HTTP {response.status_code}"
            if response.status_code < 500 and response.status_code not in (408, 429):
                break  # the webhook refuses this notice: asking again at once will not change its mind
        if attempt + 1 < ATTEMPTS:
            time.sleep(BACKOFF_SECONDS * 2**attempt)
    # Scheme and host only: a webhook's path often carries its token.
    where = urlsplit(url)
    log.warning(
        f"the alert webhook at {where.scheme}://{where.netloc} did not take a notice ({problem}); "
        "it is sent again on the sensor's next tick"
    )
    return False


def build_alert_sensor() -> dg.SensorDefinition:
    @dg.sensor(
        name="audience_alerts",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.STOPPED,
    )
    def audience_alerts(context: dg.SensorEvaluationContext, audiences: AudienceCatalog) -> dg.SkipReason:
        """Posts JSON to AC_PIPELINE_ALERT_WEBHOOK when an audience's sync fails, its removal guard holds it back,
        its rejected share passes alerts.rejected_share, or it shrinks by more than alerts.size_drop_share; once
        per change of state, with a `resolved` notice when it clears. Launches nothing."""
        url = os.environ.get(WEBHOOK_ENV, "").strip()
        if not url:
            return dg.SkipReason(f"{WEBHOOK_ENV} is not set: no alerts are sent")
        alerting = set(json.loads(context.cursor)["alerting"]) if context.cursor else set()
        catalog = audiences.load()
        readings = [reading for audience in catalog.audiences for reading in read_audience(context.instance, audience)]
        pending = alerts.changes(readings, alerting)
        sent = 0
        for reading in pending:
            if not deliver(url, _body(reading), context.log):
                break  # the webhook is down: the rest wait for the next tick too
            alerting = alerts.delivered(alerting, reading)
            sent += 1
        known = {alerts.alert_key(key, kind) for key in catalog.keys for kind in alerts.KINDS}
        context.update_cursor(json.dumps({"alerting": sorted(alerting & known)}))
        return dg.SkipReason(
            f"{sent} notice(s) sent, {len(pending) - sent} to send on the next tick; {len(alerting)} alert(s) open"
        )

    return audience_alerts
