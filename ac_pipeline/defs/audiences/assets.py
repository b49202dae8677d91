"""Audience assets: who is in each audience, and what changed since the last confirmed sync.

Built by a factory because the partitions (one per audience) come from audiences.yaml when the code
location loads.
"""

import time
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
from dagster_duckdb import DuckDBResource

from ac_pipeline.audiences import changes as audience_changes_lib
from ac_pipeline.audiences.config import Audience, check_against_columns, sql_snippets
from ac_pipeline.audiences.guard import OVERRIDE_TAG, overridden
from ac_pipeline.audiences.identity import EMAIL_CHANGE
from ac_pipeline.audiences.members import compute_members
from ac_pipeline.audiences.modes import changes_for, describe_fields, last_values
from ac_pipeline.audiences.sql import LOCKED_SETTINGS, UnsafeSql, locked_connection, snippet_tables
from ac_pipeline.defs.activecampaign.resources import AccountTablesResource
from ac_pipeline.defs.audiences.checks import removal_guard_failure, removal_guard_result, removal_guard_spec
from ac_pipeline.defs.audiences.groups import grouped_members
from ac_pipeline.defs.audiences.resources import AudienceCatalog, SyncStateResource
from ac_pipeline.defs.freshness.automation import AUDIENCE_CONDITION
from ac_pipeline.defs.freshness.sources import AUDIENCES_YAML, CUSTOMER_360
from ac_pipeline.defs.meanings import AUDIENCE_CHANGES, AUDIENCE_MEMBERS, STORED_AT
from ac_pipeline.defs.metadata import described, markdown_preview

AUDIENCE_GROUP = "audiences"
# Audience SQL names what came home from ActiveCampaign as `activecampaign.<table>` (e.g. activecampaign.opt_outs).
ACCOUNT_TABLES_ALIAS = "activecampaign"


def account_tables_read(audience: Audience, by_key: dict[str, Audience]) -> list[str]:
    """The account tables (`activecampaign.<table>`) the audience reads, itself or through an audience it excludes."""
    names: set[str] = set()
    seen: set[str] = set()
    pending = [audience]
    parser = duckdb.connect(config=LOCKED_SETTINGS)
    try:
        while pending:
            current = pending.pop()
            if current.key in seen:
                continue
            seen.add(current.key)
            for snippet in sql_snippets(current).values():
                try:
                    names |= snippet_tables(snippet, parser)
                except UnsafeSql:
                    continue  # check_against_columns names the problem, and the lock refuses it anyway
            if current.exclude.suppression_table:
                names.add(current.exclude.suppression_table)
            pending += [by_key[key] for key in current.exclude.audiences if key in by_key]
    finally:
        parser.close()
    return sorted(name for name in names if name.lower().startswith(f"{ACCOUNT_TABLES_ALIAS}."))


def _attach(audience: Audience, by_key: dict[str, Audience], account_tables: AccountTablesResource) -> dict[str, str]:
    """What the audience's locked connection attaches: the account tables, when the audience reads them.

    Only then: an audience that does not read them never waits for a read-back writing the file, nor fails
    because someone holds it open for writing.
    """
    reads = account_tables_read(audience, by_key)
    if not reads:
        return {}
    if not account_tables.exists:
        raise dg.Failure(
            f"audience {audience.key!r} reads {', '.join(reads)}, but nothing has come home from ActiveCampaign "
            f"yet (no {account_tables.path}): run the read-back first (materialize activecampaign_list_members "
            "for the audiences whose lists it reads), then this audience",
            allow_retries=False,
        )
    return {ACCOUNT_TABLES_ALIAS: account_tables.path}


class AudienceChangesConfig(dg.Config):
    # Let this run remove more than the removal guard allows (after a person looked at the changes).
    allow_removals: bool = False


def build_audience_assets(partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    @dg.asset(
        partitions_def=partitions,
        io_manager_key="parquet_io_manager",
        group_name=AUDIENCE_GROUP,
        kinds={"duckdb", "polars"},
        code_version="3",  # 3: treatment and control groups
        deps=[CUSTOMER_360, AUDIENCES_YAML],
        automation_condition=AUDIENCE_CONDITION,
    )
    def audience_members(
        context: dg.AssetExecutionContext,
        customer_360: DuckDBResource,
        audiences: AudienceCatalog,
        account_tables: AccountTablesResource,
        sync_state: SyncStateResource,
    ) -> dg.Output[pl.DataFrame]:
        """The people in this audience right now, as ActiveCampaign contacts.

        One row per customer 360 row the audience's condition selects, with its normalised email,
        mapped fields and a status: `member` (one per email: these are who the list should hold),
        `rejected` (an email ActiveCampaign would refuse, with the reason), `duplicate` (another row
        has the same email and won), `excluded` (on a suppression list or in an excluded audience).
        Audience SQL may also read what came home from ActiveCampaign, e.g. to leave out people who
        opted out of a list (`activecampaign.opt_outs`). An audience with groups gives each member a
        `group`; members of a group that is not sent (a control group) get the status `control`.
        """
        started = time.perf_counter()
        catalog = audiences.load()
        audience = catalog.get(context.partition_key)
        if not Path(customer_360.database).exists():
            raise dg.Failure(
                f"no customer 360 at {customer_360.database}: run `ac-pipeline generate` for the sample one, "
                "or point AC_PIPELINE_CUSTOMER_360 at yours",
                allow_retries=False,
            )
        attach = _attach(audience, catalog.by_key, account_tables)
        # Audience SQL runs with DuckDB's external access off and its configuration locked (see audiences/sql.py).
        with locked_connection(customer_360.database, customer_360.connection_config, attach=attach) as connection:
            check_against_columns(audience, connection, catalog.source)
            rows = compute_members(connection, audience, catalog.by_key, catalog.source)
        # Outside the customer 360's connection: the groups live in the sync state.
        rows, group_metadata = grouped_members(rows, audience, sync_state.store(), context.run_id)
        by_status = dict(rows.group_by("status").len().iter_rows())
        reasons = (
            rows.filter(pl.col("status") != "member")
            .group_by("status", "reason")
            .len()
            .sort("len", descending=True)
            .head(15)
        )
        members = rows.filter(pl.col("status") == "member")
        preview_columns = [c for c in members.columns if c not in ("email_raw", "updated_at", "status", "reason")]
        return dg.Output(
            rows,
            metadata=described(
                {
                    "members": by_status.get("member", 0),
                    "rejected": by_status.get("rejected", 0),
                    "duplicates": by_status.get("duplicate", 0),
                    "excluded": by_status.get("excluded", 0),
                    "selected_rows": rows.height,
                    "seconds": round(time.perf_counter() - started, 3),
                    "not_members_by_reason": dg.MetadataValue.md(markdown_preview(reasons, rows=15)),
                    "preview": dg.MetadataValue.md(markdown_preview(members.select(preview_columns))),
                    "list": audience.list.name,
                    **group_metadata,
                },
                AUDIENCE_MEMBERS,
                added_on_storage=list(STORED_AT),
            ),
        )

    @dg.asset(
        partitions_def=partitions,
        io_manager_key="parquet_io_manager",
        group_name=AUDIENCE_GROUP,
        kinds={"polars"},
        code_version="2",  # 2: sync modes and field write modes (audiences/modes.py)
        check_specs=[removal_guard_spec(partitions)],
        automation_condition=AUDIENCE_CONDITION,
    )
    def audience_changes(
        context: dg.AssetExecutionContext,
        config: AudienceChangesConfig,
        audience_members: pl.DataFrame,
        audiences: AudienceCatalog,
        sync_state: SyncStateResource,
    ):
        """What must change in the ActiveCampaign list so that it holds exactly this audience.

        The diff between the audience's members and the snapshot of the last sync ActiveCampaign
        confirmed: `add` (new to the list), `readd` (back after the pipeline removed them), `update`
        (a field sent to ActiveCampaign changed), `remove` (left the audience: unsubscribed from the
        list), `email_change` (a customer's address changed: their contact keeps its id and takes the
        new one). People who unsubscribed themselves are never added back; they are counted as skipped.
        The audience's sync mode (an `upsert` or `update_only` audience removes nobody) and field write
        modes (`fill`, `never_clear`: what is left as ActiveCampaign holds it) apply here; what they held
        back is counted. The removal guard is checked here and blocks the push when it fails.
        """
        started = time.perf_counter()
        audience = audiences.load().get(context.partition_key)
        state = sync_state.store()
        snapshot = state.snapshot(context.partition_key)
        moded = changes_for(audience_members, snapshot, audience, last_values(state, audience))
        diff = moded.changes  # of the `member` rows
        member_count = audience_members.filter(pl.col("status") == "member").height
        counts = audience_changes_lib.counts(diff)
        synced = snapshot.filter(pl.col("status") == "member").height
        preview = pl.concat(
            [diff.filter(pl.col("op") == op).head(5) for op in (*audience_changes_lib.OPS, EMAIL_CHANGE)],
            how="vertical",
        ).select([c for c in diff.columns if c not in ("email_raw", "updated_at", "fields_hash")])
        yield dg.Output(
            diff,
            metadata=described(
                {
                    "adds": counts["add"],
                    "readds": counts["readd"],
                    "updates": counts["update"],
                    "removals": counts["remove"],
                    "email_changes": diff.filter(pl.col("op") == EMAIL_CHANGE).height,
                    "changes": diff.height,
                    "members": member_count,
                    "synced_members": synced,
                    "skipped_opted_out": audience_changes_lib.skipped_opt_outs(audience_members, snapshot),
                    "sync_mode": audience.sync_mode,
                    "field_modes": ", ".join(f"{name}: {mode}" for name, mode in describe_fields(audience).items()),
                    **{f"skipped_{name}": n for name, n in moded.skipped.items() if name != "not_contacts"},
                    "seconds": round(time.perf_counter() - started, 3),
                    "preview": dg.MetadataValue.md(markdown_preview(preview, rows=20)),
                },
                AUDIENCE_CHANGES,
                added_on_storage=list(STORED_AT),
            ),
        )
        override = config.allow_removals or overridden(context.run.tags.get(OVERRIDE_TAG), audience.key)
        guard = removal_guard_result(audience, synced, counts["remove"], member_count, override)
        yield guard
        if not guard.passed:
            # Instead of Dagster's bare "1 blocking asset check failed": the failed step says why and what to do.
            raise removal_guard_failure(audience, guard)

    return [audience_members, audience_changes]
