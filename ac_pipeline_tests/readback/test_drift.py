"""Each kind of drift, made by hand in the sandbox, then reconciled and synced. After each: the list equals the
audience (less those who opted out, plus the unmanaged kept), nobody who unsubscribed is subscribed again, and
the snapshot equals the list; a second read-back finds nothing left to repair.

Victims are drawn with a seeded RNG from the audience; each case is one small audience (about 490 members).
"""

from __future__ import annotations

import random
import time
from typing import Any

import polars as pl
import pytest

from ac_pipeline.activecampaign import ActiveCampaignClient
from ac_pipeline_tests.readback.helpers import reconcile, sends
from ac_pipeline_tests.sync.consent_world import LIST, PANEL_YAML, World

VICTIMS = 3


def victims(world: World, seed: int, n: int = VICTIMS) -> list[str]:
    return random.Random(seed).sample(sorted(world.subscribed()), n)


def strangers(world: World, n: int = VICTIMS) -> list[str]:
    """Contacts created in the account outside the audience, then put on the list by a user."""
    emails = [f"hand.added{i}@example.org" for i in range(n)]
    sandbox = world.pipeline.sandbox
    with ActiveCampaignClient(sandbox.url, sandbox.api_key) as client:
        for email in emails:
            client.sync_contact(email, first_name="Hand")
    for email in emails:
        world.admin.add_to_list(email, LIST)
    return emails


def city_of(world: World, email: str) -> str | None:
    sandbox = world.pipeline.sandbox
    with ActiveCampaignClient(sandbox.url, sandbox.api_key) as client:
        contact = client.find_contact(email)
        assert contact is not None
        values = client.request("GET", f"contacts/{contact['id']}/fieldValues").get("fieldValues") or []
    return next((v["value"] for v in values if v.get("value") is not None), None)


# drift -> (make it, the kind the read-back must report, whether they may never be subscribed again)
def opt_out(world: World, emails: list[str]) -> None:
    for email in emails:
        world.admin.unsubscribe(email, LIST, campaign=4, message=4, reason="not interested")


def automation(world: World, emails: list[str]) -> None:
    for email in emails:
        world.admin.unsubscribe_by_automation(email, LIST, automation=5)


def by_user(world: World, emails: list[str]) -> None:
    for email in emails:
        world.admin.remove_from_list(email, LIST)


def bounce(world: World, emails: list[str]) -> None:
    for email in emails:
        world.admin.bounce(email, LIST)


def delete(world: World, emails: list[str]) -> None:
    for email in emails:
        world.admin.delete_contact(email)


def edit(world: World, emails: list[str]) -> None:
    for email in emails:
        world.admin.set_field_value(email, "City", "Edited by hand")


DRIFTS: dict[str, tuple[Any, str, bool]] = {
    "opt_out_by_campaign_link": (opt_out, "opted_out", True),
    "opt_out_by_automation": (automation, "opted_out", True),
    "unsubscribed_by_a_user": (by_user, "opted_out", True),  # nothing proves it the sync's: when in doubt, don't
    "bounced": (bounce, "bounced", True),
    "contact_deleted": (delete, "gone", False),
    "field_edited": (edit, "edited", False),
}


@pytest.mark.parametrize("drift", sorted(DRIFTS))
def test_each_drift_is_repaired_by_reconcile_then_sync(world: World, drift: str) -> None:
    world.sync()
    reconcile(world)  # the first read: in step
    make, kind, kept_out = DRIFTS[drift]
    hit = victims(world, seed=sorted(DRIFTS).index(drift))
    make(world, hit)

    read = reconcile(world)
    assert read[f"drift_{kind}"] == VICTIMS, read
    assert sum(read[f"drift_{k}"] for k in ("opted_out", "bounced", "gone", "unmanaged", "edited")) == VICTIMS
    synced = world.sync()
    world.assert_truth(never_resubscribed=set(hit) if kept_out else set())
    if kept_out:
        assert synced["adds"] + synced["updates"] + synced["readds"] == 0
        assert world.status_of(set(hit)) == dict.fromkeys(hit, "opted_out")
    elif drift == "contact_deleted":
        assert synced["adds"] == VICTIMS
    else:
        assert synced["updates"] == VICTIMS
        assert {city_of(world, email) for email in hit} != {"Edited by hand"}

    again = reconcile(world, full=True)
    assert sum(again[f"drift_{k}"] for k in ("opted_out", "bounced", "gone", "unmanaged", "edited")) == 0, again


@pytest.mark.parametrize("policy", ["keep", "remove"])
def test_contacts_added_by_hand_follow_the_unmanaged_policy(world: World, policy: str) -> None:
    if policy == "remove":
        world.pipeline.home.audiences.write_text(
            PANEL_YAML.replace("    tags: [panel]", "    tags: [panel]\n    unmanaged: remove")
        )
        world = World(world.pipeline.__class__(world.pipeline.home, world.pipeline.sandbox, _defs()))
    world.sync()
    extra = strangers(world)
    read = reconcile(world)
    assert read["drift_unmanaged"] == VICTIMS and read["adopted"] == (VICTIMS if policy == "remove" else 0)
    synced = world.sync()
    listed = world.subscribed()
    if policy == "keep":
        assert synced["removals"] == 0
        assert set(extra) <= listed
        assert listed - set(extra) == world.pipeline.audience("panel")
        assert reconcile(world)["drift_unmanaged"] == VICTIMS  # always reported
    else:
        assert synced["removals"] == VICTIMS
        world.assert_truth()
        assert reconcile(world)["drift_unmanaged"] == 0


def test_a_deleted_list_is_recreated_and_filled_again(world: World) -> None:
    world.sync()
    themselves = victims(world, seed=7)
    opt_out(world, themselves)
    reconcile(world)
    world.admin.delete_list(LIST)
    read = reconcile(world)
    assert read["drift_gone"] == len(world.pipeline.audience("panel")) - VICTIMS
    synced = world.sync()
    assert synced["list_created"] is True
    # Who opted out stays out, even from the new list: the snapshot remembers them.
    world.assert_truth(never_resubscribed=set(themselves))


def test_a_destination_recreated_under_a_non_empty_snapshot_resyncs_on_the_next_sync(world: World) -> None:
    world.sync()
    members = world.pipeline.audience("panel")
    world.admin.delete_list(LIST)
    # Someone creates the list again and puts a few people back on it by hand.
    sandbox = world.pipeline.sandbox
    with ActiveCampaignClient(sandbox.url, sandbox.api_key) as client:
        created = client.create_list(LIST, sender_url="https://example.org", sender_reminder="You signed up.")
    back = sorted(members)[:5]
    with ActiveCampaignClient(sandbox.url, sandbox.api_key) as client:
        for email in back:
            client.sync_contact(email)
    for email in back:
        world.admin.add_to_list(email, created["id"])
    synced = world.sync()  # no read-back first: the push finds the new list by itself
    assert synced["resynced"] is True
    assert synced["adds"] == len(members) - len(back)
    world.assert_truth()


@pytest.mark.parametrize("where", ["reconcile", "push"])
def test_a_full_resync_of_a_list_in_step_writes_nothing(world: World, where: str) -> None:
    world.sync()
    before = sends(world)
    if where == "reconcile":
        read = reconcile(world, resync=True)
        assert read["resynced"] is True and read["full_read"] is True
        synced = world.sync()
    else:
        synced = world.sync(run_config={"ops": {"activecampaign_sync": {"config": {"resync": True}}}})
        assert synced["resynced"] is True
    assert synced["adds"] + synced["updates"] + synced["removals"] + synced["readds"] == 0
    assert sends(world) == before
    world.assert_truth()


def test_an_unchanged_list_costs_three_requests_incrementally(world: World) -> None:
    world.sync()
    reconcile(world)
    time.sleep(3)  # past the read's overlap with the sync's writes
    reconcile(world)
    read = reconcile(world)
    assert read["full_read"] is False and read["requests"] <= 3, read


def test_an_unsubscribe_between_our_check_and_our_own_unsubscribe_ends_opted_out(world: World) -> None:
    world.sync()
    leaving = set(victims(world, seed=3, n=12))  # enough to go through bulk import
    quick = sorted(leaving)[:2]
    world.leave(leaving)
    original = ActiveCampaignClient.bulk_import_json  # how the push sends a batch (contacts encoded by Polars)
    done: list[bool] = []

    def bulk_import(self: ActiveCampaignClient, contacts: list[str], **kwargs: Any) -> str:
        if not done:  # the people act after the push's check of the list and before its batch lands
            done.append(True)
            opt_out(world, quick)
        return original(self, contacts, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ActiveCampaignClient, "bulk_import_json", bulk_import)
        world.sync()
    read = reconcile(world)
    assert read["drift_opted_out"] == len(quick), read
    statuses = world.status_of(leaving)
    assert {email for email, status in statuses.items() if status == "opted_out"} == set(quick)
    world.come_back(leaving)
    world.sync()
    world.assert_truth(never_resubscribed=set(quick))
    assert pl.Series(sorted(leaving - set(quick))).is_in(list(world.subscribed())).all()


def _defs():
    from ac_pipeline.definitions import build_definitions

    return build_definitions()


@pytest.mark.parametrize("lost", ["state_file", "forgotten"])
def test_a_resync_never_drops_a_removal(world: World, lost: str) -> None:
    world.sync()
    gone = set(victims(world, seed=21, n=4))
    extra = strangers(world, n=2)  # on the list by hand, never the sync's
    if lost == "state_file":
        for leftover in (world.pipeline.home.state, world.pipeline.home.state.with_name("state.duckdb.wal")):
            leftover.unlink(missing_ok=True)
    else:
        world.pipeline.state.forget("panel")  # the ledger stays: it knows whom the sync added
    world.leave(gone)  # they leave the audience while the state knows nothing of the list
    synced = world.sync()
    assert synced["resynced"] is True
    listed = world.subscribed()
    if lost == "forgotten":  # the ledger knows who the sync added: who left is removed, the hand-added kept
        assert synced["removals"] == len(gone) and not gone & listed
        assert listed == world.pipeline.audience("panel") | set(extra)
    else:  # no record at all: nothing tells who left from who was added by hand; both kept, and reported
        assert synced["removals"] == 0
        assert listed == world.pipeline.audience("panel") | set(extra) | gone
        assert reconcile(world)["drift_unmanaged"] == len(gone) + len(extra)


def test_removals_a_reconciliation_causes_are_held_by_the_removal_guard(world: World) -> None:
    world.pipeline.home.audiences.write_text(
        PANEL_YAML.replace("    tags: [panel]", "    tags: [panel]\n    unmanaged: remove")
    )
    world = World(world.pipeline.__class__(world.pipeline.home, world.pipeline.sandbox, _defs()))
    world.sync()
    sandbox = world.pipeline.sandbox
    many = [f"walk.in{i}@example.org" for i in range(150)]  # over 20% of the ~490 members
    with ActiveCampaignClient(sandbox.url, sandbox.api_key) as client:
        list_id = str(client.find_list(LIST)["id"])  # type: ignore[index]
        batch = client.bulk_import([{"email": e, "subscribe": [{"listid": list_id}]} for e in many])
        client.wait_for_import(batch, poll_interval=0.05)
    assert reconcile(world)["adopted"] == len(many)
    before = sends(world)
    held = world.pipeline.sync("panel")
    assert not held.success
    assert sends(world) == before
    assert set(many) <= world.subscribed()
    allowed = world.sync(tags={"ac_pipeline/allow_removals": "panel"})
    assert allowed["removals"] == len(many)
    world.assert_truth()
