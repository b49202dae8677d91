"""The snapshot describes one account's list, and the push never sends a diff against anything else.

- A state file deleted between runs, at several points of a list's life: the push refuses (nothing is
  sent, nobody is taken for an opt-out); adopting the list then syncs it without re-subscribing anyone.
- Another account (another URL, or the built-in sandbox reset) or a forgotten audience: refused, then
  `ac-pipeline state forget` and adopt.
- The built-in sandbox launcher refuses a sandbox started for another home.
- A damaged state file fails with a message naming the file and the way out.
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
ADOPT = {"ops": {"activecampaign_sync": {"config": {"adopt_list": True}}}}


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
def test_a_lost_state_file_is_refused_then_adopted_without_resubscribing_anyone(world: World, moment: str) -> None:
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
    refused = world.pipeline.sync("panel")
    assert not refused.success
    message = failure(refused)
    assert "no record of list 'Panel'" in message and "adopt_list" in message, message
    assert sends(world) == before  # nothing was sent
    assert world.pipeline.state.snapshot("panel").is_empty()

    adopted = world.sync(run_config=ADOPT)
    assert adopted["failed"] == 0
    unsubscribed = (themselves if moment == "after_opt_outs" else set()) | (
        removed if moment != "after_first_sync" else set()
    )
    # Without the state nothing proves an unsubscribe ours: everyone unsubscribed stays so (when in doubt, don't).
    assert adopted["opted_out"] == len(unsubscribed)
    world.assert_truth(never_resubscribed=unsubscribed)
    assert world.sync()["requests"] == 0


def test_another_account_is_refused_until_the_audience_is_forgotten_and_adopted(
    world: World, make_sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.sync()
    other = make_sandbox()
    monkeypatch.setenv("ACTIVECAMPAIGN_API_URL", other.url)
    moved = World(Pipeline(home=world.pipeline.home, sandbox=other, defs=build_definitions()))
    refused = moved.pipeline.sync("panel")
    assert not refused.success
    message = failure(refused)
    assert "the sync state describes list" in message and "ac-pipeline state forget panel" in message, message
    assert sends(moved) == 0

    forget = subprocess.run(
        [sys.executable, "-m", "ac_pipeline.cli", "state", "forget", "panel", "--yes"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=60,
    )
    assert forget.returncode == 0, forget.stdout + forget.stderr
    assert "forgot 'panel'" in forget.stdout
    first = moved.sync()  # the list is new in this account: created, so nothing to adopt
    assert first["adds"] == len(moved.pipeline.audience("panel"))
    moved.assert_truth()


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
    refused = sync()
    assert not refused.success
    message = failure(refused)
    assert "the sync state describes list" in message and "sandbox:" in message, message
    assert int(admin.requests()["by_path_status"].get("POST /api/3/import/bulk_import", {}).get("200", 0)) == 0


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
    assert not result.success
    message = failure(result)
    if damage == "empty":
        # An empty file is no database at all: DuckDB starts a new one, and the list then needs adopting.
        assert "adopt_list" in message, message
    else:
        assert str(state) in message and "cannot be read" in message and "backup" in message, message
