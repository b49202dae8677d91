"""Treatment and control groups inside the audience_members asset: assign, store, and count them."""

from __future__ import annotations

from typing import Any

import dagster as dg
import polars as pl

from ac_pipeline.audiences.config import Audience
from ac_pipeline.audiences.groups import group_counts, with_groups
from ac_pipeline.defs.metadata import markdown_preview
from ac_pipeline.state.groups import GroupState
from ac_pipeline.state.store import SyncState


def grouped_members(
    rows: pl.DataFrame, audience: Audience, state: SyncState, run_id: str
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The audience's rows with their groups (audiences.groups), the assignments stored in one transaction, and
    the metadata that counts each group. An audience without groups is returned as it is, and the state is not
    touched."""
    if not audience.groups:
        return rows, {}
    store = GroupState(state)
    grouped, assignments = with_groups(rows, audience, store.assignments(audience.key))
    store.replace(audience.key, assignments, run_id)
    counts = group_counts(assignments, audience)
    metadata: dict[str, Any] = {"groups": dg.MetadataValue.md(markdown_preview(counts, rows=len(audience.groups)))}
    for row in counts.iter_rows(named=True):
        metadata[f"group_{row['group']}"] = row["members"]
        metadata[f"group_{row['group']}_moved"] = row["moved"]
    metadata["control"] = grouped.filter(pl.col("status") == "control").height
    return grouped, metadata
