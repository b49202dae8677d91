"""Import callbacks in real Dagster runs against a real account's settings (AC_PIPELINE_CALLBACK_URL and
AC_PIPELINE_CALLBACK_LISTEN, here on loopback), and a run killed while callbacks settle its batches.

A kill loses the listener and every callback still to come; the next run settles what was in flight from the
list's records (the intent journal), as it does when polls are lost, and nothing drifts.
"""

from __future__ import annotations

import random
import signal
from pathlib import Path

import pytest

from ac_pipeline.definitions import build_definitions
from ac_pipeline.settings import Paths
from ac_pipeline_tests.fixtures.network import free_port
from ac_pipeline_tests.fixtures.pipeline import Pipeline
from ac_pipeline_tests.fixtures.sandbox import point_at
from ac_pipeline_tests.sync.consent_world import World
from ac_pipeline_tests.sync.reliability_helpers import run_crash_child
from ac_pipeline_tests.sync.test_crash_operations import BIG_PANEL, fresh

INFO = "GET /api/3/import/info"
IMPORT = "POST /api/3/import/bulk_import"


def callbacks_sent(world: World) -> int:
    return int(world.admin.imports()["callbacks_sent"])


def make_world(home: Paths, make_sandbox, monkeypatch: pytest.MonkeyPatch) -> World:
    """The panel audience against a sandbox at speed 20, with callbacks to a loopback port (the environment is
    read when the definitions are built)."""
    sandbox = make_sandbox(speed=20.0)
    home.audiences.write_text(BIG_PANEL)
    point_at(monkeypatch, sandbox)
    port = free_port()
    monkeypatch.setenv("AC_PIPELINE_CALLBACK_LISTEN", f"127.0.0.1:{port}")
    monkeypatch.setenv("AC_PIPELINE_CALLBACK_URL", f"http://127.0.0.1:{port}/ac-callback")
    return World(Pipeline(home=home, sandbox=sandbox, defs=build_definitions()))


@pytest.fixture
def world(home: Paths, make_sandbox, monkeypatch: pytest.MonkeyPatch) -> World:
    return make_world(home, make_sandbox, monkeypatch)


def test_a_run_with_a_callback_url_settles_its_batches_by_callback(world: World) -> None:
    first = world.sync()
    assert first["adds"] >= 3_000 and first["failed"] == 0
    assert first["batches_called_back"] == first["batches"] >= first["adds"] // 250
    # One request per batch, plus what finds or creates the list, fields and tags, whatever the size.
    by_path = world.admin.requests()["by_path"]
    accepted = int(world.admin.requests()["by_path_status"][IMPORT]["200"])  # a throttled import, resent, once
    assert INFO not in by_path and accepted == first["batches"]
    assert first["requests"] - first["batches"] <= 12, by_path
    world.assert_truth()


def test_the_import_callbacks_switch_turns_them_off(home: Paths, make_sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AC_PIPELINE_IMPORT_CALLBACKS", "off")
    world = make_world(home, make_sandbox, monkeypatch)
    first = world.sync()
    assert first["batches_called_back"] == 0 and first["failed"] == 0
    assert world.admin.requests()["by_path"][INFO] >= first["batches"]
    assert world.admin.imports()["callbacks_sent"] == 0
    world.assert_truth()


@pytest.mark.parametrize("seed", [11])
def test_a_run_killed_while_callbacks_come_in_resumes_without_drift(
    world: World, home: Paths, tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    baseline = home.customer_360.read_bytes()
    for trial, change in enumerate(("add", "remove", "update")):
        fresh(world)
        home.customer_360.write_bytes(baseline)
        if change != "add":
            world.sync()
            moved = set(rng.sample(sorted(world.pipeline.audience("panel")), 2_000))  # 8 bulk imports
            world.leave(moved) if change == "remove" else world.rename(moved, f"Trial{trial}")
        before, n = callbacks_sent(world), rng.randint(1, 4)
        log = tmp_path / f"child-{trial}.log"
        returncode = run_crash_child("panel", "", log, lambda before=before, n=n: callbacks_sent(world) - before >= n)
        assert returncode == -signal.SIGKILL, (change, returncode, log.read_text(errors="replace")[-3000:])
        world.admin.wait_for_imports()

        resumed = world.sync()
        assert resumed["failed"] == 0, (trial, change)
        world.assert_truth()
