"""The pipeline as Dagster loads it: definitions that validate from the command line, assets that say what
they mean (the push pooled and retried), and the built-in sandbox started on first use.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from ac_pipeline.definitions import build_definitions
from ac_pipeline.defs.activecampaign.local_sandbox import stop_local_sandbox
from ac_pipeline.sandbox.admin_client import SandboxAdmin
from ac_pipeline.settings import Paths
from ac_pipeline_tests.fixtures.network import free_port, port_open
from ac_pipeline_tests.fixtures.pipeline import QUIET, materialization
from ac_pipeline_tests.sync.orchestration_helpers import JOB, KEYS, PUSH, REPO, failure_message, instance_dir

# --- definitions ---------------------------------------------------------------------------------


def test_definitions_validate_from_the_command_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "data" / "audiences.yaml", home / "audiences.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AC_PIPELINE_", "ACTIVECAMPAIGN_", "DAGSTER_"))}
    env.update(AC_PIPELINE_HOME=str(home), DAGSTER_HOME=str(instance_dir(tmp_path / "dagster_home")))
    dagster = Path(sys.executable).parent / "dagster"
    result = subprocess.run(
        [str(dagster), "definitions", "validate", "-m", "ac_pipeline.definitions"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "success" in (result.stdout + result.stderr).lower()
    # Loading the definitions creates no data: no customer 360, no state, no sandbox.
    assert sorted(p.name for p in home.iterdir()) == ["audiences.yaml"]


def test_every_asset_says_what_it_means_and_the_push_is_pooled_and_retried(home: Paths) -> None:
    defs = build_definitions()
    specs = list(defs.resolve_all_asset_specs())
    talking_to_activecampaign = {PUSH, "activecampaign_list_members", "activecampaign_lists", "activecampaign_tags"}
    assert {s.key.to_user_string() for s in specs} == {
        "customer_360",
        "audiences_yaml",
        "audience_members",
        "audience_changes",
    } | talking_to_activecampaign
    for spec in specs:
        assert spec.description and len(spec.description.split()) >= 10, spec.key
    job = defs.resolve_job_def(JOB)
    assert job.description
    assert job.partitions_def.get_partition_keys() == KEYS

    for name in talking_to_activecampaign:  # they share the account's budget
        assert defs.resolve_assets_def(name).op.pool == "activecampaign", name
    policy = defs.resolve_assets_def(PUSH).op.retry_policy
    assert policy is not None and policy.max_retries >= 1
    # Only those talk to ActiveCampaign: the audience steps take no slot in the pool.
    for name in ("audience_members", "audience_changes"):
        assert defs.resolve_assets_def(name).op.pool is None

    [check] = list(defs.resolve_assets_def("audience_changes").check_specs)
    assert check.name == "removal_guard" and check.blocking and check.description
    [drift] = list(defs.resolve_assets_def("activecampaign_list_members").check_specs)
    assert drift.name == "drift" and not drift.blocking and drift.description


# --- the built-in sandbox -----------------------------------------------------------------------


def _wait_until_closed(port: int, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not port_open(port):
            return True
        time.sleep(0.1)
    return False


def test_without_an_account_the_sync_starts_the_built_in_sandbox(home: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("AC_PIPELINE_SANDBOX_PORT", str(port))
    monkeypatch.setenv("AC_PIPELINE_SANDBOX_SPEED", "50")
    assert not port_open(port)
    defs = build_definitions()
    assert defs.resources["activecampaign"].uses_sandbox
    try:
        result = defs.resolve_job_def(JOB).execute_in_process(
            partition_key="welcome_series",
            run_config=QUIET,
            instance=dg.DagsterInstance.ephemeral(),
            raise_on_error=False,
        )
        assert result.success, failure_message(result.all_events)
        pushed = materialization(result, PUSH)
        assert pushed["destination"] == "the built-in sandbox"
        assert home.sandbox_state.exists()
        assert Path(f"{home.sandbox_state}.pid").exists()
        admin = SandboxAdmin(f"http://127.0.0.1:{port}")
        try:
            assert admin.config()["speed"] == 50
            members = pl.read_parquet(home.assets / "audience_members" / "welcome_series.parquet")
            expected = set(members.filter(pl.col("status") == "member").get_column("email"))
            assert set(admin.members("Welcome series")) == expected and pushed["confirmed"] == len(expected)
        finally:
            admin.close()
    finally:
        stopped = stop_local_sandbox(home.sandbox_state)
        closed = _wait_until_closed(port)
    assert stopped and closed
    assert not Path(f"{home.sandbox_state}.pid").exists()
    assert home.sandbox_state.exists()  # the account's state outlives the process
