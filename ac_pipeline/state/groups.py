"""Treatment and control group assignments in the sync state (`audience_groups`).

One row per member of an audience that declares groups: their customer id, email and group, and when they
were put in it. The audience_members asset replaces an audience's rows in one transaction each time it computes
the audience: members who left are dropped (back later, they are assigned afresh), the others keep `assigned_at`
unless their group changed. Stored when the audience is computed, not when the push confirms: the groups are
decided then, the control group is never in the changes a push sends, and the next computation must see the
same groups whether or not a push ran in between (a dry run, a failed push).
"""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from ac_pipeline.state.store import SyncState

STORED: dict[str, pl.DataType] = {"customer_id": pl.String(), "email": pl.String(), "group_name": pl.String()}
GROUP_ROWS: dict[str, pl.DataType] = {**STORED, "assigned_at": pl.Datetime("us", "UTC"), "run_id": pl.String()}


class GroupState:
    """The group assignments of one SyncState."""

    def __init__(self, state: SyncState):
        self.state = state

    def assignments(self, audience: str) -> pl.DataFrame:
        """customer_id, email, group_name, assigned_at, run_id of the audience's members when last computed."""
        with self.state.connect(read_only=True) as session:
            return session.frame(
                f"SELECT {', '.join(GROUP_ROWS)} FROM audience_groups WHERE audience = $audience ORDER BY customer_id",
                GROUP_ROWS,
                {"audience": audience},
            )

    def replace(self, audience: str, assignments: pl.DataFrame, run_id: str) -> None:
        """Make `assignments` (customer_id, email, group_name) the audience's groups, in one transaction."""
        rows = assignments.select([pl.col(name).cast(dtype) for name, dtype in STORED.items()])
        params = {"audience": audience, "run_id": run_id, "now": datetime.now(UTC)}
        with self.state.connect() as session, session.transaction():
            session.stage("group_rows", rows)
            session.execute(
                "DELETE FROM audience_groups WHERE audience = $audience "
                "AND customer_id NOT IN (SELECT customer_id FROM group_rows)",
                {"audience": audience},
            )
            session.execute(
                """INSERT INTO audience_groups (audience, customer_id, email, group_name, assigned_at, run_id)
                   SELECT $audience, customer_id, email, group_name, $now, $run_id FROM group_rows
                   ON CONFLICT (audience, customer_id) DO UPDATE SET
                       email = excluded.email,
                       assigned_at = CASE WHEN audience_groups.group_name = excluded.group_name
                           THEN audience_groups.assigned_at ELSE excluded.assigned_at END,
                       run_id = CASE WHEN audience_groups.group_name = excluded.group_name
                           THEN audience_groups.run_id ELSE excluded.run_id END,
                       group_name = excluded.group_name""",
                params,
            )
