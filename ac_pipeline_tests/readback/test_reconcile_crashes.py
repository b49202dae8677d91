"""A read-back killed at every point of its work loses nothing: the snapshot is as it was (or the whole
reconciliation is in it), and the next read-back and sync repair the list exactly.

Each case makes the same drift by hand (people opt out, contacts are deleted, a field is edited), kills a
read-back in a process of its own at one point (a page of the read, inside the commit, after it), then reads back
again in process and syncs.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from ac_pipeline_tests.readback.helpers import reconcile
from ac_pipeline_tests.sync.consent_world import KEY, LIST, World

CHILD = Path(__file__).with_name("reconcile_child.py")
POINTS = ["page:2", "before-commit", "after-commit"]


def kill_a_read_back(die_at: str, full: bool, log: Path) -> int:
    command = [sys.executable, str(CHILD), KEY, die_at] + (["--full"] if full else [])
    with open(log, "wb") as output:
        child = subprocess.run(command, env=dict(os.environ), stdout=output, stderr=subprocess.STDOUT, timeout=180)
    return child.returncode


@pytest.mark.parametrize("die_at", POINTS)
def test_a_read_back_killed_anywhere_loses_nothing(world: World, die_at: str, tmp_path: Path) -> None:
    world.sync()
    reconcile(world)
    rng = random.Random(POINTS.index(die_at))
    hit = rng.sample(sorted(world.subscribed()), 6)
    opted, deleted, edited = hit[:2], hit[2:4], hit[4:]
    for email in opted:
        world.admin.unsubscribe(email, LIST, campaign=3, message=3)
    for email in deleted:
        world.admin.delete_contact(email)
    for email in edited:
        world.admin.set_field_value(email, "City", "Edited by hand")
    before = world.snapshot().sort("email")

    code = kill_a_read_back(die_at, full=die_at == "page:2", log=tmp_path / "child.log")
    assert code == -9, (tmp_path / "child.log").read_text()[-3000:]
    after = world.snapshot().sort("email")
    if die_at == "after-commit":
        assert world.status_of(set(opted)) == dict.fromkeys(opted, "opted_out")
        assert not set(deleted) & set(after.get_column("email"))
    else:
        assert after.equals(before), "a killed read-back changed the snapshot"

    reconcile(world)
    world.sync()
    world.assert_truth(never_resubscribed=set(opted))
    assert world.status_of(set(opted)) == dict.fromkeys(opted, "opted_out")
    leftover = reconcile(world, full=True)
    assert sum(leftover[f"drift_{k}"] for k in ("opted_out", "bounced", "gone", "unmanaged", "edited")) == 0, leftover
    assert pl.Series(deleted).is_in(list(world.subscribed())).all()  # sent again as new contacts
