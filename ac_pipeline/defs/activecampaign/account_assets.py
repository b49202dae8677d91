"""The account's lists and tags, brought home from ActiveCampaign into the account tables (readback/tables.py).

Each is read whole (a few hundred rows at most: one request per 100) and replaces its table in one
transaction, so the customer 360's owner and audience SQL always see one complete read.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import polars as pl

from ac_pipeline.defs.activecampaign.assets import POOL
from ac_pipeline.defs.activecampaign.resources import AccountTablesResource, ActiveCampaignResource
from ac_pipeline.defs.metadata import markdown_preview
from ac_pipeline.readback.tables import LIST_COLUMNS, TAG_COLUMNS
from ac_pipeline.sync.consent import parse_date


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def lists_frame(items: Iterable[dict[str, Any]]) -> pl.DataFrame:
    """GET /lists items -> the `lists` table's columns."""
    rows = [
        {
            "id": _text(item.get("id")),
            "name": _text(item.get("name")),
            "stringid": _text(item.get("stringid")),
            "created_at": parse_date(item.get("cdate")),
        }
        for item in items
    ]
    return pl.DataFrame(rows, schema=LIST_COLUMNS) if rows else pl.DataFrame(schema=LIST_COLUMNS)


def tags_frame(items: Iterable[dict[str, Any]]) -> pl.DataFrame:
    """GET /tags items -> the `tags` table's columns."""
    rows = [
        {
            "id": _text(item.get("id")),
            "name": _text(item.get("tag")),
            "tag_type": _text(item.get("tagType")),
            "description": _text(item.get("description")),
            "created_at": parse_date(item.get("cdate")),
        }
        for item in items
    ]
    return pl.DataFrame(rows, schema=TAG_COLUMNS) if rows else pl.DataFrame(schema=TAG_COLUMNS)


def _result(
    frame: pl.DataFrame, requests: int, started: float, account_tables: AccountTablesResource
) -> dg.MaterializeResult:
    return dg.MaterializeResult(
        metadata={
            "rows": frame.height,
            "requests": requests,
            "seconds": round(time.perf_counter() - started, 3),
            "preview": dg.MetadataValue.md(markdown_preview(frame, rows=20)),
            "path": dg.MetadataValue.path(account_tables.path),
        }
    )


@dg.asset(
    group_name="activecampaign",
    kinds={"activecampaign", "duckdb"},
    pool=POOL,  # its requests spend the account's budget, which the pushes share
)
def activecampaign_lists(
    activecampaign: ActiveCampaignResource, account_tables: AccountTablesResource
) -> dg.MaterializeResult:
    """The account's lists as ActiveCampaign holds them (id, name, stringid, when created): to see which lists
    exist, to build audiences on them, or to join with the customer 360 and the lists' members.

    Stored in the `lists` table of the account tables (activecampaign.duckdb), replaced whole on each read.
    """
    started = time.perf_counter()
    read_at = datetime.now(UTC)
    # Read everything, then let go of the network before the file is opened (DESIGN: never both at once).
    with activecampaign.get_client() as client:
        frame = lists_frame(client._paginate("lists", "lists"))
        requests = client.stats.requests
    account_tables.tables().write_lists(frame, read_at)
    return _result(frame, requests, started, account_tables)


@dg.asset(
    group_name="activecampaign",
    kinds={"activecampaign", "duckdb"},
    pool=POOL,
)
def activecampaign_tags(
    activecampaign: ActiveCampaignResource, account_tables: AccountTablesResource
) -> dg.MaterializeResult:
    """The account's tags as ActiveCampaign holds them (id, name, type, description, when created): the
    vocabulary the account's contacts are labelled with, to build audiences on or to join with the customer 360.

    Stored in the `tags` table of the account tables (activecampaign.duckdb), replaced whole on each read.
    """
    started = time.perf_counter()
    read_at = datetime.now(UTC)
    with activecampaign.get_client() as client:
        frame = tags_frame(client.list_tags())
        requests = client.stats.requests
    account_tables.tables().write_tags(frame, read_at)
    return _result(frame, requests, started, account_tables)


ACCOUNT_ASSETS = [activecampaign_lists, activecampaign_tags]

account_import_job = dg.define_asset_job(
    "activecampaign_account_import",
    selection=dg.AssetSelection.assets(*ACCOUNT_ASSETS),
    description="Bring the ActiveCampaign account's lists and tags home into the account tables "
    "(activecampaign.duckdb), where the customer 360's owner and audience SQL can join them.",
)
