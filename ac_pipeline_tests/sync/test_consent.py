"""A person unsubscribing at every point of a contact's life, on both send paths: nobody who
unsubscribed themselves is ever re-subscribed, and the sync's own unsubscribes are undone when the
audience wants the person back.

Points of a contact's life, each a group of seeded contacts:
- `member_then_leaves`: unsubscribes (campaign link) while a member, then leaves, then comes back;
- `member_stays`: unsubscribes while a member and stays; a field changes (an update is due);
- `removed_then_link`: removed by the sync, unsubscribes through a campaign link, comes back;
- `removed_then_automation`: removed by the sync, an automation unsubscribes them, comes back;
- `removed_only`: removed by the sync, comes back: re-added (the control group);
- `leaving_at_push`: leaves the audience and unsubscribes between the diff and the push;
- `returning_at_push`: removed by the sync, unsubscribes between the diff and the re-add.
"""

from __future__ import annotations

import random
from typing import Any

import polars as pl
import pytest

from ac_pipeline.sync.push import Push
from ac_pipeline_tests.sync.consent_world import LIST, World

GROUPS = (
    "member_then_leaves",
    "member_stays",
    "removed_then_link",
    "removed_then_automation",
    "removed_only",
    "leaving_at_push",
    "returning_at_push",
)


def pick(members: set[str], sizes: dict[str, int], seed: int) -> dict[str, set[str]]:
    pool = sorted(members)
    random.Random(seed).shuffle(pool)
    groups, start = {}, 0
    for name in GROUPS:
        groups[name] = set(pool[start : start + sizes[name]])
        start += sizes[name]
    return groups


def unsubscribe_before_push(monkeypatch: pytest.MonkeyPatch, world: World, emails: set[str]) -> None:
    """These people unsubscribe through a campaign link after the diff was made, just before the push."""
    original = Push.run

    def run(self: Push, changes: pl.DataFrame, members: pl.DataFrame | None = None) -> Any:
        for email in sorted(emails):
            world.admin.unsubscribe(email, LIST, campaign=7, message=9, reason="too many emails")
        return original(self, changes, members)

    monkeypatch.setattr(Push, "run", run)


@pytest.mark.parametrize(("path", "size", "seed"), [("one_by_one", 1, 11), ("bulk", 3, 12)])
def test_nobody_who_unsubscribed_is_resubscribed_at_any_point(
    world: World, monkeypatch: pytest.MonkeyPatch, path: str, size: int, seed: int
) -> None:
    first = world.sync()
    assert first["adds"] > 300
    world.assert_truth()
    sizes = dict.fromkeys(GROUPS, size)
    g = pick(world.pipeline.audience("panel"), sizes, seed)
    themselves = set().union(*(g[n] for n in GROUPS if n != "removed_only"))

    # Sync 2: some unsubscribe while members; people leave; a field changes.
    for email in g["member_then_leaves"] | g["member_stays"]:
        world.admin.unsubscribe(email, LIST, campaign=3, message=4, reason="not interested", ip="203.0.113.9")
    leaving = g["member_then_leaves"] | g["removed_then_link"] | g["removed_then_automation"] | g["removed_only"]
    world.leave(leaving | g["leaving_at_push"] | g["returning_at_push"])
    world.rename(g["member_stays"], "Renamed")
    with monkeypatch.context() as patch:
        unsubscribe_before_push(patch, world, g["leaving_at_push"])
        second = world.sync()
    removals = len(leaving | g["leaving_at_push"] | g["returning_at_push"])
    assert second["removals"] == removals
    if path == "bulk":
        assert second["batches"] >= 1  # removals went through bulk import
    else:
        assert second["batches"] == 0
    status = world.status_of(themselves | leaving | g["returning_at_push"])
    for email in g["member_then_leaves"] | g["member_stays"] | g["leaving_at_push"]:
        assert status[email] == "opted_out", (email, status[email])
    for email in g["removed_then_link"] | g["removed_then_automation"] | g["removed_only"] | g["returning_at_push"]:
        assert status[email] == "removed", (email, status[email])
    world.assert_truth(never_resubscribed=themselves)

    # Between syncs: people the sync removed unsubscribe themselves, through a link or an automation.
    for email in g["removed_then_link"]:
        world.admin.unsubscribe(email, LIST, campaign=5, message=6)
    for email in g["removed_then_automation"]:
        world.admin.unsubscribe_by_automation(email, LIST, automation=12)

    # Sync 3: everyone comes back; some unsubscribe between the diff and the re-add.
    world.come_back(leaving | g["leaving_at_push"] | g["returning_at_push"])
    with monkeypatch.context() as patch:
        unsubscribe_before_push(patch, world, g["returning_at_push"])
        third = world.sync()
    status = world.status_of(themselves | g["removed_only"])
    assert {status[e] for e in themselves} == {"opted_out"}, status
    assert {status[e] for e in g["removed_only"]} == {"member"}
    assert third["opted_out"] == len(g["removed_then_link"] | g["removed_then_automation"] | g["returning_at_push"])
    reasons = dict(world.snapshot().select("email", "reason").iter_rows())
    assert all("campaign" in reasons[e] for e in g["removed_then_link"] | g["returning_at_push"])
    assert all("automation 12" in reasons[e] for e in g["removed_then_automation"])
    for email in themselves:
        assert world.unsubscribed_by(email) in ("contact", "automation"), email
    world.assert_truth(never_resubscribed=themselves)

    # Nothing left to do: another sync sends nothing and re-subscribes nobody.
    fourth = world.sync()
    assert fourth["requests"] == 1  # the list is still the one the snapshot describes
    world.assert_truth(never_resubscribed=themselves)


def test_a_readd_without_proof_of_our_unsubscribe_is_not_made(world: World) -> None:
    """A snapshot that says `removed` but no time for it (a state written before the journal existed) cannot
    prove the unsubscribe was ours: the person is recorded as opted out, not re-subscribed."""
    world.sync()
    gone = set(sorted(world.pipeline.audience("panel"))[:3])
    world.leave(gone)
    world.sync()
    with world.pipeline.state.connect() as connection:
        connection.execute("UPDATE snapshot SET removed_at = NULL WHERE status = 'removed'")
    world.come_back(gone)
    pushed = world.sync()
    assert pushed["opted_out"] == len(gone)
    assert not (gone & world.subscribed())
    assert set(world.status_of(gone).values()) == {"opted_out"}
