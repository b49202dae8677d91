"""The push: each audience's changes become its ActiveCampaign list."""

import time
from typing import Any

import dagster as dg
import polars as pl

from ac_pipeline.audiences.guard import OVERRIDE_TAG, overridden
from ac_pipeline.audiences.modes import SKIPS
from ac_pipeline.defs.activecampaign.failures import step_failure
from ac_pipeline.defs.activecampaign.resources import ActiveCampaignResource
from ac_pipeline.defs.audiences.resources import AudienceCatalog, SyncStateResource
from ac_pipeline.defs.freshness.automation import PUSH_CONDITION
from ac_pipeline.defs.meanings import ACTIVECAMPAIGN_SYNC, DRY_RUN
from ac_pipeline.defs.metadata import described
from ac_pipeline.sync.bulk import PushIncomplete
from ac_pipeline.sync.plan import plan
from ac_pipeline.sync.push import Push

# One push per ActiveCampaign account at a time: the account's 5 requests a second are shared by all.
POOL = "activecampaign"
DRY_RUN_TAG = "ac_pipeline/dry_run"
RESYNC_TAG = "ac_pipeline/resync"


def _say_how_long_it_waited_for_the_pool(context: dg.AssetExecutionContext) -> None:
    """Dagster reports a step waiting for its pool only at DEBUG level (an engine event, repeated every 5
    minutes), and no code of the step runs before it holds the slot: say at INFO how long this one waited."""
    blocked_since = None
    events = context.instance.all_logs(
        context.run_id, of_type={dg.DagsterEventType.ENGINE_EVENT, dg.DagsterEventType.STEP_UP_FOR_RETRY}
    )
    for entry in events:
        if entry.dagster_event is not None and entry.dagster_event.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY:
            blocked_since = None  # this attempt's wait, not an earlier one's
        elif f"Step blocked by limit for pool {POOL}" in (entry.message or "") and blocked_since is None:
            blocked_since = entry.timestamp
    if blocked_since is not None:
        context.log.info(
            f"waited {time.time() - blocked_since:.0f} s for a slot of the {POOL!r} pool, which another run held"
        )


def _removals_allowed(context: dg.AssetExecutionContext, key: str) -> bool:
    """Whether a person let this run remove more than the guard allows: the run tag, or the run config of
    audience_changes (the push applies the guard itself to the removals a resync finds)."""
    ops: Any = (context.run.run_config or {}).get("ops") or {}
    configured = bool(((ops.get("audience_changes") or {}).get("config") or {}).get("allow_removals"))
    return configured or overridden(context.run.tags.get(OVERRIDE_TAG), key)


class SyncConfig(dg.Config):
    # Show what would be sent (counts per operation, sample payloads, requests) and send nothing.
    dry_run: bool = False
    # Rebuild the snapshot from the list (read back in full) before pushing. The push does it by itself
    # when the list is not the one the snapshot describes (recreated, another account, a lost state file).
    resync: bool = False


def build_sync_asset(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        partitions_def=partitions,
        group_name="activecampaign",
        kinds={"activecampaign"},
        pool=POOL,
        # A retry resumes from the snapshot: what ActiveCampaign confirmed is never sent again.
        retry_policy=dg.RetryPolicy(
            max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
        ),
        output_required=False,  # a dry run materializes nothing
        automation_condition=PUSH_CONDITION,
    )
    def activecampaign_sync(
        context: dg.AssetExecutionContext,
        config: SyncConfig,
        audience_members: pl.DataFrame,
        audience_changes: pl.DataFrame,
        activecampaign: ActiveCampaignResource,
        audiences: AudienceCatalog,
        sync_state: SyncStateResource,
    ):
        """The audience's ActiveCampaign list, in step with the audience as of this sync.

        Sends the audience's changes (bulk import for most, one by one for a handful) and commits to the
        sync snapshot only what ActiveCampaign confirmed. People who unsubscribed themselves are never
        re-subscribed. A retry or re-run resumes where the last attempt stopped. With `dry_run` (run
        config, or the tag `ac_pipeline/dry_run=true`) it records what it would send and sends nothing.
        """
        key = context.partition_key
        _say_how_long_it_waited_for_the_pool(context)
        audience = audiences.load().get(key)
        state = sync_state.store()
        dry_run = config.dry_run or context.run.tags.get(DRY_RUN_TAG, "").lower() == "true"
        if dry_run:
            intended = plan(audience_changes, state.snapshot(key), audience, members=audience_members)
            context.log.info(
                f"Dry run of audience '{key}' (list '{audience.list.name}'), nothing was sent: {intended.as_sentence()}."
            )
            yield dg.AssetObservation(
                asset_key=context.asset_key,
                partition=key,
                metadata=described(
                    {
                        "dry_run": True,
                        "sync_mode": audience.sync_mode,
                        "requests": intended.requests,
                        **{op: n for op, n in intended.by_operation.items()},
                        **{f"group_{row['group']}": row["members"] for row in intended.groups},
                        "plan": dg.MetadataValue.md(intended.as_markdown()),
                    },
                    DRY_RUN,
                ),
            )
            return

        started = time.perf_counter()
        state.start_run(key, context.run_id)
        try:
            with activecampaign.open_account() as (client, account):
                push = Push(
                    client,
                    state,
                    audience,
                    context.run_id,
                    account=account,
                    log=context.log.info,
                    poll_interval=activecampaign.poll_interval,
                    resync=config.resync or context.run.tags.get(RESYNC_TAG, "").lower() == "true",
                    allow_removals=_removals_allowed(context, key),
                    callbacks=activecampaign.callbacks(),
                )
                try:
                    result = push.run(audience_changes, audience_members)
                finally:
                    stats = client.stats
        except Exception as exc:
            # Whatever stopped the push, the runs table and the failure say so; a retry resumes from the snapshot.
            state.finish_run(key, context.run_id, "failed", {"seconds": time.perf_counter() - started})
            failure = step_failure("Sync", audience, exc)
            # A cause worth retrying keeps its stack trace; configuration errors are said in full without one.
            raise failure from (exc if failure.allow_retries else None)

        seconds = time.perf_counter() - started
        failed = result.outcomes["failed"]
        counts = {
            "adds": result.pending["add"],
            "readds": result.pending["readd"],
            "updates": result.pending["update"],
            "removals": result.pending["remove"],
            "confirmed": result.outcomes["confirmed"],
            "opted_out": result.outcomes["opted_out"],
            "failed": failed,
            "skipped": result.already_confirmed,
            "requests": result.requests,
            "seconds": round(seconds, 3),
        }
        state.finish_run(key, context.run_id, "failed" if failed else "success", counts)
        if failed:
            incomplete = PushIncomplete(
                f"{failed} contacts of {audience.list.name!r} failed for a passing reason; they stay out of the "
                "snapshot and the retry sends them again (see the ledger in the sync state)"
            )
            raise step_failure("Sync", audience, incomplete)
        sent = sum(result.pending.values())
        yield dg.MaterializeResult(
            metadata=described(
                {
                    **counts,
                    "rejected": result.outcomes["rejected"],
                    "batches": result.batches,
                    "batches_resubmitted": result.batches_resubmitted,
                    "batches_called_back": result.batches_called_back,
                    "contacts_per_minute": round(sent / seconds * 60, 1) if sent and seconds else 0.0,
                    "requests_per_change": round(result.requests / sent, 4) if sent else 0.0,
                    "list": audience.list.name,
                    "list_id": result.list_id,
                    "resynced": result.resynced,
                    "sync_mode": audience.sync_mode,
                    # What the sync and field modes held back: leavers kept (upsert, update_only), values left as
                    # ActiveCampaign holds them (fill, never_clear), customers who are not contacts (update_only).
                    **{f"skipped_{name}": result.skipped.get(name, 0) for name in SKIPS},
                    "list_created": result.created_list,
                    "fields_created": ", ".join(result.created_fields),
                    "settled_from_journal": result.settled_from_journal,
                    "email_changes": result.email_changes,
                    "email_changes_fallen_back": result.email_changes_fallen_back,
                    "destination": activecampaign.describe(),
                    **{f"client_{k}": v for k, v in stats.as_metadata().items() if k != "requests"},
                },
                ACTIVECAMPAIGN_SYNC,
            )
        )

    return activecampaign_sync
