"""The pipeline's inputs in the asset graph: the customer 360 and audiences.yaml, as observable sources.

Observing one records its data version (versions.py); a new version is what declarative automation reads
as "this input changed". The automation sensor observes them itself, on the cron of their condition: no run
of ours writes either file.
"""

from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from ac_pipeline.defs.audiences.resources import AudienceCatalog
from ac_pipeline.defs.freshness.versions import audience_versions, customer_360_version

CUSTOMER_360 = dg.AssetKey("customer_360")
AUDIENCES_YAML = dg.AssetKey("audiences_yaml")
SOURCES_GROUP = "sources"
# How often the automation sensor observes the inputs: the worst case of how long a change waits to be seen.
OBSERVE_EVERY = "*/2 * * * *"


def build_sources(partitions: dg.PartitionsDefinition) -> list[dg.SourceAsset]:
    observed = dg.AutomationCondition.cron_tick_passed(OBSERVE_EVERY).with_label(f"observe on {OBSERVE_EVERY}")

    # The description is given, not taken from the docstring: observable_source_asset does not read one.
    @dg.observable_source_asset(
        key=CUSTOMER_360,
        group_name=SOURCES_GROUP,
        automation_condition=observed,
        description="The customer 360 (DuckDB), read-only: every audience selects its members from it. Its "
        "data version is a hash of every row of every table.",
    )
    def customer_360_source(customer_360: DuckDBResource) -> dg.DataVersion:
        if not Path(customer_360.database).exists():
            return dg.DataVersion("missing")
        return dg.DataVersion(customer_360_version(customer_360.database))

    # Partitioned like the audiences: an edit to one audience's definition changes only its version.
    @dg.observable_source_asset(
        key=AUDIENCES_YAML,
        group_name=SOURCES_GROUP,
        partitions_def=partitions,
        automation_condition=observed,
        description="audiences.yaml: what each audience is, which list it feeds and which fields it maps. Each "
        "audience's data version is a hash of its definition and of the audiences it excludes.",
    )
    def audiences_yaml_source(audiences: AudienceCatalog) -> dg.DataVersionsByPartition:
        return dg.DataVersionsByPartition(
            {key: dg.DataVersion(version) for key, version in audience_versions(audiences.load()).items()}
        )

    return [customer_360_source, audiences_yaml_source]
