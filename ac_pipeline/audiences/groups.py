"""Treatment and control groups: which group each member of an audience is in.

- Deterministic: a member's draw is a number in [0, 1) from md5 of the audience's salt and their customer id
  (`source.id_column`), and the groups' shares are laid end to end over [0, 1) in the order audiences.yaml
  declares them (the hash layout). md5 is the same in every version of every library, so a draw never changes.
- Sticky: a member keeps the group stored in the sync state (`audience_groups`) for as long as they stay in the
  audience; a newcomer, or someone who left and came back, gets the group of their draw.
- Few moves: when the shares change, each group is due as many members as the hash layout gives it. A group
  holding more gives up only its excess, and only members whose draw now falls in another group, lowest draw
  first; they go to a group holding fewer than it is due (their draw's group when it still has room). With two
  groups that is exactly the members whose draw crossed the moved boundary, and nobody else. With three or more,
  the fewest moves can leave a few members outside their draw's group; churn may later move one of them, always
  towards the shares.
- A group with `send: false` (a control group) is recorded and never sent: its members get the status `control`,
  so the diff, the push and the removal guard treat them as outside the list. A sent member moved into control by
  a share change is removed from the list like anyone who leaves the audience (the removal guard applies).
- A group's tag is part of what is sent, so it is folded into `fields_hash` (`grouped_hash_sql`): a member who
  moves to another tagged group is updated and gets the new tag.
"""

from __future__ import annotations

from collections.abc import Mapping

import duckdb
import polars as pl

from ac_pipeline.audiences.models import Audience, AudienceConfigError, Group

CONTROL_STATUS = "control"
# The draw uses the first 15 hex digits of md5 (60 bits), which fit a BIGINT; as a fraction (a double) it keeps
# 53 of them, far finer than any share anyone would write.
_DRAW_BITS = 60


def draw_sql(salt: str, customer_id: str) -> str:
    """SQL of the draw in [0, 1) for text expressions of the salt and the customer id."""
    return f"(('0x' || left(md5({salt} || chr(31) || {customer_id}), 15))::BIGINT / {float(2**_DRAW_BITS)!r})"


def grouped_hash_sql(fields_hash: str, tag: str) -> str:
    """SQL of `fields_hash` for a member whose group carries `tag` (text expressions): the read-back
    (readback/reader.py) folds in the group tag a contact holds the same way."""
    return f"md5(concat_ws(chr(31), {fields_hash}, 'group tag', {tag}))"


def draws(customer_ids: pl.Series, salt: str) -> pl.Series:
    """Each customer id's draw in [0, 1)."""
    connection = duckdb.connect()
    try:
        ids = customer_ids.cast(pl.String).to_frame("customer_id")
        connection.register("ids", ids)
        return (
            connection.sql(f"SELECT {draw_sql('$salt', 'customer_id')} AS draw FROM ids", params={"salt": salt})
            .pl()
            .get_column("draw")
        )
    finally:
        connection.close()


def layout_group(draw: pl.Expr, groups: Mapping[str, Group]) -> pl.Expr:
    """The group whose stretch of [0, 1) holds the draw (the last group takes whatever rounding leaves)."""
    names = list(groups)
    expression = pl.lit(names[-1])
    bound = 0.0
    bounds = []
    for name in names[:-1]:
        bound += groups[name].share
        bounds.append((name, bound))
    for name, upper in reversed(bounds):
        expression = pl.when(draw < upper).then(pl.lit(name)).otherwise(expression)
    return expression.cast(pl.String)


def assign(members: pl.DataFrame, stored: pl.DataFrame, groups: Mapping[str, Group], salt: str) -> pl.DataFrame:
    """Groups for `members` (customer_id as text, email) given the `stored` assignments (customer_id, group_name).

    Returns customer_id, email, group_name, `how`: `kept` (stored group), `new` (the draw's group) or `moved`
    (a share change moved them), and `moved_from` (the group a mover left). See the module docstring.
    """
    known = stored.filter(pl.col("group_name").is_in(list(groups))).select(
        "customer_id", pl.col("group_name").alias("_stored")
    )
    frame = (
        members.select("customer_id", "email")
        .with_columns(_draw=draws(members.get_column("customer_id"), salt))
        .with_columns(_due=layout_group(pl.col("_draw"), groups))
        .join(known, on="customer_id", how="left")
        .with_columns(
            group_name=pl.coalesce("_stored", "_due"),
            how=pl.when(pl.col("_stored").is_null()).then(pl.lit("new")).otherwise(pl.lit("kept")),
        )
    )
    due = dict(frame.group_by("_due").len().iter_rows())
    held = dict(frame.group_by("group_name").len().iter_rows())
    # Members over each group's due count, chosen among those whose draw lies elsewhere, lowest draw first.
    movers = pl.concat(
        [
            frame.filter((pl.col("group_name") == name) & (pl.col("_due") != name)).sort("_draw").head(excess)
            for name in groups
            if (excess := held.get(name, 0) - due.get(name, 0)) > 0
        ]
        or [frame.clear()]
    ).sort("_draw")
    if movers.is_empty():
        return frame.select("customer_id", "email", "group_name", "how", moved_from=pl.lit(None, dtype=pl.String))
    room = {name: due.get(name, 0) - held.get(name, 0) for name in groups}
    destinations = []
    for wanted in movers.get_column("_due"):
        to = wanted if room[wanted] > 0 else max(groups, key=lambda name: room[name])  # first of the roomiest
        room[to] -= 1
        destinations.append(to)
    moved = movers.select("customer_id", _to=pl.Series(destinations, dtype=pl.String))
    return (
        frame.join(moved, on="customer_id", how="left")
        .with_columns(
            group_name=pl.coalesce("_to", "group_name"),
            how=pl.when(pl.col("_to").is_not_null()).then(pl.lit("moved")).otherwise(pl.col("how")),
            moved_from=pl.when(pl.col("_to").is_not_null()).then(pl.col("group_name")),
        )
        .select("customer_id", "email", "group_name", "how", "moved_from")
    )


def _members_by_id(rows: pl.DataFrame, audience: Audience) -> pl.DataFrame:
    """The members' customer ids as text; a missing or repeated id cannot hold a group and is an error."""
    members = rows.filter(pl.col("status") == "member").select(pl.col("customer_id").cast(pl.String), "email")
    missing = members.filter(pl.col("customer_id").is_null()).height
    repeated = members.filter(pl.col("customer_id").is_duplicated()).get_column("customer_id").unique().sort()
    if missing or repeated.len():
        what = (
            f"{missing:,} members have no customer id"
            if missing
            else f"customer ids {repeated.head(3).to_list()} repeat"
        )
        raise AudienceConfigError(
            f"audience {audience.key!r} declares groups, which follow each member's customer id "
            f"(source.id_column), but {what}; make source.id_column a unique, non-null column of the customer 360"
        )
    return members


def with_groups(rows: pl.DataFrame, audience: Audience, stored: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The audience's rows with `group` and `moved_from` columns (members only), control members set to the
    status `control`, and `fields_hash` carrying each member's group tag; and the assignments to store (`assign`).
    `moved_from` lets the push take a moved member's old group tag off (sync/group_tags.py)."""
    assignments = assign(_members_by_id(rows, audience), stored, audience.groups, audience.salt_or_key)
    by_id = assignments.select("customer_id", "moved_from", group=pl.col("group_name"))
    held_out = [name for name, group in audience.groups.items() if not group.send]
    tags = audience.group_tags
    grouped = (
        rows.with_columns(_id=pl.col("customer_id").cast(pl.String))
        .join(by_id, left_on="_id", right_on="customer_id", how="left")
        .with_columns(
            group=pl.when(pl.col("status") == "member").then(pl.col("group")),
            moved_from=pl.when(pl.col("status") == "member").then(pl.col("moved_from")),
            _tag=pl.col("group").replace_strict(tags, default=None, return_dtype=pl.String),
        )
    )
    in_control = (pl.col("status") == "member") & pl.col("group").is_in(held_out)
    grouped = grouped.with_columns(
        status=pl.when(in_control).then(pl.lit(CONTROL_STATUS)).otherwise(pl.col("status")),
        reason=pl.when(in_control)
        .then(pl.format("in group '{}' (send: false): recorded, never sent", pl.col("group")))
        .otherwise(pl.col("reason")),
    )
    if tags:
        grouped = grouped.with_columns(fields_hash=_tagged_hashes(grouped))
    return grouped.drop("_id", "_tag"), assignments


def _tagged_hashes(frame: pl.DataFrame) -> pl.Series:
    """fields_hash with the member's group tag folded in, where the group has one (DuckDB's md5, as elsewhere)."""
    connection = duckdb.connect()
    try:
        connection.register("hashes", frame.select("fields_hash", "_tag"))
        sql = f"SELECT CASE WHEN _tag IS NULL THEN fields_hash ELSE {grouped_hash_sql('fields_hash', '_tag')} END AS h"
        return connection.sql(f"{sql} FROM hashes").pl().get_column("h").alias("fields_hash")
    finally:
        connection.close()


def group_counts(assignments: pl.DataFrame, audience: Audience) -> pl.DataFrame:
    """Per group: its share, whether it is sent, its tag, members, and how many are new, kept and moved."""
    by_how = assignments.pivot(on="how", index="group_name", values="customer_id", aggregate_function="len")
    table = pl.DataFrame(
        {
            "group": list(audience.groups),
            "share": [g.share for g in audience.groups.values()],
            "send": [g.send for g in audience.groups.values()],
            "tag": [g.tag or "" for g in audience.groups.values()],
        }
    )
    table = table.join(by_how, left_on="group", right_on="group_name", how="left")
    for how in ("new", "kept", "moved"):
        if how not in table.columns:
            table = table.with_columns(pl.lit(0, dtype=pl.UInt32).alias(how))
    counted = table.with_columns(pl.col("new", "kept", "moved").fill_null(0).cast(pl.Int64))
    return counted.select(
        "group",
        "share",
        "send",
        "tag",
        members=pl.sum_horizontal("new", "kept", "moved"),
        new="new",
        kept="kept",
        moved="moved",
    )
