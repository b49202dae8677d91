"""A snapshot written before customer ids were kept (customer_id NULL): the first change of address falls back
to what the sync did then (the old address leaves, the new joins), and the push learns every member's customer
id on the way, so the next change keeps the contact."""

from __future__ import annotations

import random

from ac_pipeline_tests.identity.helpers import KEY, LIST, Identity


def test_rows_without_customer_ids_fall_back_then_learn_them(identity: Identity) -> None:
    world = identity.world
    world.sync()
    with world.pipeline.state.connect() as session:
        session.execute("UPDATE snapshot SET customer_id = NULL WHERE audience = $audience", {"audience": KEY})
    (customer, old), *_ = random.Random(53).sample(sorted(identity.members().items()), 1)
    old_id, total = identity.contact_id(old), identity.contacts_total()

    first, second = f"first-{customer}@example.org", f"second-{customer}@example.org"
    identity.set_email({customer: first})
    fell_back = world.sync()
    assert fell_back["email_changes"] == 0 and (fell_back["removals"], fell_back["adds"]) == (1, 1), fell_back
    assert identity.admin.membership(old, LIST)["status"] == 2
    assert identity.contact_id(first) not in (None, old_id)
    assert identity.contacts_total() == total + 1
    identity.assert_truth()  # every member's row has its customer id again

    new_id = identity.contact_id(first)
    identity.set_email({customer: second})
    followed = world.sync()
    assert followed["email_changes"] == 1 and followed["adds"] == followed["removals"] == 0, followed
    assert identity.contact_id(second) == new_id and identity.contact_id(first) is None
    assert identity.contacts_total() == total + 1
    identity.assert_truth()
