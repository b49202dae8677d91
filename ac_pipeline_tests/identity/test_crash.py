"""A push killed in the middle of email changes resumes with nothing lost or duplicated: the next push asks
ActiveCampaign which address the contact has, records the change if it was made, and makes the rest."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ac_pipeline_tests.identity.helpers import KEY, Identity

CHILD = Path(__file__).with_name("crash_child.py")


@pytest.mark.parametrize("mode", ["after-request", "before-request"])
def test_a_push_killed_at_an_email_change_resumes(identity: Identity, tmp_path: Path, mode: str) -> None:
    world = identity.world
    world.sync()
    picked = random.Random(59).sample(sorted(identity.members().items()), 4)
    ids = {customer: identity.contact_id(email) for customer, email in picked}
    total = identity.contacts_total()
    moved = {customer: f"crash-{customer}@example.org" for customer, _ in picked}
    identity.set_email(moved)

    log = tmp_path / "child.log"
    with open(log, "wb") as output:
        child = subprocess.run(
            [sys.executable, str(CHILD), KEY, mode, "2"], env=dict(os.environ), stdout=output, stderr=subprocess.STDOUT
        )
    assert child.returncode == -signal.SIGKILL, log.read_text(errors="replace")[-3000:]
    in_flight = world.pipeline.state.journal(KEY)
    assert in_flight.get_column("op").to_list() == ["email_change"], in_flight
    [old] = in_flight.get_column("email").to_list()
    customer = next(c for c, email in picked if email == old)
    assert identity.contact_id(moved[customer] if mode == "after-request" else old) == ids[customer]

    resumed = world.sync()
    assert resumed["settled_from_journal"] == (1 if mode == "after-request" else 0), resumed
    assert resumed["email_changes"] == (2 if mode == "after-request" else 3), resumed
    assert resumed["adds"] == resumed["removals"] == 0, resumed
    for customer, new in moved.items():
        assert identity.contact_id(new) == ids[customer], customer
    assert identity.contacts_total() == total
    assert identity.admin.requests()["by_path_status"]["PUT /api/3/contacts/{id}"] == {"200": 4}
    identity.assert_truth()
