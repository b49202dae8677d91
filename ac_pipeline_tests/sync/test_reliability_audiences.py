"""Reliability, against a real sandbox: one audience failing among several, and self opt-outs through
re-entry.

Every loop is bounded in count and time; nothing here asserts on durations. Faults are seeded.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import dagster as dg
import polars as pl
import pytest

from ac_pipeline.defs.activecampaign.resources import ActiveCampaignResource
from ac_pipeline.sync.bulk import BulkSender
from ac_pipeline.sync.push import Push
from ac_pipeline_tests.fixtures.pipeline import Pipeline, materialization, quoted
from ac_pipeline_tests.sync.reliability_helpers import (
    AUDIENCES,
    BATCH,
    SYNC_STEP,
    assert_in_step,
    bulk_accepted,
    bulk_batches,
    events_of,
    requests_total,
    retries_of,
)

# -- one audience fails among several --------------------------------------------------------------------


def test_one_failing_audience_is_retried_alone_and_resends_only_its_unconfirmed_contacts(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, quick_step_retries: None
) -> None:
    failing = "lapsed_buyers"
    admin = pipeline.sandbox.admin
    # One client retry: a persistent 503 fails the step in a second rather than after 8 backed-off retries.
    defs = pipeline.defs
    client_resource = ActiveCampaignResource(
        api_url=dg.EnvVar("ACTIVECAMPAIGN_API_URL"),
        api_key=dg.EnvVar("ACTIVECAMPAIGN_API_KEY"),
        sandbox_speed=pipeline.sandbox.config.speed,
        max_retries=1,
    )
    pipeline = Pipeline(
        pipeline.home,
        pipeline.sandbox,
        dg.Definitions(
            assets=defs.assets, jobs=defs.jobs, resources={**defs.resources, "activecampaign": client_resource}
        ),
    )

    # The failing audience's first attempt: three batches are confirmed, then ActiveCampaign's import
    # endpoints answer 503 until that attempt has failed.
    attempts: Counter[str] = Counter()
    seen: dict[str, int] = {}
    original_run, original_settle = Push.run, BulkSender._settle

    def settle(self: BulkSender, *args: Any, **kwargs: Any) -> None:
        original_settle(self, *args, **kwargs)
        if self.audience.key == failing and attempts[failing] == 1:
            seen["settled"] = seen.get("settled", 0) + 1
            if seen["settled"] == 3:
                admin.set_faults("/api/3/import/*:503=1", seed=1)

    def run(self: Push, changes: pl.DataFrame, members: pl.DataFrame | None = None) -> Any:
        key = self.audience.key
        attempts[key] += 1
        try:
            return original_run(self, changes, members)
        except Exception:
            if key == failing and attempts[key] == 1:
                admin.set_faults(None)
                admin.wait_for_imports()
                seen["confirmed"] = pipeline.state.snapshot_counts(failing)["member"]
                seen["applied"] = admin.imports()["applied_contacts"]
                seen["accepted"] = bulk_accepted(pipeline.sandbox)
            raise

    monkeypatch.setattr(BulkSender, "_settle", settle)
    monkeypatch.setattr(Push, "run", run)

    instance = dg.DagsterInstance.ephemeral()
    results, sent, ended = {}, {}, {}
    for key in AUDIENCES:  # every audience, the failing one in the middle
        applied_before = admin.imports()["applied_contacts"]
        accepted_before = bulk_accepted(pipeline.sandbox)
        results[key] = pipeline.sync(key, instance=instance)
        assert results[key].success, key
        ended[key] = (admin.imports()["applied_contacts"], bulk_accepted(pipeline.sandbox))
        sent[key] = (ended[key][0] - applied_before, ended[key][1] - accepted_before)  # contacts, bulk imports
        assert_in_step(pipeline, key)

    # Only the failing audience's push step was retried, once; its members and changes were not recomputed.
    assert attempts == Counter({failing: 2, **{k: 1 for k in AUDIENCES if k != failing}})
    for key, result in results.items():
        assert retries_of(result) == (2 if key == failing else 0), key
        assert len(events_of(result, "STEP_START", "audience_members")) == 1
        assert len(events_of(result, "STEP_START", "audience_changes")) == 1
    assert len(events_of(results[failing], "STEP_UP_FOR_RETRY", SYNC_STEP)) == 1

    # The other audiences were each sent once, exactly their members.
    for key in AUDIENCES:
        if key != failing:
            members = len(pipeline.audience(key))
            assert sent[key] == (members, bulk_batches(members)), key
    # The retry resumed: it skipped what the first attempt confirmed and sent only the rest.
    members = len(pipeline.audience(failing))
    assert seen["confirmed"] >= 3 * BATCH
    retried = materialization(results[failing], SYNC_STEP)
    assert retried["skipped"] == seen["confirmed"] and retried["adds"] == members - seen["confirmed"]
    assert ended[failing] == (
        seen["applied"] + members - seen["confirmed"],
        seen["accepted"] + bulk_batches(members - seen["confirmed"]),
    )
    ledger = pipeline.state.ledger(failing)
    assert ledger.height == members and ledger.get_column("email").n_unique() == members  # each confirmed once

    # Nothing is left: another pass over every audience sends nothing (one read each: the list is the same).
    before = requests_total(pipeline.sandbox)
    for key in AUDIENCES:
        assert pipeline.sync(key, instance=instance).success
    assert requests_total(pipeline.sandbox) == before + len(AUDIENCES)


# -- people who unsubscribed themselves -------------------------------------------------------------------


@pytest.mark.parametrize("leavers", [1, 15], ids=["one_by_one", "bulk"])
def test_a_self_opt_out_stays_unsubscribed_through_leaving_and_reentering(pipeline: Pipeline, leavers: int) -> None:
    key, list_name = "welcome_series", "Welcome series"
    assert pipeline.sync(key).success
    people = sorted(pipeline.listed(key))[:leavers]
    person = people[0]
    pipeline.sandbox.admin.unsubscribe(person, list_name)

    # They leave the audience (with others when `leavers` > 1): the sync unsubscribes them from the list.
    pipeline.execute(f"UPDATE customers SET order_count = 1 WHERE lower(trim(email)) IN ({quoted(people)})")
    left = pipeline.sync(key)
    assert left.success
    pushed = materialization(left, SYNC_STEP)
    assert pushed["removals"] == leavers and pushed["batches"] == (1 if leavers >= 10 else 0)
    assert not set(people) & pipeline.listed(key)
    assert pipeline.sandbox.admin.membership(person, list_name)["unsubscribed_by"] == "contact"

    # They come back: the others are re-added; the person who opted out is not.
    pipeline.execute(f"UPDATE customers SET order_count = 0 WHERE lower(trim(email)) IN ({quoted(people)})")
    back = pipeline.sync(key)
    assert back.success
    assert set(people[1:]) <= pipeline.listed(key)
    membership = pipeline.sandbox.admin.membership(person, list_name)
    assert str(membership["status"]) == "2" and membership["unsubscribed_by"] == "contact", membership
    assert person not in pipeline.listed(key)
    snapshot = pipeline.state.snapshot(key).filter(pl.col("email") == person)
    assert snapshot.select("status").item() == "opted_out"
    assert pipeline.listed(key) == pipeline.snapshot_members(key)


def test_a_self_opt_out_is_noticed_by_a_one_by_one_update(pipeline: Pipeline) -> None:
    """A field change of someone who opted out, sent the one-by-one way, must not leave the snapshot
    believing they are a member (the bulk path learns it from the import failure)."""
    key, list_name = "welcome_series", "Welcome series"
    assert pipeline.sync(key).success
    person = sorted(pipeline.listed(key))[0]
    pipeline.sandbox.admin.unsubscribe(person, list_name)
    pipeline.execute(f"UPDATE customers SET first_name = 'Renamed' WHERE lower(trim(email)) = '{person}'")
    updated = pipeline.sync(key)
    assert updated.success
    assert materialization(updated, SYNC_STEP)["updates"] == 1
    assert str(pipeline.sandbox.admin.membership(person, list_name)["status"]) == "2"
    assert pipeline.listed(key) == pipeline.snapshot_members(key)  # no drift
    assert pipeline.state.snapshot(key).filter(pl.col("email") == person).select("status").item() == "opted_out"
