"""Where asset values live between steps: one Parquet file per asset and partition.

Dagster runs every step in its own process, so audience members and changes are handed from one step
to the next through files. Parquet keeps Polars' types, is fast both ways, and a person can open it
with DuckDB (`SELECT * FROM 'data/assets/audience_changes/vip_customers.parquet'`). The files sit in a
local folder by default, or in an object store every step can reach (`AC_PIPELINE_ASSETS=s3://bucket/prefix`,
see defs/object_store.py). Either way a value is published whole or not at all, so a crashed step never
leaves a half-written value behind.
"""

from __future__ import annotations

import dagster as dg
import polars as pl

from ac_pipeline.defs.object_store import LocalFolder, open_store


class PolarsParquetIOManager(dg.ConfigurableIOManager):
    # A folder, or any fsspec URL (s3://bucket/prefix): settings.paths().assets, as written.
    base_dir: str

    def _name(self, context: dg.OutputContext | dg.InputContext) -> str:
        key = context.asset_key.path[-1]
        partition = context.asset_partition_key if context.has_asset_partitions else "__all__"
        return f"{key}/{partition}.parquet"

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame) -> None:
        store = open_store(self.base_dir)
        location = store.write(self._name(context), obj)
        if isinstance(store, LocalFolder):
            context.add_output_metadata({"path": dg.MetadataValue.path(location)})
        else:
            context.add_output_metadata({"url": dg.MetadataValue.url(location)})

    def load_input(self, context: dg.InputContext) -> pl.DataFrame:
        store = open_store(self.base_dir)
        name = self._name(context)
        frame = store.read(name)
        if frame is None:
            raise FileNotFoundError(
                f"{store.locate(name)} does not exist: materialize "
                f"{context.upstream_output.asset_key.to_user_string()} "  # type: ignore[union-attr]
                "for this partition first"
            )
        return frame
