"""`ac-pipeline` from the command line, end to end: the demo from a fresh home with no account, no
DAGSTER_HOME and no sandbox running, as someone trying the project for the first time would run it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg

from ac_pipeline.defs.activecampaign.local_sandbox import stop_local_sandbox
from ac_pipeline_tests.fixtures.network import free_port, port_open

REPO = Path(__file__).resolve().parent.parent
KEYS = ["vip_customers", "lapsed_buyers", "newsletter_canada", "welcome_series"]
COLUMNS = ["members", "rejected", "adds", "updates", "removals", "requests", "seconds"]


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment of someone with a fresh clone: nothing of ours set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AC_PIPELINE_", "ACTIVECAMPAIGN_", "DAGSTER_"))}
    env.update(extra)
    return env


def _table(output: str, title: str) -> dict[str, dict[str, float]]:
    """The rows of one of the demo's sync tables, by audience."""
    section = output.split(title, 1)[1]
    lines = section.splitlines()[1:]
    assert lines[0].split() == ["audience", *COLUMNS], lines[0]
    rows: dict[str, dict[str, float]] = {}
    for line in lines[1:]:
        if not line.strip():
            break
        key, *values = line.split()
        assert "FAILED" not in line, line
        rows[key] = dict(zip(COLUMNS, (float(v.replace(",", "")) for v in values), strict=True))
    return rows


def test_help_lists_every_sub_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ac_pipeline.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_clean_env(),
    )
    assert result.returncode == 0, result.stderr
    for command in ("generate", "sandbox", "demo"):
        assert re.search(rf"^\s+{command}\s", result.stdout, re.MULTILINE), result.stdout
    script = Path(sys.executable).parent / "ac-pipeline"  # the installed entry point
    if script.exists():
        assert (
            subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60, env=_clean_env()).stdout
            == result.stdout
        )


def test_the_demo_syncs_everything_then_only_what_changed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "data" / "audiences.yaml", home / "audiences.yaml")
    port = free_port()
    env = _clean_env(AC_PIPELINE_HOME=str(home), AC_PIPELINE_SANDBOX_PORT=str(port))
    # From another directory, so that nothing lands in the repository's data/.
    try:
        result = subprocess.run(
            [sys.executable, "-m", "ac_pipeline.cli", "demo", "--customers", "5000", "--speed", "50"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        # Whatever happened, the sandbox the demo may have left behind (it runs in a session of its own).
        left_behind = stop_local_sandbox(home / "sandbox.sqlite")
    assert not left_behind, "the demo left its sandbox running"
    output = result.stdout
    assert result.returncode == 0, output + result.stderr[-5000:]
    assert "the built-in sandbox at speed 50" in output

    first = _table(output, "sync 1: every audience")
    second = _table(output, "sync 2: only what changed")
    assert list(first) == list(second) == KEYS
    for key in KEYS:
        assert first[key]["members"] > 0 and first[key]["adds"] == first[key]["members"], (key, first[key])
        assert first[key]["updates"] == first[key]["removals"] == 0
    # The second sync sends the changes, not the audiences again.
    changed = sum(row["adds"] + row["updates"] + row["removals"] for row in second.values())
    assert 0 < changed < sum(row["adds"] for row in first.values()) / 2

    # The runs are kept in a Dagster home inside the pipeline's home, configured for one push at a time.
    dagster_home = home / "dagster_home"
    assert f"DAGSTER_HOME={dagster_home}" in output
    assert "default_limit: 1" in (dagster_home / "dagster.yaml").read_text()
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        runs = instance.get_runs(dg.RunsFilter(job_name="audience_sync"))
        assert len(runs) == 2 * len(KEYS)
        assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs)
        assert sorted(run.tags["dagster/partition"] for run in runs) == sorted(KEYS * 2)
        assert len(instance.get_materialized_partitions(dg.AssetKey("activecampaign_sync"))) == len(KEYS)
        # In requests, the audiences are their bulk imports. (Not all requests: a handful of changes go one contact
        # at a time, several requests each, and on a busy machine 429s are sent again, so a second sync of a few
        # changes to these small audiences may take as many requests as the first one's few imports did.)
        pushes = instance.fetch_materializations(dg.AssetKey("activecampaign_sync"), limit=100).records
        batches = [
            int(r.asset_materialization.metadata["batches"].value) for r in sorted(pushes, key=lambda r: r.storage_id)
        ]
        assert len(batches) == 2 * len(KEYS)
        assert sum(batches[len(KEYS) :]) < sum(batches[: len(KEYS)]), batches  # sync 2 imported only the changes

    # The sandbox the demo started is stopped again; its account stays on disk.
    assert (home / "sandbox.sqlite").exists() and (home / "customer_360.duckdb").exists()
    assert not (home / "sandbox.sqlite.pid").exists()
    deadline = time.monotonic() + 15
    while port_open(port) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not port_open(port), f"a sandbox still answers on port {port}"


def test_the_connection_check_says_what_it_found_or_what_to_fix(sandbox, monkeypatch, capsys) -> None:
    from ac_pipeline.cli import main

    monkeypatch.setenv("ACTIVECAMPAIGN_API_URL", sandbox.url)
    monkeypatch.setenv("ACTIVECAMPAIGN_API_KEY", sandbox.api_key)
    assert main(["check"]) == 0
    assert "user groups: Admin" in capsys.readouterr().out

    monkeypatch.setenv("ACTIVECAMPAIGN_API_KEY", "wrong-key-7f3a9c")
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert "ACTIVECAMPAIGN_API_KEY" in out
    assert "wrong-key-7f3a9c" not in out and sandbox.api_key not in out
