"""Groups through real Dagster runs against a real sandbox on 127.0.0.1, with real DuckDB files: the control
group never reaches ActiveCampaign, groups hold over syncs with churn, and a share change moves only whom it must.
"""

from __future__ import annotations

import random

import duckdb
import polars as pl

from ac_pipeline.audiences.groups import draws
from ac_pipeline.state.groups import GroupState
from ac_pipeline_tests.fixtures.pipeline import Pipeline, materialization

AUDIENCE = "vip_customers"
LIST = "VIP customers"
A_B_AND_CONTROL = (
    "{a: {share: 0.4, tag: variant-a}, b: {share: 0.4, tag: variant-b}, control: {share: 0.2, send: false}}"
)


def _declare(pipeline: Pipeline, groups: str) -> None:
    """Give the VIP audience these groups (audiences.yaml is read by every run)."""
    text = pipeline.home.audiences.read_text()
    head, _, tail = text.partition("    tags: [VIP]\n")
    tail = tail[tail.index("\n  - key:") :] if "    groups: " in tail.split("\n  - key:")[0] else tail
    pipeline.home.audiences.write_text(f"{head}    tags: [VIP]\n    groups: {groups}\n{tail}")


def _groups(pipeline: Pipeline) -> dict[str, tuple[str, str]]:
    """customer id -> (email, group), as the sync state holds them."""
    rows = GroupState(pipeline.state).assignments(AUDIENCE)
    return {cid: (email, group) for cid, email, group in rows.select("customer_id", "email", "group_name").iter_rows()}


def _contacts(pipeline: Pipeline) -> dict[str, set[str]]:
    """Every contact in the sandbox (on any list or none) -> the names of its tags."""
    assert pipeline.sandbox.state is not None
    rows = pipeline.sandbox.state.store.all(
        "SELECT c.email, t.tag FROM contacts c LEFT JOIN contact_tags ct ON ct.contact_id = c.id "
        "LEFT JOIN tags t ON t.id = ct.tag_id"
    )
    tags: dict[str, set[str]] = {}
    for email, tag in rows:
        tags.setdefault(email, set()).update([tag] if tag else [])
    return tags


def _writes(pipeline: Pipeline) -> int:
    by_path = pipeline.sandbox.admin.requests()["by_path_status"]
    return sum(int(n) for path, statuses in by_path.items() if not path.startswith("GET") for n in statuses.values())


def _vip_ids(pipeline: Pipeline) -> list[int]:
    with duckdb.connect(str(pipeline.home.customer_360), read_only=True) as connection:
        rows = connection.sql("SELECT customer_id FROM customers WHERE loyalty_tier IN ('gold', 'platinum')")
        return sorted(row[0] for row in rows.fetchall())


def test_control_never_reaches_activecampaign_and_groups_hold_over_ten_syncs_with_churn(pipeline: Pipeline) -> None:
    _declare(pipeline, A_B_AND_CONTROL)
    rng = random.Random(11)
    vips = _vip_ids(pipeline)
    previous: dict[str, tuple[str, str]] = {}
    ever_in_control: set[str] = set()
    for sync in range(10):
        if sync:
            # Churn: consent flips for 40 VIPs each round, so some leave, some join and some come back.
            flipped = ", ".join(str(i) for i in rng.sample(vips, 40))
            pipeline.execute(f"UPDATE customers SET email_consent = NOT email_consent WHERE customer_id IN ({flipped})")
        result = pipeline.sync(AUDIENCE)
        assert result.success, sync
        groups = _groups(pipeline)
        # Sticky: everyone still in the audience keeps their group.
        stayed = previous.keys() & groups.keys()
        assert [cid for cid in stayed if previous[cid][1] != groups[cid][1]] == [], sync
        if sync:
            assert len(stayed) < len(previous) and len(groups.keys() - previous.keys()) > 0  # real churn
        if not sync:
            # Each group's share of the real audience, within 5 binomial standard deviations (test_assignment.py).
            for name, share in (("a", 0.4), ("b", 0.4), ("control", 0.2)):
                held = sum(1 for _, g in groups.values() if g == name)
                assert abs(held - share * len(groups)) <= 5 * (len(groups) * share * (1 - share)) ** 0.5, name
        previous = groups
        sent = {email for email, group in groups.values() if group != "control"}
        control = {email for email, group in groups.values() if group == "control"}
        ever_in_control |= control
        # The list holds exactly the sent groups; the control group is not even a contact.
        contacts = _contacts(pipeline)
        assert pipeline.listed(AUDIENCE) == sent == pipeline.audience(AUDIENCE) == pipeline.snapshot_members(AUDIENCE)
        assert not ever_in_control & contacts.keys()
        # Each sent contact carries the audience's tag and its own group's tag, never the other's.
        for email, group in groups.values():
            if group != "control":
                assert contacts[email] == {"VIP", f"variant-{group}"}, (sync, email)
        members = materialization(result, "audience_members")
        for name in ("a", "b", "control"):
            assert members[f"group_{name}"] == sum(1 for _, g in groups.values() if g == name)
            assert members[f"group_{name}_moved"] == 0
        assert members["control"] == len(control) and members["members"] == len(sent)
    assert len(ever_in_control) > len(control)  # churn brought new people into control over the ten syncs

    # Variant a shrinks, b grows: exactly the a members whose draw now falls in b move, and carry only b's tag.
    _declare(
        pipeline,
        "{a: {share: 0.3, tag: variant-a}, b: {share: 0.5, tag: variant-b}, control: {share: 0.2, send: false}}",
    )
    result = pipeline.sync(AUDIENCE)
    assert result.success
    groups = _groups(pipeline)
    draw = dict(zip(sorted(groups), draws(pl.Series(sorted(groups)), AUDIENCE).to_list(), strict=True))
    moved = {cid for cid in groups if previous[cid][1] != groups[cid][1]}
    assert moved == {cid for cid in groups if previous[cid][1] == "a" and 0.3 <= draw[cid] < 0.4} != set()
    assert {groups[cid][1] for cid in moved} == {"b"}
    assert materialization(result, "activecampaign_sync")["updates"] == len(moved)
    contacts = _contacts(pipeline)
    assert all(contacts[email] == {"VIP", f"variant-{group}"} for email, group in groups.values() if group != "control")

    # The read-back sees each contact's group tag as the members' hash does: a list in step reads as in step.
    writes = _writes(pipeline)
    resynced = materialization(
        pipeline.sync(AUDIENCE, run_config={"ops": {"activecampaign_sync": {"config": {"resync": True}}}}),
        "activecampaign_sync",
    )
    assert resynced["resynced"] is True
    assert resynced["adds"] + resynced["updates"] + resynced["removals"] + resynced["readds"] == 0
    assert _writes(pipeline) == writes


def test_a_share_change_moves_only_whom_it_must_and_control_leaves_the_list(pipeline: Pipeline) -> None:
    _declare(pipeline, "{treatment: {share: 0.9}, control: {share: 0.1, send: false}}")
    # The dry run shows the groups in its plan and sends nothing.
    dry = pipeline.sync(AUDIENCE, tags={"ac_pipeline/dry_run": "true"})
    [plan] = [
        e.asset_observation_data.asset_observation.metadata
        for e in dry.all_events
        if e.event_type_value == "ASSET_OBSERVATION"
    ]
    assert "| treatment | 0.9 |" in plan["plan"].value and "no (held out)" in plan["plan"].value
    assert plan["group_control"].value > 0 and pipeline.sandbox.admin.requests()["total"] == 0

    assert pipeline.sync(AUDIENCE).success
    before = _groups(pipeline)
    held = {g: sum(1 for _, group in before.values() if group == g) for g in ("treatment", "control")}

    _declare(pipeline, "{treatment: {share: 0.8}, control: {share: 0.2, send: false}}")
    result = pipeline.sync(AUDIENCE)
    assert result.success
    after = _groups(pipeline)
    ids = pl.Series(sorted(before))
    draw = dict(zip(ids.to_list(), draws(ids, AUDIENCE).to_list(), strict=True))
    due_treatment = sum(1 for d in draw.values() if d < 0.8)
    # Exactly the treatment members whose draw crossed the moved boundary, and as many as treatment had too many.
    crossed = {cid for cid, (_, group) in before.items() if group == "treatment" and 0.8 <= draw[cid] < 0.9}
    moved = {cid for cid in before if before[cid][1] != after[cid][1]}
    assert moved == crossed and len(moved) == held["treatment"] - due_treatment > 0
    assert {after[cid][1] for cid in moved} == {"control"}

    # Moved into control: removed from the list like anyone who leaves the audience, and counted as moved.
    pushed = materialization(result, "activecampaign_sync")
    assert pushed["removals"] == len(moved) and pushed["adds"] == 0
    gone = {before[cid][0] for cid in moved}
    assert not gone & pipeline.listed(AUDIENCE)
    assert gone <= set(pipeline.sandbox.admin.members(LIST, status=2))
    assert materialization(result, "audience_members")["group_control_moved"] == len(moved)
