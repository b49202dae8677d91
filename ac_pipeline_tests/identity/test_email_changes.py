"""A customer whose address changes keeps their contact: plain changes, a chain, a swap, and the dry run.

Each check is per contact: the contact id of the new address is the id the old address had, the old address
has no contact left, no contact was created, the list is the audience, and the snapshot row of each member
names its customer. The read-back afterwards finds no drift.
"""

from __future__ import annotations

import random

import polars as pl

from ac_pipeline_tests.identity.helpers import KEY, Identity


def picked(identity: Identity, n: int, seed: int) -> list[tuple[str, str]]:
    """n members (customer id, email), seeded."""
    members = sorted(identity.members().items())
    return random.Random(seed).sample(members, n)


def dry_run_plan(identity: Identity) -> dict:
    result = identity.world.pipeline.sync(KEY, tags={"ac_pipeline/dry_run": "true"})
    assert result.success
    [plan] = [
        e.asset_observation_data.asset_observation.metadata
        for e in result.all_events
        if e.event_type_value == "ASSET_OBSERVATION"
    ]
    return {key: value.value for key, value in plan.items()}


def test_changed_addresses_keep_their_contacts_through_chains_and_swaps(identity: Identity) -> None:
    identity.world.sync()
    identity.read_back()  # the first read is in full; the one after the changes reads only what changed
    (p1, a1), (p2, a2), (p3, a3), (ca, a), (cb, b), (cc, c), (cd, d) = picked(identity, 7, seed=31)
    ids = {email: identity.contact_id(email) for email in (a1, a2, a3, a, b, c, d)}
    total = identity.contacts_total()
    identity.set_email(
        {
            p1: f"moved-{p1}@example.org",
            p2: f"moved-{p2}@example.org",
            p3: f"moved-{p3}@example.org",
            ca: b,  # a chain: a to b while b goes to a fresh address
            cb: f"moved-{cb}@example.org",
            cc: d,  # a swap: c and d trade addresses
            cd: c,
        }
    )
    identity.world.rename({f"moved-{p3}@example.org"}, "Renamed")  # a change of address and of a field

    plan = dry_run_plan(identity)
    assert plan["one by one: email change"] == 5, plan
    assert f"moved-{cb}@example.org" in plan["plan"] and "PUT /api/3/contacts/" in plan["plan"]
    assert identity.admin.requests()["by_path_status"].get("PUT /api/3/contacts/{id}") is None

    pushed = identity.world.sync()
    assert pushed["email_changes"] == 5 and pushed["email_changes_fallen_back"] == 0, pushed
    assert pushed["removals"] == 0 and pushed["adds"] == 0, pushed
    assert identity.admin.requests()["by_path_status"]["PUT /api/3/contacts/{id}"] == {"200": 5}
    for customer, old in ((p1, a1), (p2, a2), (p3, a3), (cb, b)):
        assert identity.contact_id(f"moved-{customer}@example.org") == ids[old], customer
    assert identity.contact_id(b) == ids[a]  # the chain: a's contact took b once b's contact had moved on
    assert identity.contact_id(a) is None
    # The swap is a cycle: each address stays with its contact, which takes the fields of its new customer.
    assert (identity.contact_id(c), identity.contact_id(d)) == (ids[c], ids[d])
    assert identity.client.get_contact(ids[a3])["firstName"] == "Renamed"
    assert identity.contacts_total() == total
    identity.assert_truth()

    moves = identity.ledger("email_change")
    assert moves.height == 5 and set(moves.get_column("status")) == {"confirmed"}
    assert any(f"{a} -> {b}" in reason for reason in moves.get_column("reason"))
    snapshot = identity.world.snapshot()
    assert snapshot.filter(pl.col("email") == b).get_column("customer_id").to_list() == [ca]
    assert snapshot.filter(pl.col("email") == c).get_column("customer_id").to_list() == [cd]

    read = identity.read_back()
    assert read["read"] == "incremental" and read["contacts_read"] >= 7, read
    assert {k: v for k, v in read.items() if k.startswith("drift_") and k != "drift_sample" and v} == {}, read
    identity.assert_truth()
    again = identity.world.sync()
    assert again["requests"] == 1 and again["email_changes"] == 0  # nothing left to send
