"""Sync modes end to end, contact by contact, on a real sandbox: `upsert` keeps leavers subscribed and the
snapshot says so; `update_only` never creates a contact (the sandbox's contact count says so), updates and
subscribes those that exist, and counts the rest; neither subscribes again someone who unsubscribed themselves."""

from __future__ import annotations

import polars as pl

from ac_pipeline.sync.existing import NOT_A_CONTACT
from ac_pipeline_tests.modes.world import KEY, LIST, audience_yaml

FIELDS = """\
      first_name: first_name
      custom: {City: city}"""


def _rename(world, email: str, name: str) -> None:
    world.execute(f"UPDATE customers SET first_name = '{name}' WHERE lower(trim(email)) = '{email}'")


def test_upsert_keeps_leavers_and_consent(make_world) -> None:
    world = make_world(audience_yaml(FIELDS, sync_mode="upsert"))
    world.sync()
    everyone = world.subscribed()
    leavers = set(sorted(everyone)[:3])
    world.leave(leavers)
    pushed = world.sync()
    assert pushed["removals"] == 0 and pushed["skipped_leavers_kept"] == 3, pushed
    assert world.subscribed() == everyone  # leavers stay on the list...
    assert set(world.status_of(leavers).values()) == {"member"}  # ...and the snapshot says they are on it
    drift = world.read_back()
    assert drift["drift_unmanaged"] == 0 and drift["drift_gone"] == 0, drift

    # Consent: a member unsubscribes themselves; a change to their fields is not a way back onto the list.
    person = sorted(everyone - leavers)[0]
    world.admin.unsubscribe(person, LIST, reason="too many emails")
    _rename(world, person, "Renamed")
    pushed = world.sync()
    assert person not in world.subscribed()
    assert world.status_of({person}) == {person: "opted_out"}

    # The snapshot was truthful: switching to mirror removes exactly the leavers kept.
    world = make_world(audience_yaml(FIELDS, sync_mode="mirror"))
    pushed = world.sync()
    assert pushed["removals"] == 3, pushed
    assert world.subscribed() == everyone - leavers - {person}


def test_update_only_never_creates_contacts(make_world) -> None:
    world = make_world(audience_yaml(FIELDS, sync_mode="update_only"))
    world.changes_metadata()  # the audience, computed (a dry run sends nothing)
    members = sorted(world.customers().get_column("email"))
    existing = members[:5]
    with world.client() as client:
        for email in existing:
            client.sync_contact(email, first_name="Old name")
        client.sync_contact("stranger@example.org", first_name="Not in the audience")
    contacts = world.contact_count()
    assert contacts == 6

    pushed = world.sync()
    assert world.contact_count() == contacts  # nobody created
    assert world.subscribed() == set(existing)  # the existing ones updated and subscribed
    assert pushed["skipped_not_contacts"] == len(members) - 5, pushed
    first_names = dict(world.customers().select("email", "first_name").iter_rows())
    assert all(world.values(email)["first_name"] == (first_names[email] or "") for email in existing)
    skipped = world.pipeline.state.ledger(KEY).filter(pl.col("status") == "skipped")
    assert set(skipped.get_column("email")) == set(members[5:])
    assert set(skipped.get_column("reason")) == {NOT_A_CONTACT}
    assert "stranger@example.org" not in world.subscribed()

    # Someone signs up through a form: the next sync finds the contact and subscribes it. A leaver stays.
    newcomer, leaver, person = members[5], existing[0], existing[1]
    with world.client() as client:
        client.sync_contact(newcomer)
    world.leave({leaver})
    # Consent: a member unsubscribes themselves, then their fields change.
    world.admin.unsubscribe(person, LIST, reason="not interested")
    _rename(world, person, "Renamed")
    pushed = world.sync()
    assert pushed["skipped_not_contacts"] == len(members) - 6, pushed  # the newcomer was found
    assert pushed["skipped_leavers_kept"] == 1 and pushed["removals"] == 0, pushed
    assert world.contact_count() == contacts + 1  # the form's contact, not the sync's
    assert world.subscribed() == (set(existing) | {newcomer}) - {person}
    assert world.status_of({person, leaver}) == {person: "opted_out", leaver: "member"}
    assert world.admin.membership(person, LIST)["unsubscribed_by"] == "contact"
