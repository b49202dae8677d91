"""The push against a real sandbox: full and incremental syncs, the one-by-one path, re-adds,
opt-outs, refusals and the dry run."""

from __future__ import annotations

import polars as pl

from ac_pipeline_tests.fixtures.pipeline import Pipeline, materialization


def test_first_sync_then_only_what_changed(pipeline: Pipeline) -> None:
    first = pipeline.sync("vip_customers")
    assert first.success
    pushed = materialization(first, "activecampaign_sync")
    members = pipeline.audience("vip_customers")
    assert pushed["adds"] == pushed["confirmed"] == len(members) > 100
    assert pipeline.listed("vip_customers") == members == pipeline.snapshot_members("vip_customers")
    assert pipeline.sandbox.admin.list_info("VIP customers")["visible"]  # granted to the Admin group

    # A few VIPs drop out, one changes name; nothing else moves.
    pipeline.execute(
        "UPDATE customers SET loyalty_tier = 'bronze' WHERE loyalty_tier IN ('gold', 'platinum') AND customer_id % 20 = 0"
    )
    pipeline.execute("""UPDATE customers SET first_name = 'Changed' WHERE customer_id =
                        (SELECT min(customer_id) FROM customers WHERE loyalty_tier = 'platinum' AND email_consent)""")
    before = pipeline.sandbox.admin.requests()["total"]
    second = pipeline.sync("vip_customers")
    assert second.success
    pushed = materialization(second, "activecampaign_sync")
    assert pushed["adds"] == 0 and pushed["updates"] >= 1 and pushed["removals"] > 0
    assert (
        pipeline.listed("vip_customers")
        == pipeline.audience("vip_customers")
        == pipeline.snapshot_members("vip_customers")
    )
    assert pipeline.sandbox.admin.requests()["total"] - before == pushed["requests"]

    # Nothing changed: nothing is sent. One read proves the list is still the one the snapshot describes.
    before = pipeline.sandbox.admin.requests()
    third = pipeline.sync("vip_customers")
    assert third.success and materialization(third, "activecampaign_sync")["requests"] == 1
    after = pipeline.sandbox.admin.requests()
    assert after["total"] == before["total"] + 1


def test_a_small_change_set_goes_one_by_one_and_removed_people_come_back(pipeline: Pipeline) -> None:
    assert pipeline.sync("welcome_series").success
    # Three recent sign-ups place their first order: they leave the welcome series.
    leaving = pipeline.state.snapshot("welcome_series").head(3).get_column("email").to_list()
    emails = ", ".join(f"'{e}'" for e in leaving)
    pipeline.execute(f"UPDATE customers SET order_count = 1 WHERE lower(trim(email)) IN ({emails})")
    second = pipeline.sync("welcome_series")
    assert second.success
    pushed = materialization(second, "activecampaign_sync")
    assert pushed["removals"] == 3 and pushed["batches"] == 0  # contactLists, not bulk import
    assert not set(leaving) & pipeline.listed("welcome_series")
    requests = pipeline.sandbox.admin.requests()["by_path"]
    assert requests.get("POST /api/3/contactLists", 0) >= 3

    # Their orders are refunded: they are back in the audience, and the pipeline may re-add them.
    pipeline.execute(f"UPDATE customers SET order_count = 0 WHERE lower(trim(email)) IN ({emails})")
    third = pipeline.sync("welcome_series")
    assert third.success
    assert materialization(third, "activecampaign_sync")["readds"] == 3
    assert set(leaving) <= pipeline.listed("welcome_series")
    assert pipeline.listed("welcome_series") == pipeline.audience("welcome_series")


def test_people_who_unsubscribed_themselves_stay_unsubscribed(pipeline: Pipeline) -> None:
    assert pipeline.sync("newsletter_canada").success
    person = sorted(pipeline.listed("newsletter_canada"))[0]
    pipeline.sandbox.admin.unsubscribe(person, "Newsletter Canada")
    # Their city changes, so the sync sends them again (bulk import, with their list in `subscribe`).
    pipeline.execute(f"UPDATE customers SET city = 'Québec' WHERE lower(trim(email)) = '{person}'")
    pipeline.execute("UPDATE customers SET city = 'Halifax' WHERE country = 'CA' AND customer_id % 50 = 0")
    second = pipeline.sync("newsletter_canada")
    assert second.success
    assert materialization(second, "activecampaign_sync")["opted_out"] == 1
    assert person not in pipeline.listed("newsletter_canada")
    snapshot = pipeline.state.snapshot("newsletter_canada").filter(pl.col("email") == person)
    assert snapshot.select("status").item() == "opted_out"
    assert "themselves" in snapshot.select("reason").item()
    # And later syncs leave them alone.
    third = pipeline.sync("newsletter_canada")
    assert third.success and person not in pipeline.listed("newsletter_canada")
    assert pipeline.sandbox.admin.membership(person, "Newsletter Canada")["status"] in ("2", 2)


def test_refused_contacts_are_recorded_and_not_sent_again(pipeline: Pipeline) -> None:
    pipeline.sync("welcome_series", tags={"ac_pipeline/dry_run": "true"})  # computes the audience, sends nothing
    blocked = sorted(pipeline.audience("welcome_series"))[:2]
    pipeline.sandbox.admin.exclude(blocked)  # on the account's exclusion list
    result = pipeline.sync("welcome_series")
    assert result.success
    assert materialization(result, "activecampaign_sync")["rejected"] == 2
    snapshot = pipeline.state.snapshot("welcome_series")
    assert set(snapshot.filter(pl.col("status") == "rejected").get_column("email")) == set(blocked)
    reasons = set(snapshot.filter(pl.col("status") == "rejected").get_column("reason"))
    assert all("exclusion" in reason for reason in reasons), reasons
    assert pipeline.listed("welcome_series") == pipeline.audience("welcome_series") - set(blocked)
    again = pipeline.sync("welcome_series")
    assert again.success and materialization(again, "activecampaign_sync")["requests"] == 1  # GET /lists


def test_a_dry_run_sends_nothing_and_says_what_it_would_send(pipeline: Pipeline) -> None:
    result = pipeline.sync("vip_customers", tags={"ac_pipeline/dry_run": "true"})
    assert result.success
    assert pipeline.sandbox.admin.requests()["total"] == 0
    assert pipeline.state.snapshot("vip_customers").is_empty()
    observations = [
        e.asset_observation_data.asset_observation
        for e in result.all_events
        if e.event_type_value == "ASSET_OBSERVATION"
    ]
    [plan] = [o.metadata for o in observations if o.asset_key.to_user_string() == "activecampaign_sync"]
    members = len(pipeline.audience("vip_customers"))
    assert plan["bulk import: add"].value == members
    assert plan["requests"].value >= 2 * (members // 250)
    assert "VIP" in plan["plan"].value
    assert not [
        e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "activecampaign_sync"
    ]
