"""Group assignment on its own: shares, determinism, stickiness and the fewest moves when shares change."""

from __future__ import annotations

import hashlib
import math

import polars as pl
import pytest

from ac_pipeline.audiences.groups import assign, draws
from ac_pipeline.audiences.models import Group

N = 20_000
# Binomial tolerance: a fair hash puts Binomial(N, share) members in a group, so 5 standard deviations
# (sqrt(N p (1-p))) is exceeded by chance with probability about 6e-7 per group. The draws are a fixed function
# of the ids, so the test is deterministic; a failure means the hash or the layout is biased, not bad luck.
SIGMAS = 5
NOBODY = pl.DataFrame(schema={"customer_id": pl.String, "group_name": pl.String})


def _members(ids: range | list[int]) -> pl.DataFrame:
    return pl.DataFrame({"customer_id": [str(i) for i in ids], "email": [f"c{i}@example.com" for i in ids]})


def _groups(**shares: float) -> dict[str, Group]:
    return {name: Group(share=share) for name, share in shares.items()}


def _by_group(assigned: pl.DataFrame) -> dict[str, int]:
    return dict(assigned.group_by("group_name").len().iter_rows())


def _changed(before: pl.DataFrame, after: pl.DataFrame) -> pl.DataFrame:
    return before.join(after, on="customer_id", suffix="_after").filter(
        pl.col("group_name") != pl.col("group_name_after")
    )


@pytest.mark.parametrize(
    "shares",
    [{"treatment": 0.9, "control": 0.1}, {"a": 0.5, "b": 0.5}, {"a": 0.25, "b": 0.25, "c": 0.4, "control": 0.1}],
)
def test_each_group_gets_its_share_within_binomial_tolerance(shares: dict[str, float]) -> None:
    assigned = assign(_members(range(N)), NOBODY, _groups(**shares), salt="spring-campaign")
    counts = _by_group(assigned)
    for name, share in shares.items():
        sigma = math.sqrt(N * share * (1 - share))
        assert abs(counts[name] - N * share) <= SIGMAS * sigma, (name, counts[name], N * share, sigma)


def test_the_draw_is_md5_of_salt_and_customer_id() -> None:
    """Anyone can recompute a member's group outside the pipeline (e.g. to audit an experiment)."""
    ids = ["1", "42", "customer-7", "0009"]
    expected = [int(hashlib.md5(f"vip\x1f{i}".encode()).hexdigest()[:15], 16) / 2**60 for i in ids]
    assert draws(pl.Series(ids), "vip").to_list() == pytest.approx(expected, abs=1e-15)


def test_assignment_is_deterministic_and_the_salt_draws_anew() -> None:
    groups = _groups(a=0.5, b=0.5)
    everyone = assign(_members(range(2_000)), NOBODY, groups, salt="s")
    # Same ids, any order and any company: same groups.
    some = assign(_members(list(range(1_999, 0, -3))), NOBODY, groups, salt="s")
    assert _changed(everyone, some).is_empty()
    other_salt = assign(_members(range(2_000)), NOBODY, groups, salt="another experiment")
    assert 800 < _changed(everyone, other_salt).height < 1_200  # about half: independent draws


def test_a_group_over_its_due_count_gives_up_only_the_excess() -> None:
    groups = _groups(treatment=0.9, control=0.1)
    stored = _members(range(100)).select("customer_id", group_name=pl.lit("control"))
    assigned = assign(_members(range(100)), stored, groups, salt="s")
    # Control holds all 100 where about 10 are due: the excess moves to treatment, the rest keep control.
    moved = assigned.filter(pl.col("how") == "moved")
    due = _by_group(assign(_members(range(100)), NOBODY, groups, salt="s"))
    assert moved.height == 100 - due["control"]
    assert set(moved.get_column("group_name")) == {"treatment"}


def test_two_groups_a_share_change_moves_exactly_the_members_whose_draw_crossed() -> None:
    members = _members(range(N))
    before = assign(members, NOBODY, {"treatment": Group(share=0.9), "control": Group(share=0.1, send=False)}, "s")
    after = assign(members, before, {"treatment": Group(share=0.8), "control": Group(share=0.2, send=False)}, "s")
    draw = members.select("customer_id", draw=draws(members.get_column("customer_id"), "s"))
    crossed = set(draw.filter((pl.col("draw") >= 0.8) & (pl.col("draw") < 0.9)).get_column("customer_id"))
    changed = _changed(before, after)
    assert set(changed.get_column("customer_id")) == crossed
    assert set(changed.get_column("group_name")) == {"treatment"}
    assert set(changed.get_column("group_name_after")) == {"control"}
    assert set(after.filter(pl.col("how") == "moved").get_column("customer_id")) == crossed
    # The groups are now exactly what a fresh draw under the new shares gives.
    assert _by_group(after) == _by_group(assign(members, NOBODY, _groups(treatment=0.8, control=0.2), "s"))


def test_three_groups_a_share_change_moves_only_the_excess() -> None:
    members = _members(range(N))
    before = assign(members, NOBODY, _groups(a=0.3, b=0.3, c=0.4), "s")
    new_shares = _groups(a=0.4, b=0.3, c=0.3)
    after = assign(members, before, new_shares, "s")
    due = _by_group(assign(members, NOBODY, new_shares, "s"))
    held = _by_group(before)
    must_move = sum(max(0, held[g] - due[g]) for g in new_shares)
    changed = _changed(before, after)
    # Exactly the excess moves: out of groups over their due count, into groups under it; nobody else.
    assert changed.height == must_move
    assert set(changed.get_column("group_name")) == {g for g in new_shares if held[g] > due[g]}
    assert set(changed.get_column("group_name_after")) <= {g for g in new_shares if held[g] < due[g]}
    assert _by_group(after) == due
    # Re-drawing everyone under the new shares would have moved about twice as many.
    redrawn = _changed(before, assign(members, NOBODY, new_shares, "s")).height
    assert must_move < 0.6 * redrawn


def test_unchanged_shares_and_churn_move_nobody() -> None:
    groups = _groups(a=0.4, b=0.4, control=0.2)
    assigned = assign(_members(range(5_000)), NOBODY, groups, "s")
    for round_ in range(10):
        # A different tenth leaves and a different slice joins each round.
        ids = [i for i in range(5_000 + 500 * round_) if i % 10 != round_]
        again = assign(_members(ids), assigned, groups, "s")
        assert again.filter(pl.col("how") == "moved").is_empty()
        assert _changed(assigned, again).is_empty()
        assigned = again
