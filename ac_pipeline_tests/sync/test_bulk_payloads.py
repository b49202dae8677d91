"""The bulk path's vectorised parts against the row-by-row code they replace: the contacts Polars encodes are
the text the client's encoder gives for `bulk_contact`, batches keep every row once and in order within the
limits, and a confirmed batch reaches the snapshot and ledger as confirmed Outcomes would."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from ac_pipeline.activecampaign.transport import encode_json
from ac_pipeline.state.store import SyncState
from ac_pipeline.sync.outcomes import Outcome, PushResult, Recorder, confirmed_rows, snapshot_and_ledger
from ac_pipeline.sync.payloads import ContactShape, batches, bulk_contact, contacts_json

COLUMNS = ("first_name", "phone", "field:City", "field:Tier")
# Quotes, backslashes, control characters, non-ASCII and astral characters: what JSON escaping must agree on.
TEXT = st.one_of(st.none(), st.text(st.characters(exclude_categories=["Cs"]), max_size=12))


@st.composite
def frames_and_shapes(draw: st.DrawFn) -> tuple[pl.DataFrame, ContactShape]:
    height = draw(st.integers(0, 12))
    frame = pl.DataFrame(
        {
            "op": draw(st.lists(st.sampled_from(["add", "update", "remove"]), min_size=height, max_size=height)),
            "email": [f"p{i}@example.com" for i in range(height)],
            **{c: draw(st.lists(TEXT, min_size=height, max_size=height)) for c in COLUMNS},
            "group": draw(st.lists(st.sampled_from([None, "treatment", "control"]), min_size=height, max_size=height)),
        },
        schema={"op": pl.String, "email": pl.String, **dict.fromkeys(COLUMNS, pl.String), "group": pl.String},
    )
    shape = ContactShape(
        list_id="4",
        standard_fields=("first_name", "phone", "last_name"),  # last_name: mapped, not in the frame (all null)
        field_ids={"City": "7", "Tier": "12"},
        tags=tuple(draw(st.lists(st.sampled_from(["vip", "Ünïcode", 'a "tag"']), max_size=2, unique=True))),
        group_tags=draw(st.sampled_from([{}, {"treatment": "T-group"}])),
        leave_alone=frozenset(draw(st.sets(st.sampled_from(["phone", "last_name", "field:City"])))),
    )
    return frame, shape


@settings(max_examples=60, deadline=None)
@given(frames_and_shapes())
def test_polars_encodes_each_contact_as_the_client_encodes_bulk_contact(
    case: tuple[pl.DataFrame, ContactShape],
) -> None:
    frame, shape = case
    expected = [encode_json(bulk_contact(row, shape)).decode() for row in frame.iter_rows(named=True)]
    assert contacts_json(frame, shape).to_list() == expected


def test_placeholder_ids_beside_numeric_ones_are_encoded_row_by_row() -> None:
    frame = pl.DataFrame({"op": ["add"], "email": ["a@example.com"], "field:City": ["Paris"], "field:Tier": ["1"]})
    shape = ContactShape(list_id="4", standard_fields=(), field_ids={"City": "7", "Tier": "<id of Tier>"}, tags=())
    assert contacts_json(frame, shape).to_list() == [
        encode_json(bulk_contact(frame.row(0, named=True), shape)).decode()
    ]


def test_batches_keep_every_row_once_in_order_within_both_limits() -> None:
    height = 23
    frame = pl.DataFrame(
        {
            "op": ["add", "remove", "update"] * 7 + ["add", "add"],
            "email": [f"p{i}@example.com" for i in range(height)],
            "first_name": ["x" * (i * 40) for i in range(height)],  # sizes that vary, so the byte limit bites
        }
    )
    shape = ContactShape(list_id="4", standard_fields=("first_name",), field_ids={}, tags=("vip",))
    max_bytes = 1_200
    found = list(batches(frame, shape, max_contacts=5, max_bytes=max_bytes))
    assert pl.concat([b.rows for b in found]).equals(frame)
    for batch in found:
        assert 1 <= batch.rows.height <= 5 and len(batch.contacts) == batch.rows.height
        body = encode_json({"contacts": [json.loads(c) for c in batch.contacts], "exclude_automations": True})
        assert len(body) < max_bytes
        assert batch.contacts == [
            encode_json(bulk_contact(r, shape)).decode() for r in batch.rows.iter_rows(named=True)
        ]
    assert any(b.rows.height < 5 for b in found[:-1])  # some batch was closed by its bytes, not its count
    kept = found[0].subset([0, 2])
    assert kept.rows.get_column("email").to_list() == [found[0].rows["email"][0], found[0].rows["email"][2]]
    assert kept.contacts == [found[0].contacts[0], found[0].contacts[2]]


CHANGES = pl.DataFrame(
    {
        "op": ["add", "update", "remove"],
        "email": ["a@example.com", "b@example.com", "c@example.com"],
        "contact_id": [None, "12", "13"],
        "fields_hash": ["h1", "h2", "h3"],
        "customer_id": [1, 2, None],
    }
)


def test_a_confirmed_frame_gives_the_rows_confirmed_outcomes_give() -> None:
    snapshot, ledger = confirmed_rows(CHANGES, "batch-1")
    outcomes = [Outcome(row, "confirmed", batch="batch-1") for row in CHANGES.iter_rows(named=True)]
    expected_snapshot, expected_ledger = snapshot_and_ledger(outcomes)
    # removed_at is "now" on both sides, taken a moment apart: compare where it is set, then the rest.
    assert snapshot["removed_at"].is_null().to_list() == expected_snapshot["removed_at"].is_null().to_list()
    assert snapshot.drop("removed_at").equals(expected_snapshot.drop("removed_at"))
    assert snapshot.schema == expected_snapshot.schema
    assert ledger.equals(expected_ledger) and ledger.schema == expected_ledger.schema


def test_the_recorder_commits_frames_and_outcomes_together_and_with_the_journal(tmp_path: Path) -> None:
    state = SyncState(tmp_path / "state.duckdb")
    result = PushResult(pending={}, already_confirmed=0)
    with Recorder(state, "vip", "run-1", result) as recorder:
        recorder.record_confirmed(CHANGES.slice(0, 2), "batch-1")
        recorder.journal([{"email": "d@example.com", "op": "add"}])  # takes the outcomes so far along
        assert state.snapshot("vip").height == 2 and state.journal("vip")["email"].to_list() == ["d@example.com"]
        recorder.record([Outcome(CHANGES.row(2, named=True), "opted_out", reason="they unsubscribed")])
        recorder.save()  # hands over now, or at the next commit: either way the exit commits everything
    assert state.journal("vip")["email"].to_list() == ["d@example.com"]  # its outcome was never recorded
    assert result.outcomes == {"confirmed": 2, "opted_out": 1, "rejected": 0, "failed": 0}
    held = state.snapshot("vip").sort("email")
    assert held.select("email", "status", "contact_id", "customer_id").rows() == [
        ("a@example.com", "member", None, "1"),
        ("b@example.com", "member", "12", "2"),
        ("c@example.com", "opted_out", "13", None),
    ]
    assert sorted(state.ledger("vip").select("email", "batch", "status").rows()) == [
        ("a@example.com", "batch-1", "confirmed"),
        ("b@example.com", "batch-1", "confirmed"),
        ("c@example.com", None, "opted_out"),
    ]
