"""Two small partitioned assets on the real IO manager: `value` (whatever frame a test gives it) and `copy`,
which loads `value` back through the IO manager, as audience_changes loads audience_members."""

from __future__ import annotations

import dagster as dg
import polars as pl

from ac_pipeline.defs.io import PolarsParquetIOManager

PARTITION = "vip"
NAME = f"value/{PARTITION}.parquet"
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def materialize(
    base_dir: str, frame: pl.DataFrame | None = None
) -> tuple[dg.ExecuteInProcessResult, list[pl.DataFrame]]:
    """Materialize `value` as `frame` or, without a frame, `copy`; never raises. Returns what `copy` loaded."""
    loaded: list[pl.DataFrame] = []
    partitions = dg.StaticPartitionsDefinition([PARTITION])

    @dg.asset(partitions_def=partitions, io_manager_key="parquet_io_manager")
    def value() -> pl.DataFrame:
        assert frame is not None
        return frame

    @dg.asset(partitions_def=partitions, io_manager_key="parquet_io_manager")
    def copy(value: pl.DataFrame) -> pl.DataFrame:
        loaded.append(value)
        return value

    result = dg.materialize(
        [value, copy],
        selection=[value] if frame is not None else [copy],
        partition_key=PARTITION,
        resources={"parquet_io_manager": PolarsParquetIOManager(base_dir=base_dir)},
        run_config=QUIET,
        raise_on_error=False,
    )
    return result, loaded


def failure(result: dg.ExecuteInProcessResult) -> str:
    """The step failure as the event log keeps it: the message and its causes."""
    failures = result.get_step_failure_events()
    assert failures, "the run did not fail"
    error = failures[0].step_failure_data.error
    assert error is not None
    return error.to_string()


def event_log(result: dg.ExecuteInProcessResult) -> str:
    return "\n".join(repr(event) for event in result.all_events)
