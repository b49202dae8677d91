"""Reliability, against a real sandbox: the API key kept out of everything the pipeline writes, and a bad
key failing clearly, without retries.
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest
from dagster._serdes import serialize_value

from ac_pipeline.definitions import build_definitions
from ac_pipeline.settings import Paths
from ac_pipeline_tests.fixtures.pipeline import Pipeline
from ac_pipeline_tests.sync.reliability_helpers import (
    AUDIENCES,
    STORM,
    SYNC_STEP,
    assert_in_step,
    failure_message,
    retries_of,
    use_sandbox,
)

# -- the API key stays secret -----------------------------------------------------------------------------

SECRET = "sk-test-DO-NOT-LEAK-123456"
WRONG_SECRET = "sk-test-WRONG-KEY-654321"


def strings_in_duckdb(path: Path) -> str:
    """Every value of every table of a DuckDB file, as text."""
    parts = []
    with duckdb.connect(str(path), read_only=True) as connection:
        tables = connection.execute("SELECT table_name FROM information_schema.tables").fetchall()
        for (table,) in tables:
            parts.append(str(connection.execute(f'SELECT * FROM "{table}"').fetchall()))
    return "\n".join(parts)


def test_the_api_key_never_leaks(
    home: Paths,
    make_sandbox,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    sandbox = make_sandbox(api_key=SECRET, faults=STORM, seed=5)
    use_sandbox(monkeypatch, sandbox)
    pipeline = Pipeline(home=home, sandbox=sandbox, defs=build_definitions())
    debug = {"loggers": {"console": {"config": {"log_level": "DEBUG"}}}}
    seen: list[str] = []
    (tmp_path / "dagster_home").mkdir()
    with dg.DagsterInstance.local_temp(tempdir=str(tmp_path / "dagster_home")) as instance:
        results = []
        # A wrong key first: the AuthError path, its message and its event.
        monkeypatch.setenv("ACTIVECAMPAIGN_API_KEY", WRONG_SECRET)
        refused = pipeline.sync("welcome_series", instance=instance, run_config=debug)
        assert not refused.success
        results.append(refused)
        monkeypatch.setenv("ACTIVECAMPAIGN_API_KEY", SECRET)
        # Every audience under the storm, an incremental sync, and a dry run.
        for key in AUDIENCES:
            results.append(pipeline.sync(key, instance=instance, run_config=debug))
            assert results[-1].success, key
        pipeline.execute("UPDATE customers SET first_name = 'Secretive' WHERE customer_id % 29 = 0")
        results.append(pipeline.sync("vip_customers", instance=instance, run_config=debug))
        results.append(
            pipeline.sync("lapsed_buyers", instance=instance, run_config=debug, tags={"ac_pipeline/dry_run": "true"})
        )
        assert all(r.success for r in results[1:])
        for result in results:
            run_id = result.run_id
            seen.append(serialize_value(instance.get_run_by_id(run_id)))
            for record in instance.all_logs(run_id):
                seen.append(serialize_value(record))
                seen.append(str(record))
            for event in result.all_events:
                seen.append(str(event.message))
                if event.is_step_failure:
                    seen.append(failure_message(result, event.step_key))
            for event in result.get_asset_materialization_events():
                seen.append(str(event.materialization.metadata))
    assert any("ACTIVECAMPAIGN_API_KEY" in text for text in seen)  # the refusal was captured

    captured = capfd.readouterr()
    seen += [captured.out, captured.err, caplog.text, *(r.getMessage() for r in caplog.records)]
    seen.append(strings_in_duckdb(home.state))
    for parquet in home.assets.rglob("*.parquet"):
        seen.append(pl.read_parquet(parquet).cast(pl.String).write_csv())
    seen.append(json.dumps(sandbox.admin.requests()))
    seen.append(json.dumps(sandbox.admin.config()))
    seen.append(repr(pipeline.defs.resources["activecampaign"]))
    # And every byte of every file the pipeline or Dagster wrote (state, WAL, Parquet, event log, run storage).
    for path in tmp_path.rglob("*"):  # the pipeline's home and the Dagster instance's
        if path.is_file():
            seen.append(path.read_bytes().decode("latin-1"))

    for secret in (SECRET, WRONG_SECRET):
        leaks = [text[max(0, text.find(secret) - 200) : text.find(secret) + 50] for text in seen if secret in text]
        assert not leaks, leaks[:3]


# -- a bad key -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad_key", [WRONG_SECRET, "", "  "], ids=["wrong", "empty", "blank"])
def test_a_bad_key_fails_clearly_and_is_not_retried(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, quick_step_retries: None, bad_key: str
) -> None:
    monkeypatch.setenv("ACTIVECAMPAIGN_API_KEY", bad_key)
    result = pipeline.sync("vip_customers", instance=dg.DagsterInstance.ephemeral())
    assert not result.success
    message = failure_message(result, SYNC_STEP)
    assert "ACTIVECAMPAIGN_API_KEY" in message, message
    assert pipeline.sandbox.api_key not in message and (not bad_key.strip() or bad_key not in message)
    assert retries_of(result) == 0, message  # retrying cannot fix a key
    requests = pipeline.sandbox.admin.requests()["by_status"]
    assert requests == ({"403": 1} if bad_key.strip() else {})  # one refused request at most, not retried
    assert pipeline.state.snapshot("vip_customers").is_empty()

    # The right key: it works, with nothing held over from the refused run.
    monkeypatch.setenv("ACTIVECAMPAIGN_API_KEY", pipeline.sandbox.api_key)
    assert pipeline.sync("vip_customers").success
    assert_in_step(pipeline, "vip_customers")
