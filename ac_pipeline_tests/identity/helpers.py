"""The world the identity tests run in (the `identity` fixture is in conftest.py): the consent family's `panel` audience (every 40th customer), with a
way to change a customer's address in the customer 360 and to look contacts up in the sandbox by email."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg
import polars as pl

from ac_pipeline.activecampaign import ActiveCampaignClient
from ac_pipeline_tests.fixtures.pipeline import QUIET, materialization
from ac_pipeline_tests.sync.consent_world import KEY, LIST, World

__all__ = ["KEY", "LIST", "Identity"]


@dataclass
class Identity:
    world: World
    client: ActiveCampaignClient

    @property
    def admin(self):
        return self.world.admin

    def members(self) -> dict[str, str]:
        """customer id -> email of the audience's members (the last audience_members)."""
        path = self.world.pipeline.home.assets / "audience_members" / f"{KEY}.parquet"
        frame = pl.read_parquet(path).filter(pl.col("status") == "member")
        return dict(frame.select(pl.col("customer_id").cast(pl.String), "email").iter_rows())

    def set_email(self, changes: dict[str, str]) -> None:
        """Give these customers (id -> address) new addresses in the customer 360, in one statement."""
        cases = " ".join(f"WHEN {int(customer)} THEN '{email}'" for customer, email in changes.items())
        ids = ", ".join(str(int(customer)) for customer in changes)
        self.world.pipeline.execute(
            f"UPDATE customers SET email = CASE customer_id {cases} END, updated_at = now() "
            f"WHERE customer_id IN ({ids})"
        )

    def contact_id(self, email: str) -> str | None:
        found = self.client.find_contact(email)
        return str(found["id"]) if found else None

    def contacts_total(self) -> int:
        return int(self.client.request("GET", "contacts", params={"limit": 1})["meta"]["total"])

    def read_back(self) -> dict:
        """Run the list_reconcile job (the read-back) for the panel; its materialization's metadata."""
        job = self.world.pipeline.defs.resolve_job_def("list_reconcile")
        result = job.execute_in_process(
            partition_key=KEY, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False, run_config=QUIET
        )
        assert result.success
        return materialization(result, "activecampaign_list_members")

    def ledger(self, op: str) -> pl.DataFrame:
        return self.world.pipeline.state.ledger(KEY).filter(pl.col("op") == op)

    def assert_truth(self, never_resubscribed: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        """The list is the audience (less the opted out), the snapshot agrees, and every member's snapshot row
        names its customer."""
        self.world.assert_truth(never_resubscribed)
        snapshot = self.world.snapshot()
        rows = dict(snapshot.select("email", "customer_id").iter_rows())
        members = self.members()
        wrong = {email: rows.get(email) for customer, email in members.items() if rows.get(email) != customer}
        assert not wrong, wrong
