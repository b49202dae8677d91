"""A new address ActiveCampaign already gives to another contact, and contacts that opted out.

- the new address belongs to a contact outside the snapshot: the old address leaves, the new joins;
- it belongs to a contact who unsubscribed themselves from the list: the old leaves, the new stays out;
- it is in the snapshot, as a contact the sync removed: never planned as a change; the old leaves, the new is
  re-added (the sync's own unsubscribe, proven);
- the old contact opted out: its address changes and it stays opted out;
- the old contact opted out and the new address belongs to another contact: the customer stays out.
"""

from __future__ import annotations

import random

import polars as pl

from ac_pipeline_tests.identity.helpers import LIST, Identity

STRANGER, STRANGER_OPTED_OUT, STRANGER_TOO = (
    "stranger@example.org",
    "stranger-opted-out@example.org",
    "stranger-too@example.org",
)


def test_collisions_fall_back_and_nobody_who_opted_out_is_subscribed(identity: Identity) -> None:
    world = identity.world
    world.sync()
    members = sorted(identity.members().items())
    (ce, e), (cf, f), (cg, g), (_, r), (co, o), (cq, q) = random.Random(47).sample(members, 6)
    # Before: R leaves (removed by the sync); O and Q unsubscribe themselves, and the push learns it.
    for email in (o, q):
        identity.admin.unsubscribe(email, LIST, campaign=3, message=4, reason="not interested")
    world.leave({r})
    world.rename({o, q}, "Renamed")
    world.sync()
    assert world.status_of({o, q, r}) == {o: "opted_out", q: "opted_out", r: "removed"}
    # Contacts outside the snapshot: one not on the list, one who unsubscribed themselves from it.
    for email in (STRANGER, STRANGER_OPTED_OUT, STRANGER_TOO):
        identity.client.sync_contact(email)
    identity.admin.add_to_list(STRANGER_OPTED_OUT, LIST)
    identity.admin.unsubscribe(STRANGER_OPTED_OUT, LIST, campaign=8, message=9)
    ids = {email: identity.contact_id(email) for email in (e, f, g, r, o, q, STRANGER, STRANGER_OPTED_OUT)}
    total = identity.contacts_total()

    new_o = f"moved-{co}@example.org"
    identity.set_email({ce: STRANGER, cf: STRANGER_OPTED_OUT, cg: r, co: new_o, cq: STRANGER_TOO})
    pushed = world.sync()

    assert pushed["email_changes"] == 1 and pushed["email_changes_fallen_back"] == 3, pushed
    assert identity.contacts_total() == total  # every address already had its contact
    status = {email: identity.admin.membership(email, LIST)["status"] for email in (e, f, g, r, new_o, q)}
    assert status == {e: 2, f: 2, g: 2, r: 1, new_o: 2, q: 2}, status
    assert identity.admin.membership(STRANGER, LIST)["status"] == 1
    assert identity.admin.membership(STRANGER_OPTED_OUT, LIST)["status"] == 2
    assert identity.client.contact_lists(identity.contact_id(STRANGER_TOO) or "0") == []  # never on the list
    # Every contact kept its id; only O's took a new address.
    for email in (e, f, g, r, q, STRANGER, STRANGER_OPTED_OUT):
        assert identity.contact_id(email) == ids[email], email
    assert identity.contact_id(new_o) == ids[o] and identity.contact_id(o) is None
    assert world.unsubscribed_by(new_o) == "contact"

    snapshot = dict(world.snapshot().select("email", "status").iter_rows())
    assert {email: snapshot[email] for email in (e, f, g, r, new_o, q, STRANGER, STRANGER_OPTED_OUT, STRANGER_TOO)} == {
        e: "removed",
        f: "removed",
        g: "removed",
        r: "member",
        new_o: "opted_out",
        q: "opted_out",
        STRANGER: "member",
        STRANGER_OPTED_OUT: "opted_out",
        STRANGER_TOO: "opted_out",
    }
    fallbacks = identity.ledger("email_change").filter(pl.col("status") == "fallback")
    reasons = dict(fallbacks.select("email", "reason").iter_rows())
    assert set(reasons) == {e, f, q}
    assert "already belongs to another contact" in reasons[e] and f"{e} leaves the list" in reasons[e]
    assert f"{STRANGER_TOO} is not subscribed" in reasons[q]
    identity.assert_truth(never_resubscribed={new_o, q, STRANGER_OPTED_OUT, STRANGER_TOO})
