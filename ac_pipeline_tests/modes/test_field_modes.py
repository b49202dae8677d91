"""Field write modes end to end, against values edited by hand in the sandbox: `fill` keeps a person's value and
fills an empty one, `never_clear` keeps ActiveCampaign's value when the customer 360's goes empty, `overwrite`
replaces a hand edit; and once the list is in step, syncs and read-backs send nothing and find no drift."""

from __future__ import annotations

from ac_pipeline_tests.modes.world import audience_yaml

FIELDS = """\
      first_name: first_name
      phone: {column: phone, mode: never_clear}
      custom:
        City: {column: city, mode: fill}
        Tier: {column: loyalty_tier, mode: never_clear}"""


def _pick(world, n: int) -> list[dict]:
    """Members with a first name, phone and city (so that a hand edit or an emptied value shows)."""
    members = world.customers().filter(
        world.customers()["first_name"].is_not_null()
        & world.customers()["phone"].is_not_null()
        & world.customers()["field:City"].is_not_null()
    )
    rows = members.sort("email").head(n).to_dicts()
    assert len(rows) == n
    return rows


def test_each_mode_against_hand_edits(make_world) -> None:
    world = make_world(audience_yaml(FIELDS))
    first = world.sync()
    assert first["adds"] > 10  # bulk import
    kept_city, cleared_city, renamed, emptied, moved = _pick(world, 5)
    assert world.values(kept_city["email"])["City"] == kept_city["field:City"]

    # By hand in ActiveCampaign: a colleague types a city, another clears one, a third renames someone.
    world.admin.set_field_value(kept_city["email"], "City", "Typed by a colleague")
    world.admin.set_field_value(cleared_city["email"], "City", "")
    with world.client() as client:
        client.sync_contact(renamed["email"], first_name="Renamed by hand")
    # In the customer 360: one customer's phone and tier go empty, another moves town.
    world.execute(
        f"UPDATE customers SET phone = NULL, loyalty_tier = NULL WHERE lower(trim(email)) = '{emptied['email']}'"
    )
    world.execute(f"UPDATE customers SET city = 'Newtown' WHERE lower(trim(email)) = '{moved['email']}'")

    drift = world.read_back()
    assert drift["drift_edited"] == 3, drift
    second = world.sync()
    assert second["skipped_fill_kept"] >= 2 and second["skipped_never_clear_kept"] >= 1, second

    assert world.values(kept_city["email"])["City"] == "Typed by a colleague"  # fill keeps a person's value
    assert world.values(cleared_city["email"])["City"] == cleared_city["field:City"]  # fill fills an empty one
    assert world.values(renamed["email"])["first_name"] == renamed["first_name"]  # overwrite replaces an edit
    emptied_now = world.values(emptied["email"])
    assert emptied_now["phone"] == emptied["phone"]  # never_clear keeps ActiveCampaign's value
    assert emptied_now["Tier"] == emptied["field:Tier"]
    assert world.values(moved["email"])["City"] == moved["field:City"]  # fill never overwrites a value

    # In step: no update loops, whether or not a read-back runs in between.
    sends = world.sends()
    assert world.sync()["updates"] == 0
    again = world.read_back()
    assert again["drift_edited"] == 0, again
    assert world.sync()["updates"] == 0
    assert world.sends() == sends


def test_modes_without_a_read_back(make_world) -> None:
    """No read-back at all: a contact the snapshot knows keeps ActiveCampaign's `fill` values (unknown, so left
    alone); a newcomer gets them; `never_clear` still sends no empty value."""
    world = make_world(audience_yaml(FIELDS))
    world.execute("UPDATE customers SET last_name = 'Gone' WHERE customer_id = 400")
    world.sync()  # and no list_reconcile: the state has no read-back of the list
    known, emptied = _pick(world, 2)
    world.admin.set_field_value(known["email"], "City", "Typed by a colleague")
    world.execute(
        f"UPDATE customers SET city = 'Newtown', first_name = 'Changed' WHERE lower(trim(email)) = '{known['email']}'"
    )
    world.execute(f"UPDATE customers SET phone = '' WHERE lower(trim(email)) = '{emptied['email']}'")
    world.execute("UPDATE customers SET last_name = 'Back' WHERE customer_id = 400")  # a newcomer
    pushed = world.sync()
    assert pushed["adds"] + pushed["readds"] <= 1 and pushed["updates"] >= 1, pushed

    held = world.values(known["email"])
    assert held["City"] == "Typed by a colleague" and held["first_name"] == "Changed"
    assert world.values(emptied["email"])["phone"] == emptied["phone"]
    # Customer 400 (fatima.x400@icloud.com in the sample, city Los Angeles) is new to the list: the value is sent.
    assert world.values("fatima.x400@icloud.com")["City"] == "Los Angeles"


def test_dry_run_shows_the_modes(make_world) -> None:
    world = make_world(audience_yaml(FIELDS, sync_mode="upsert"))
    observed = world.sync(dry_run=True)
    assert observed["sync_mode"] == "upsert"
    plan = observed["plan"]
    assert "Sync mode **upsert**" in plan and "City (fill)" in plan and "phone (never_clear)" in plan, plan
    assert "first_name (overwrite)" in plan
    # Nothing was sent, and the changes asset says which mode it diffed under.
    assert world.contact_count() == 0
    assert world.changes_metadata()["sync_mode"] == "upsert"
