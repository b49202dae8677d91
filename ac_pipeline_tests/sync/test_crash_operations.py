"""SIGKILL at seeded points of removals, updates and re-adds (not only adds), then a resumed run.

Each trial starts from a synced list, makes one kind of change, runs the sync in a child process and
kills it once the sandbox has seen a seeded amount of progress (bulk imports accepted, polls answered,
one-by-one list changes made) or inside a snapshot commit. Then it checks the truth: the resumed run
succeeds, the list equals the audience, the snapshot equals the list, the journal is empty — and the
sync's own unsubscribes were not taken for opt-outs: everyone removed comes back when the audience
wants them.
"""

from __future__ import annotations

import random
import shutil
import signal
from pathlib import Path

import pytest

from ac_pipeline.definitions import build_definitions
from ac_pipeline.settings import Paths
from ac_pipeline_tests.fixtures.pipeline import Pipeline
from ac_pipeline_tests.fixtures.sandbox import point_at
from ac_pipeline_tests.sync.consent_world import PANEL_YAML, World
from ac_pipeline_tests.sync.reliability_helpers import run_crash_child

PROGRESS = {
    "bulk": "POST /api/3/import/bulk_import",
    "polls": "GET /api/3/import/info",
    "list_status": "POST /api/3/contactLists",
}
# Every 5th customer: about 4,000 members, 16 bulk imports for a first sync.
# The removal guard would stop a sync that removes 600 of them: these trials mean it.
BIG_PANEL = PANEL_YAML.replace("customer_id % 40 = 0", "customer_id % 5 = 0").replace(
    "tags: [panel]", "tags: [panel]\n    removal_guard: {max_share: 1.0}"
)


def trials(seed: int) -> list[tuple[str, str, int]]:
    """(change, how the child dies, parameter), seeded."""
    rng = random.Random(seed)
    return [
        ("remove", "bulk", rng.randint(1, 2)),  # unsubscribes sent, none confirmed
        ("remove", "polls", rng.randint(1, 2)),  # some confirmed, not all committed
        ("update", "after-commit", 1),  # a commit in the WAL only
        ("readd", "list_status", rng.randint(2, 25)),  # some re-subscribed, none imported
        # The bulk re-add's first snapshot commit is its import's outcomes: all re-subscribed, none recorded.
        ("readd", "before-commit", 1),
    ]


def done_so_far(world: World, what: str) -> int:
    return int(world.admin.requests()["by_path_status"].get(PROGRESS[what], {}).get("200", 0))


def fresh(world: World) -> None:
    world.admin.reset()
    home = world.pipeline.home
    for leftover in (home.state, Path(f"{home.state}.wal")):
        leftover.unlink(missing_ok=True)
    shutil.rmtree(home.assets, ignore_errors=True)


def run_and_kill(world: World, how: str, n: int, log: Path) -> None:
    die_in = f"{how}:{n}" if how.endswith("commit") else ""
    before = done_so_far(world, how) if how in PROGRESS else 0
    kill_when = (lambda: done_so_far(world, how) - before >= n) if how in PROGRESS else None
    returncode = run_crash_child("panel", die_in, log, kill_when)
    assert returncode == -signal.SIGKILL, (how, n, returncode, log.read_text(errors="replace")[-3000:])
    world.admin.wait_for_imports()


@pytest.mark.parametrize("seed", [5])
def test_killed_removals_updates_and_readds_resume_without_drift_or_false_opt_outs(
    home: Paths, make_sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, seed: int
) -> None:
    sandbox = make_sandbox(speed=20.0)
    home.audiences.write_text(BIG_PANEL)
    point_at(monkeypatch, sandbox)
    world = World(Pipeline(home=home, sandbox=sandbox, defs=build_definitions()))
    baseline = home.customer_360.read_bytes()
    for trial, (change, how, n) in enumerate(trials(seed)):
        fresh(world)
        home.customer_360.write_bytes(baseline)
        world.sync()
        members = sorted(world.pipeline.audience("panel"))
        # 600 changes are 3 bulk imports; 30 re-adds take the bulk re-add path (sync.readds): their records
        # read in one request, a status-1 POST each, then one bulk import.
        moved = set(random.Random(seed + trial).sample(members, 600 if change != "readd" else 30))
        if change == "readd":
            world.leave(moved)
            world.sync()
            world.come_back(moved)
        elif change == "remove":
            world.leave(moved)
        else:
            world.rename(moved, f"Trial{trial}")

        run_and_kill(world, how, n, tmp_path / f"child-{trial}.log")
        resumed = world.sync()
        assert resumed["failed"] == 0, (trial, change, how)
        world.assert_truth()
        status = world.status_of(moved)
        expected = {"remove": "removed", "update": "member", "readd": "member"}[change]
        assert set(status.values()) == {expected}, (trial, change, how, n, sorted(set(status.values())))

        if change == "remove":
            # The crash's own unsubscribes were ours (all `removed` above, none `opted_out`): a sample comes
            # back when the audience wants them (25 of them: more than BULK_READDS, so they take the bulk re-add path).
            returning = set(random.Random(trial).sample(sorted(moved), 25))
            world.come_back(returning)
            back = world.sync()
            assert back["opted_out"] == 0 and back["readds"] == len(returning), (trial, how, n)
            assert returning <= world.subscribed()
            world.assert_truth()
