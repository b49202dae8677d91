"""A dry run: exactly what a sync would send, without sending anything."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import polars as pl

from ac_pipeline.audiences.config import Audience
from ac_pipeline.audiences.identity import EMAIL_CHANGE
from ac_pipeline.audiences.modes import describe_fields, field_modes
from ac_pipeline.sync.payloads import ContactShape, batches, bulk_contact
from ac_pipeline.sync.push import BULK_READDS, SMALL_CHANGE_SET, outstanding
from ac_pipeline.sync.readds import CHECK_CHUNK

SYNC_MODE_PLANS = {
    "mirror": "adds, updates and removes.",
    "upsert": "adds and updates; nobody is removed (leavers stay on the list).",
    "update_only": "adds, re-adds and updates go only to contacts the account already holds (looked up when the "
    "push runs, at most one request per contact); nobody is created or removed.",
}


@dataclass
class Plan:
    by_operation: dict[str, int]
    requests: int
    samples: dict[str, list[dict]]
    # Audiences with groups: one row per group (members, sent or held out, changes per operation).
    groups: list[dict] = field(default_factory=list)
    sync_mode: str = "mirror"
    field_modes: dict[str, str] = field(default_factory=dict)  # mapped field -> write mode

    def as_sentence(self) -> str:
        """The plan in one sentence, for the run's log."""
        ops = ", ".join(f"{n:,} by {op}" for op, n in self.by_operation.items())
        if not ops:
            return "it would send nothing: the list is in step with the audience"
        return f"it would send {ops}, in about {self.requests:,} requests (the plan is on the asset's observation)"

    def as_markdown(self) -> str:
        lines = [f"Sync mode **{self.sync_mode}**: {SYNC_MODE_PLANS[self.sync_mode]}"]
        if self.field_modes:
            lines.append("Fields: " + ", ".join(f"{name} ({mode})" for name, mode in self.field_modes.items()) + "\n")
        lines += ["| operation | contacts |", "|---|---|"]
        lines += [f"| {op} | {n:,} |" for op, n in self.by_operation.items()]
        lines.append(f"\nAbout **{self.requests:,} requests**.\n")
        if self.groups:
            columns = list(self.groups[0])
            lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
            lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in self.groups]
            lines.append("")
        for op, rows in self.samples.items():
            lines.append(
                f"**{op}** (first {len(rows)}):\n```json\n{json.dumps(rows, indent=1, ensure_ascii=False)}\n```"
            )
        return "\n".join(lines)


def group_plan(todo: pl.DataFrame, members: pl.DataFrame, audience: Audience) -> list[dict]:
    """Per group of the audience: its members, whether they are sent, and the changes it would send (a control
    group's members are never among the changes; those moved into it leave the list as removals, which carry
    no group)."""
    if not audience.groups or "group" not in members.columns:
        return []
    held = dict(members.filter(pl.col("group").is_not_null()).group_by("group").len().iter_rows())
    by_op = todo.group_by("group", "op").len() if "group" in todo.columns else pl.DataFrame()
    rows = []
    for name, group in audience.groups.items():
        ops = dict(by_op.filter(pl.col("group") == name).select("op", "len").iter_rows()) if by_op.height else {}
        rows.append(
            {
                "group": name,
                "share": group.share,
                "members": held.get(name, 0),
                "sent": "yes" if group.send else "no (held out)",
                "tag": group.tag or "",
                **{op: ops.get(op, 0) for op in ("add", "readd", "update")},
            }
        )
    return rows


def plan(
    changes: pl.DataFrame,
    snapshot: pl.DataFrame,
    audience: Audience,
    samples: int = 3,
    members: pl.DataFrame | None = None,
) -> Plan:
    """What a sync of `changes` would send. Ids are not known without asking ActiveCampaign, so the
    payloads show placeholders for the list and custom fields. Email changes go first, one request each (and
    a look-up when the contact id is not known yet). With `members` (audience_members), the plan also shows the
    audience's groups."""
    todo = outstanding(changes, snapshot)
    moves = todo.filter(pl.col("op") == EMAIL_CHANGE)
    rows = todo.filter(pl.col("op") != EMAIL_CHANGE).to_dicts()
    shape = ContactShape(
        list_id="<list id>",
        standard_fields=tuple(audience.fields.expressions()),
        field_ids={title: f"<id of field {title}>" for title in audience.fields.custom},
        tags=tuple(audience.tags),
        group_tags=audience.group_tags,
        leave_alone=frozenset(field_modes(audience)),
    )
    small = len(rows) < SMALL_CHANGE_SET
    readds_alone = sum(1 for r in rows if r["op"] == "readd") < BULK_READDS
    alone = [small or (r["op"] == "readd" and readds_alone) for r in rows]
    one_by_one = [r for r, one in zip(rows, alone, strict=True) if one]
    in_bulk = [r for r, one in zip(rows, alone, strict=True) if not one]
    by_operation: dict[str, int] = {}
    for r in in_bulk:
        key = "bulk import: unsubscribe" if r["op"] == "remove" else f"bulk import: {r['op']}"
        by_operation[key] = by_operation.get(key, 0) + 1
    for r in one_by_one:
        key = f"one by one: {r['op']}"
        by_operation[key] = by_operation.get(key, 0) + 1
    # Resolution: find (or create and grant) the list, read the fields; then per batch one import and
    # at least one status poll; one by one: contact/sync, list status, a request per tag.
    bulk_frame = (
        todo.clear()
        if small
        else todo.filter((pl.col("op") != EMAIL_CHANGE) & ((pl.col("op") != "readd") | pl.lit(not readds_alone)))
    )
    bulk_requests = 2 * sum(1 for _ in batches(bulk_frame, shape))
    # Re-adds in bulk (sync.readds): their records, 25 a request, and at most a status-1 POST each.
    readds_in_bulk = sum(1 for r in in_bulk if r["op"] == "readd")
    bulk_requests += -(-readds_in_bulk // CHECK_CHUNK) + readds_in_bulk
    # A re-add, like an add: contact/sync, its list record, status 1 (sync.single).
    per_contact = {"add": 3, "update": 1, "readd": 3, "remove": 2}
    single = sum(per_contact[r["op"]] + (len(shape.tags_of(r)) if r["op"] != "remove" else 0) for r in one_by_one)
    resolution = (1 + (3 if audience.list.create else 0) + (1 if audience.fields.custom else 0)) if rows else 0
    tag_lookup = 1 if one_by_one and (audience.tags or audience.group_tags) else 0
    sample_rows: dict[str, list[dict]] = {}
    if moves.height:
        by_operation["one by one: email change"] = moves.height
        single += moves.height + moves.get_column("contact_id").null_count()
        sample_rows[EMAIL_CHANGE] = [
            {
                "from": r["previous_email"],
                "request": f"PUT /api/3/contacts/{r['contact_id'] or '<id of ' + r['previous_email'] + '>'}",
                "body": {"contact": {"email": r["email"]}},
            }
            for r in moves.head(samples).iter_rows(named=True)
        ]
    for r in rows:
        group = sample_rows.setdefault(r["op"], [])
        if len(group) < samples:
            group.append(bulk_contact(r, shape))
    groups = group_plan(todo, members, audience) if members is not None else []
    # update_only looks contacts up first: at most one request each, plus one for the account's count.
    lookups = (len(rows) + 1) if audience.sync_mode == "update_only" and rows else 0
    requests = resolution + tag_lookup + bulk_requests + single + lookups
    return Plan(
        by_operation,
        requests,
        sample_rows,
        groups=groups,
        sync_mode=audience.sync_mode,
        field_modes=describe_fields(audience),
    )
