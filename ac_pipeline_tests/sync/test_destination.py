"""The snapshot describes one account's list, and the push never sends a diff against anything else.

When the list is not the one the snapshot describes, the push reads it back and rebuilds the snapshot from
it first (a resync), by itself:
- a state file deleted between runs, at several points of a list's life: a list in step costs 0 writes,
  and nobody unsubscribed is re-subscribed (without the state nothing proves an unsubscribe the sync's);
- another account (another URL, or the built-in sandbox reset): the audience is synced there from scratch;
- a forgotten audience (`ac-pipeline state forget`): the same resync.
Also: the built-in sandbox launcher refuses a sandbox started for another home, and a damaged state file
fails with a message naming the file and the way out.
"""

from __future__ import annotations

import os
import subprocess
import sys

import dagster as dg
import pytest

from ac_pipeline.definitions import build_definitions
from ac_pipeline.sandbox import SandboxServer
from ac_pipeline.settings import Paths
from ac_pipeline_tests.fixtures.pipeline import Pipeline
from ac_pipeline_tests.sync.consent_world import LIST, PANEL_YAML, World

SENDS = ("POST /api/3/import/bulk_import", "POST /api/3/contact/sync", "POST /api/3/contactLists")


def sends(world: World) -> int:
    by_path = world.admin.requests()["by_path_status"]
    return sum(sum(int(n) for n in by_path.get(path, {}).values()) for path in SENDS)


def failure(result: dg.ExecuteInProcessResult) -> str:
    """Every step failure's message, with its causes."""
    messages = []
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            error = event.event_specific_data.error  # type: ignore[union-attr]
            while error is not None:
                messages.append(error.message)
                error = error.cause
    return " ".join(messages)


def delete_state(world: World) -> None:
    state = world.pipeline.home.state
    for leftover in (state, state.with_name(state.name + ".wal")):
        leftover.unlink(missing_ok=True)


@pytest.mark.parametrize("moment", ["after_first_sync", "after_removals", "after_opt_outs"])
def test_a_lost_state_file_resyncs_without_resubscribing_anyone(world: World, moment: str) -> None:
    world.sync()
    members = sorted(world.pipeline.audience("panel"))
    themselves, removed = set(members[:3]), set(members[3:6])
    if moment in ("after_removals", "after_opt_outs"):
        world.leave(removed)
        world.sync()
        world.come_back(removed)  # back in the audience, but the state that proved the removal ours is lost
    if moment == "after_opt_outs":
        for email in themselves:
            world.admin.unsubscribe(email, LIST, campaign=2, message=2)
    delete_state(world)

    before = sends(world)
    resynced = world.sync()
    assert resynced["resynced"] is True and resynced["failed"] == 0
    unsubscribed = (themselves if moment == "after_opt_outs" else set()) | (
        removed if moment != "after_first_sync" else set()
    )
    # Without the state nothing proves an unsubscribe ours: everyone unsubscribed stays so (when in doubt, don't).
    assert world.status_of(unsubscribed) == dict.fromkeys(unsubscribed, "opted_out")
    world.assert_truth(never_resubscribed=unsubscribed)
    assert sends(world) == before  # the list was in step with what may be sent: nothing was written
    assert world.sync()["requests"] == 1


@pytest.mark.parametrize("how", ["another_url", "forgotten"])
def test_another_account_or_a_forgotten_audience_resyncs(
    world: World, how: str, make_sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.sync()
    if how == "another_url":
        other = make_sandbox()
        monkeypatch.setenv("ACTIVECAMPAIGN_API_URL", other.url)
        world = World(Pipeline(home=world.pipeline.home, sandbox=other, defs=build_definitions()))
    else:
        forget = subprocess.run(
            [sys.executable, "-m", "ac_pipeline.cli", "state", "forget", "panel", "--yes"],
            capture_output=True,
            text=True,
            env=dict(os.environ),
            timeout=60,
        )
        assert forget.returncode == 0, forget.stdout + forget.stderr
        assert "forgot 'panel'" in forget.stdout
    before = sends(world)
    first = world.sync()
    assert first["resynced"] is True
    if how == "another_url":  # the list is new in this account: everyone is sent
        assert first["adds"] == len(world.pipeline.audience("panel"))
    else:  # the same list, still in step: nothing to write
        assert sends(world) == before
    world.assert_truth()


def test_the_built_in_sandbox_reset_is_another_account(home: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    home.audiences.write_text(PANEL_YAML)
    defs = build_definitions()
    job = defs.resolve_job_def("audience_sync")

    def sync() -> dg.ExecuteInProcessResult:
        return job.execute_in_process(
            partition_key="panel", instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
        )

    assert sync().success
    resource = defs.resources["activecampaign"]
    from ac_pipeline.sandbox.admin_client import SandboxAdmin

    admin = SandboxAdmin(f"http://127.0.0.1:{resource.sandbox_port}")
    admin.reset()  # a new account behind the same port and file
    again = sync()
    assert again.success
    assert int(admin.requests()["by_path_status"].get("POST /api/3/import/bulk_import", {}).get("200", 0)) >= 1
    pushed = next(
        e.materialization.metadata
        for e in again.get_asset_materialization_events()
        if e.asset_key.path[-1] == "activecampaign_sync"
    )
    assert pushed["resynced"].value is True


def test_the_launcher_refuses_a_sandbox_started_for_another_home(
    home: Paths, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    home.audiences.write_text(PANEL_YAML)
    foreign_state = tmp_path_factory.mktemp("elsewhere") / "sandbox.sqlite"
    with SandboxServer(api_key="sandbox-key", state_path=str(foreign_state)) as foreign:
        monkeypatch.setenv("AC_PIPELINE_SANDBOX_PORT", str(foreign.port))
        result = (
            build_definitions()
            .resolve_job_def("audience_sync")
            .execute_in_process(partition_key="panel", instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
        )
        assert not result.success
        message = failure(result)
        assert "started for another home" in message and str(foreign_state) in message, message
        assert int(foreign.admin.requests()["total"]) == 0
        # Not retried: a step retry cannot make it this home's sandbox.
        assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_state_file_says_which_file_and_the_way_out(world: World, damage: str) -> None:
    world.sync()
    state = world.pipeline.home.state
    data = state.read_bytes()
    state.with_name(state.name + ".wal").unlink(missing_ok=True)
    state.write_bytes({"truncated": data[: len(data) // 3], "garbage": b"not a database" * 100, "empty": b""}[damage])
    result = world.pipeline.sync("panel")
    message = failure(result)
    assert not result.success
    assert str(state) in message and "cannot be read" in message and "backup" in message, message
