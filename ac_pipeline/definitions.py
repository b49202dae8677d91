"""The Dagster definitions: `dagster dev` (through workspace.yaml) and `dagster definitions validate`
load `defs` from here."""

from __future__ import annotations

import dagster as dg
from dagster_duckdb import DuckDBResource

from ac_pipeline.defs.activecampaign.account_assets import ACCOUNT_ASSETS, account_import_job
from ac_pipeline.defs.activecampaign.assets import POOL, build_sync_asset
from ac_pipeline.defs.activecampaign.readback_assets import build_readback_asset
from ac_pipeline.defs.activecampaign.resources import AccountTablesResource, activecampaign_resource
from ac_pipeline.defs.activecampaign.schedules import build_daily_account_import, build_daily_reconcile
from ac_pipeline.defs.activecampaign.sensors import build_pool_wait_sensor
from ac_pipeline.defs.alerts import build_alert_sensor
from ac_pipeline.defs.audiences.assets import build_audience_assets
from ac_pipeline.defs.audiences.partitions import audience_partitions
from ac_pipeline.defs.audiences.resources import AudienceCatalog, SyncStateResource
from ac_pipeline.defs.audiences.schedules import build_daily_sync
from ac_pipeline.defs.executor import sync_executor
from ac_pipeline.defs.freshness.automation import build_automation_sensor
from ac_pipeline.defs.freshness.sources import build_sources
from ac_pipeline.defs.io import PolarsParquetIOManager
from ac_pipeline.defs.one_process import one_process_executor
from ac_pipeline.settings import Paths, paths


def build_definitions(where: Paths | None = None) -> dg.Definitions:
    """Everything, with its locations read from the environment (or given, in tests)."""
    where = where or paths()
    partitions = audience_partitions(where.audiences)
    members, changes = build_audience_assets(partitions)
    push = build_sync_asset(partitions)
    list_members = build_readback_asset(partitions)
    sync_job = dg.define_asset_job(
        "audience_sync",
        selection=dg.AssetSelection.assets(members, changes, push),
        partitions_def=partitions,
        executor_def=sync_executor(),
        description="Compute each audience, diff it against the last confirmed sync, and push the changes "
        "to its ActiveCampaign list. One run per audience (partition).",
    )
    reconcile_job = dg.define_asset_job(
        "list_reconcile",
        selection=dg.AssetSelection.assets(list_members),
        partitions_def=partitions,
        description="Read each audience's ActiveCampaign list back and reconcile the sync snapshot with it: "
        "opt-outs and bounces come home, deleted contacts are sent again by the next sync, hand edits are "
        "reported and repaired. Run config `full` reads whole lists; `resync` rebuilds the snapshot.",
    )
    return dg.Definitions(
        assets=[*build_sources(partitions), members, changes, push, list_members, *ACCOUNT_ASSETS],
        jobs=[sync_job, reconcile_job, account_import_job],
        schedules=[
            build_daily_sync(sync_job, partitions),
            build_daily_reconcile(reconcile_job, partitions),
            build_daily_account_import(account_import_job),
        ],
        sensors=[build_pool_wait_sensor(POOL), build_alert_sensor(), build_automation_sensor()],
        # Every job's steps run in its run's process (one_process.py: a process per step cost 2-3 s each);
        # audience_sync moves to Celery workers when a broker is set (executor.py).
        executor=one_process_executor,
        resources={
            # Read-only: the customer 360 belongs to whoever maintains it, and other readers may be open.
            "customer_360": DuckDBResource(
                database=str(where.customer_360), connection_config={"access_mode": "READ_ONLY"}
            ),
            "audiences": AudienceCatalog(path=str(where.audiences)),
            "sync_state": SyncStateResource(path=str(where.state)),
            "parquet_io_manager": PolarsParquetIOManager(base_dir=str(where.assets)),
            "activecampaign": activecampaign_resource(where),
            # What comes home from ActiveCampaign; audience SQL reads it as activecampaign.<table>.
            "account_tables": AccountTablesResource(path=str(where.activecampaign)),
        },
    )


defs = build_definitions()
