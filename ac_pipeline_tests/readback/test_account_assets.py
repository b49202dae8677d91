"""The account's lists and tags come home: the activecampaign_account_import job against a real sandbox on
127.0.0.1, through the definitions as `dagster dev` loads them."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import duckdb
import pytest

from ac_pipeline.activecampaign import ActiveCampaignClient
from ac_pipeline.sync.consent import parse_date as parse_time
from ac_pipeline_tests.fixtures.pipeline import QUIET, Pipeline, materialization


@pytest.fixture(autouse=True)
def _account_tables_in_the_test_home(monkeypatch: pytest.MonkeyPatch) -> None:
    """The `home` fixture's account tables, not a file the environment names (runs before `home`)."""
    monkeypatch.delenv("AC_PIPELINE_ACTIVECAMPAIGN_DB", raising=False)


def _import(pipeline: Pipeline) -> dg.ExecuteInProcessResult:
    job = pipeline.defs.resolve_job_def("activecampaign_account_import")
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False, run_config=QUIET)
    assert result.success, [e.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    return result


def _rows(pipeline: Pipeline, sql: str) -> list[tuple]:
    with duckdb.connect(str(pipeline.home.activecampaign), read_only=True) as connection:
        return connection.sql(sql).fetchall()


def test_lists_and_tags_come_home(pipeline: Pipeline) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    with ActiveCampaignClient(pipeline.sandbox.url, pipeline.sandbox.api_key) as client:
        for name in ("VIP customers", "Lapsed buyers"):
            client.create_list(name, sender_url="https://shop.example", sender_reminder="You bought from us.")
        for name in ("VIP", "win-back"):
            client.create_tag(name)

    result = _import(pipeline)
    lists = _rows(pipeline, "SELECT name, stringid, created_at, read_at FROM lists ORDER BY name")
    assert [row[:2] for row in lists] == [("Lapsed buyers", "lapsed-buyers"), ("VIP customers", "vip-customers")]
    for _, _, created_at, read_at in lists:
        assert before <= created_at <= read_at
    assert _rows(pipeline, "SELECT name, tag_type FROM tags ORDER BY name") == [
        ("VIP", "contact"),
        ("win-back", "contact"),
    ]
    for asset in ("activecampaign_lists", "activecampaign_tags"):
        metadata = materialization(result, asset)
        assert metadata["rows"] == 2
        assert metadata["requests"] >= 1 and isinstance(metadata["seconds"], float)
        assert "| id | name |" in metadata["preview"]
        assert pipeline.sandbox.api_key not in str(metadata)

    # A second import replaces the tables whole: the new list is there, nothing twice.
    with ActiveCampaignClient(pipeline.sandbox.url, pipeline.sandbox.api_key) as client:
        client.create_list("Newsletter", sender_url="https://shop.example", sender_reminder="You signed up.")
    _import(pipeline)
    assert _rows(pipeline, "SELECT count(*), count(DISTINCT id) FROM lists") == [(3, 3)]
    assert _rows(pipeline, "SELECT count(*) FROM tags") == [(2,)]


def test_activecampaign_dates_are_read_as_utc() -> None:
    assert parse_time("2018-09-28T13:50:41-05:00") == datetime(2018, 9, 28, 18, 50, 41, tzinfo=UTC)
    assert parse_time("2018-09-28 13:50:41") == datetime(2018, 9, 28, 13, 50, 41, tzinfo=UTC)
    assert parse_time("0000-00-00 00:00:00") is None
    assert parse_time(None) is None
