"""Where asset values live between steps: one Parquet file per asset and partition.

Dagster runs every step in its own process, so audience members and changes are handed from one step
to the next through files. Parquet keeps Polars' types, is fast both ways, and a person can open it
with DuckDB (`SELECT * FROM 'data/assets/audience_changes/vip_customers.parquet'`). Files are written
to a temporary name and renamed, so a crashed step never leaves a half-written value behind.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import polars as pl


class PolarsParquetIOManager(dg.ConfigurableIOManager):
    base_dir: str

    def _path(self, context: dg.OutputContext | dg.InputContext) -> Path:
        key = context.asset_key.path[-1]
        partition = context.asset_partition_key if context.has_asset_partitions else "__all__"
        return Path(self.base_dir) / key / f"{partition}.parquet"

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame) -> None:
        path = self._path(context)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".parquet.partial")
        obj.write_parquet(partial)
        os.replace(partial, path)
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> pl.DataFrame:
        path = self._path(context)
        if not path.exists():
            raise FileNotFoundError(
                f"{path} does not exist: materialize {context.upstream_output.asset_key.to_user_string()} "  # type: ignore[union-attr]
                "for this partition first"
            )
        return pl.read_parquet(path)
