"""Every failure is loud, and bad data loses nothing.

- A value over ActiveCampaign's limit in each kind of mapped field (first name, last name, phone, a custom
  field; one of them 410 KB, over bulk import's body limit on its own) is rejected with a reason naming
  the field and the limit, on both send paths, while the rest of the audience goes out.
- An exception at each point of the push (building a batch, writing the journal, committing outcomes,
  polling, inside a submitter thread) fails the push: never a green run with contacts left unsent.
"""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from ac_pipeline.activecampaign.limits import (
    MAX_CUSTOM_FIELD_VALUE_LENGTH,
    MAX_FIRST_NAME_LENGTH,
    MAX_LAST_NAME_LENGTH,
    MAX_PHONE_LENGTH,
)
from ac_pipeline.definitions import build_definitions
from ac_pipeline.settings import Paths
from ac_pipeline_tests.fixtures.pipeline import Pipeline, quoted
from ac_pipeline_tests.fixtures.sandbox import point_at
from ac_pipeline_tests.sync.consent_world import PANEL_YAML, World

FULL_PANEL = PANEL_YAML.replace(
    "      first_name: first_name\n", "      first_name: first_name\n      last_name: last_name\n      phone: phone\n"
)
# column -> (field as the reason names it, its limit)
FIELDS = {
    "first_name": ("first_name", MAX_FIRST_NAME_LENGTH),
    "last_name": ("last_name", MAX_LAST_NAME_LENGTH),
    "phone": ("phone", MAX_PHONE_LENGTH),
    "city": ("custom field 'City'", MAX_CUSTOM_FIELD_VALUE_LENGTH),
}


@pytest.fixture
def full_world(home: Paths, sandbox, monkeypatch: pytest.MonkeyPatch) -> World:
    home.audiences.write_text(FULL_PANEL)
    point_at(monkeypatch, sandbox)
    return World(Pipeline(home=home, sandbox=sandbox, defs=build_definitions()))


def set_value(world: World, column: str, email: str, length: int) -> None:
    world.pipeline.execute(
        f"UPDATE customers SET {column} = repeat('x', {length}) WHERE lower(trim(email)) = '{email}'"
    )


@pytest.mark.parametrize("path", ["bulk", "one_by_one"])
def test_an_oversize_value_in_each_kind_of_field_is_rejected_by_name_and_the_rest_goes_out(
    full_world: World, path: str
) -> None:
    world = full_world
    members = sorted(_members_now(world))
    too_long = dict(zip(FIELDS, members[:4], strict=True))  # column -> its victim
    at_limit = dict(zip(FIELDS, members[4:8], strict=True))
    huge = members[8]
    if path == "one_by_one":
        world.sync()  # everyone goes out first; the bad values then arrive as a handful of updates
    for column, email in too_long.items():
        set_value(world, column, email, FIELDS[column][1] + 1)
    for column, email in at_limit.items():
        set_value(world, column, email, FIELDS[column][1])
    set_value(world, "city", huge, 410_000)

    pushed = world.sync()
    assert pushed["rejected"] == len(too_long) + 1
    if path == "one_by_one":
        assert pushed["batches"] == 0 and pushed["updates"] == 9
    else:
        assert pushed["batches"] > 0 and pushed["adds"] > 300
    snap = world.snapshot()
    reasons = dict(snap.filter(pl.col("reason").is_not_null()).select("email", "reason").iter_rows())
    for column, email in too_long.items():
        field, limit = FIELDS[column]
        assert field in reasons[email] and f"limit of {limit}" in reasons[email], reasons.get(email)
    assert "410,000 characters" in reasons[huge]
    assert set(at_limit.values()) <= world.subscribed()  # exactly at the limit is fine
    if path == "one_by_one":  # the refused updates leave them on the list with their old fields
        assert set(too_long.values()) | {huge} <= world.subscribed()
        assert set(world.status_of(set(too_long.values()) | {huge}).values()) == {"member"}
    world.assert_truth()

    # Fixed at the source, they go out with the next sync.
    fixed = set(too_long.values()) | {huge}
    world.pipeline.execute(
        f"UPDATE customers SET first_name='Ok', last_name='Ok', phone='1', city='Ok' "
        f"WHERE lower(trim(email)) IN ({quoted(fixed)})"
    )
    world.sync()
    assert fixed <= world.subscribed()
    world.assert_truth()


def _members_now(world: World) -> set[str]:
    """The audience before any sync (materializes audience_members only through a dry run)."""
    result = world.pipeline.sync("panel", tags={"ac_pipeline/dry_run": "true"})
    assert result.success
    return world.pipeline.audience("panel")


def _raise_on_call(n: int, what: str):
    calls = {"n": 0}

    def maybe_raise(*_: Any, **__: Any) -> None:
        calls["n"] += 1
        if calls["n"] == n:
            raise RuntimeError(f"injected failure: {what}")

    return maybe_raise


def _inject(monkeypatch: pytest.MonkeyPatch, point: str) -> None:
    import ac_pipeline.sync.bulk as bulk
    from ac_pipeline.activecampaign import ActiveCampaignClient
    from ac_pipeline.state.store import SyncState

    def wrap(owner: Any, name: str, n: int) -> None:
        original, boom = getattr(owner, name), _raise_on_call(n, f"{point}")

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            boom()
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapped)

    if point == "batch-building":  # inside the submitter threads' generator: the first thread death
        original_batches = bulk.batches

        def batches(*args: Any, **kwargs: Any) -> Any:
            for i, batch in enumerate(original_batches(*args, **kwargs)):
                if i == 1:
                    raise ValueError("injected failure: a batch that cannot be built")
                yield batch

        monkeypatch.setattr(bulk, "batches", batches)
    elif point == "journal":
        wrap(SyncState, "journal_intents", 1)
    elif point == "commit":
        wrap(SyncState, "commit_confirmed", 1)
    elif point == "poll":
        wrap(ActiveCampaignClient, "import_info", 1)
    elif point == "submit":  # the push sends contacts Polars encoded (bulk_import_json), not dicts
        wrap(ActiveCampaignClient, "bulk_import_json", 1)


@pytest.fixture
def quick_step_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The asset's RetryPolicy waits seconds between attempts; 0.2 s here."""
    import dagster._core.definitions.policy as policy

    monkeypatch.setattr(policy, "calculate_delay", lambda **_: 0.2)


@pytest.mark.parametrize("point", ["batch-building", "journal", "commit", "poll", "submit"])
def test_an_exception_anywhere_in_the_push_fails_it_and_a_green_run_is_the_truth(
    full_world: World, monkeypatch: pytest.MonkeyPatch, quick_step_retries: None, point: str
) -> None:
    world = full_world
    with monkeypatch.context() as patch:
        _inject(patch, point)
        result = world.pipeline.sync("panel")
    failures = [
        str(e.event_specific_data)
        for e in result.all_events
        if e.event_type_value in ("STEP_FAILURE", "STEP_UP_FOR_RETRY")
    ]
    assert any("injected failure" in f for f in failures), (point, failures)
    if result.success:
        world.assert_truth()  # a green run after the step's retry must be the whole truth
    else:
        assert world.pipeline.state.runs("panel").get_column("status").to_list()[-1] == "failed"
        snapshot = set(world.snapshot().filter(pl.col("status") == "member").get_column("email"))
        assert snapshot <= world.subscribed()
        assert len(snapshot) < len(world.pipeline.audience("panel"))  # partial, and not claimed complete
        assert world.sync()["failed"] == 0
        world.assert_truth()
