"""The read-back: each audience's list as ActiveCampaign really holds it, and the snapshot reconciled with it."""

import time
from datetime import UTC, datetime

import dagster as dg
import polars as pl

from ac_pipeline.audiences.config import Audience
from ac_pipeline.defs.activecampaign.assets import POOL, RESYNC_TAG
from ac_pipeline.defs.activecampaign.failures import step_failure
from ac_pipeline.defs.activecampaign.resources import AccountTablesResource, ActiveCampaignResource
from ac_pipeline.defs.audiences.checks import partitioned_check_spec
from ac_pipeline.defs.audiences.resources import AudienceCatalog, SyncStateResource
from ac_pipeline.defs.meanings import LIST_MEMBERS, STORED_AT
from ac_pipeline.defs.metadata import described, markdown_preview
from ac_pipeline.readback.list_read import ReadBackResult, read_back
from ac_pipeline.readback.reader import LIST_STATUSES, RECORD_KEYS, how
from ac_pipeline.readback.reconcile import KINDS

FULL_TAG = "ac_pipeline/full_read"
DRIFT_CHECK = "drift"

DRIFT_DESCRIPTION = (
    "Warns when more of the list drifted from the snapshot since the last read than the audience's "
    "`drift_warning_share` (default 5%): people who opted out or bounced, contacts deleted, added or edited "
    "by hand. The drift is repaired either way; the warning asks a person to look at why."
)


class ReadBackConfig(dg.Config):
    # Read the whole list, not only what changed since the last read.
    full: bool = False
    # Rebuild the snapshot from the list: the next sync then sends only what makes the list equal to the
    # audience. Nobody who unsubscribed is re-subscribed, and removals are never dropped.
    resync: bool = False


def _flag(context: dg.AssetExecutionContext, tag: str) -> bool:
    return context.run.tags.get(tag, "").strip().lower() == "true"


def with_provenance(result: ReadBackResult) -> pl.DataFrame:
    """The read-back as the asset holds it: list status by name, and who unsubscribed each person and how."""
    members = result.members
    # Only unsubscribed and bounced members have a story to tell (usually few; the rule is sync.consent's).
    left = members.filter(pl.col("list_status").is_in([2, 3]))
    stories = [
        how({"status": status, **dict(zip(RECORD_KEYS, record, strict=True))})
        for status, *record in left.select("list_status", *RECORD_KEYS).iter_rows()
    ]
    told = left.select(
        "contact_id",
        unsubscribed_by=pl.Series([who for who, _ in stories], dtype=pl.String),
        how=pl.Series([text for _, text in stories], dtype=pl.String),
    )
    by_sync = (pl.col("list_status") == 2) & pl.col("email").is_in(result.removed_by_sync.implode())
    return (
        members.with_columns(status=pl.col("list_status").replace_strict(LIST_STATUSES, return_dtype=pl.String))
        .join(told, on="contact_id", how="left")
        .with_columns(
            unsubscribed_by=pl.when(by_sync).then(pl.lit("sync")).otherwise("unsubscribed_by"),
            how=pl.when(by_sync).then(pl.lit("unsubscribed by the sync (left the audience)")).otherwise("how"),
        )
    )


def drift_check(audience: Audience, result: ReadBackResult) -> dg.AssetCheckResult:
    counts = result.reconciliation.counts()
    drifted = sum(counts.values())
    base = max(result.members.height, 1)
    share = drifted / base
    passed = share <= audience.drift_warning_share
    words = ", ".join(f"{n:,} {kind.replace('_', ' ')}" for kind, n in counts.items() if n) or "none"
    description = (
        f"{audience.key}: {drifted:,} contacts of list {audience.list.name!r} drifted ({share:.1%}; {words}), "
        f"{'within' if passed else 'above'} the warning share of {audience.drift_warning_share:.0%}."
    )
    return dg.AssetCheckResult(
        check_name=DRIFT_CHECK,
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=description,
        metadata={"audience": audience.key, "drifted": drifted, "drift_share": round(share, 4), **counts},
    )


def build_readback_asset(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        partitions_def=partitions,
        group_name="activecampaign",
        kinds={"activecampaign", "polars"},
        pool=POOL,  # its reads spend the same account budget as the push
        io_manager_key="parquet_io_manager",
        check_specs=[  # one status per audience, like the removal guard's
            partitioned_check_spec(
                DRIFT_CHECK, "activecampaign_list_members", partitions, DRIFT_DESCRIPTION, blocking=False
            )
        ],
        retry_policy=dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL),
    )
    def activecampaign_list_members(
        context: dg.AssetExecutionContext,
        config: ReadBackConfig,
        activecampaign: ActiveCampaignResource,
        audiences: AudienceCatalog,
        sync_state: SyncStateResource,
        account_tables: AccountTablesResource,
    ):
        """Who is really on the audience's ActiveCampaign list: each contact's list status (active,
        unsubscribed, bounced, unconfirmed), when and how it came about, and the values of the fields the
        audience maps, read back from ActiveCampaign.

        Reading it reconciles the sync snapshot with the list: people who opted out or bounced are never sent
        again, contacts deleted from the list are sent again by the next sync, fields edited by hand are set
        back, and contacts added by hand are reported (and removed, with `unmanaged: remove`). It reads only
        what changed since the last read unless asked for a full read (`full`), and rebuilds the snapshot from
        the list with `resync` (run config, or the tags ac_pipeline/full_read and ac_pipeline/resync).
        """
        key = context.partition_key
        audience = audiences.load().get(key)
        state = sync_state.store()
        started = time.perf_counter()
        try:
            with activecampaign.open_account() as (client, account):
                result = read_back(
                    client,
                    state,
                    audience,
                    context.run_id,
                    account=account,
                    full=config.full or _flag(context, FULL_TAG),
                    resync=config.resync or _flag(context, RESYNC_TAG),
                    log=context.log.info,
                )
        except Exception as exc:
            failure = step_failure("Read-back", audience, exc)
            raise failure from (exc if failure.allow_retries else None)
        members = with_provenance(result)
        _bring_home(account_tables, audience, result, members)
        counts = result.reconciliation.counts()
        by_status = dict(members.group_by("status").len().iter_rows()) if members.height else {}
        context.log.info(
            f"Read {result.changed_contacts:,} contacts of list '{audience.list.name}' for audience '{key}' "
            f"({result.why}) in {result.requests} requests; drift: "
            + (", ".join(f"{n:,} {kind.replace('_', ' ')}" for kind, n in counts.items() if n) or "none")
            + "."
        )
        metadata: dict[str, dg.RawMetadataValue] = {
            "contacts": members.height,
            **{status: int(by_status.get(status, 0)) for status in LIST_STATUSES.values()},
            **{f"drift_{kind}": n for kind, n in counts.items()},
            "adopted": result.reconciliation.adopted,
            "contacts_read": result.changed_contacts,
            "full_read": result.full,
            "read": result.why,
            "resynced": result.resynced,
            "requests": result.requests,
            "seconds": round(time.perf_counter() - started, 3),
            "drift_sample": dg.MetadataValue.md(_sample(result)),
            "list": audience.list.name,
            "list_id": result.list_id,
        }
        yield dg.Output(members, metadata=described(metadata, LIST_MEMBERS, added_on_storage=list(STORED_AT)))
        yield drift_check(audience, result)

    return activecampaign_list_members


def _bring_home(
    account_tables: AccountTablesResource, audience: Audience, result: ReadBackResult, members: pl.DataFrame
) -> None:
    """The list's members, opt-outs among them, and the audience's tags they hold, into the account tables that
    the customer 360's owner (and audience SQL) can query."""
    tables = account_tables.tables()
    dated = members.with_columns(
        subscribed_at=pl.col("sdate").str.to_datetime(time_zone="UTC", strict=False),
        status_changed_at=pl.col("udate").str.to_datetime(time_zone="UTC", strict=False),
    )
    read_at = datetime.now(UTC)
    tables.write_list_members(audience.key, result.list_id or "", audience.list.name, dated, read_at)
    tags = members.select("email", "contact_id", "tags").explode("tags").drop_nulls("tags")
    tables.write_contact_tags(audience.key, tags.rename({"tags": "tag"}))


def _sample(result: ReadBackResult) -> str:
    drift = result.reconciliation.drift
    sample = pl.concat([drift.filter(pl.col("kind") == kind).head(5) for kind in KINDS], how="vertical")
    return markdown_preview(sample, rows=25)
