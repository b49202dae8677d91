"""A small audience (about 50 customers: every 400th) on a real sandbox, whose YAML each test chooses: the world
the sync-mode and field-mode tests run in. A test moves people out of the audience by setting their last name
to 'Gone' (last_name is never mapped here), and edits ActiveCampaign by hand through the API, as a person would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dagster as dg
import polars as pl
import pytest

from ac_pipeline.activecampaign import ActiveCampaignClient
from ac_pipeline.definitions import build_definitions
from ac_pipeline.sandbox import SandboxServer
from ac_pipeline.settings import Paths
from ac_pipeline_tests.fixtures.pipeline import QUIET, Pipeline, materialization, quoted
from ac_pipeline_tests.fixtures.sandbox import point_at

KEY, LIST = "modes", "Modes"
CONDITION = "customer_id % 400 = 0 AND coalesce(last_name, '') <> 'Gone'"
# What writes to a list or a contact: a list in step must cause none of these.
SENDS = ("POST /api/3/import/bulk_import", "POST /api/3/contact/sync", "POST /api/3/contactLists")


def audience_yaml(fields: str, sync_mode: str = "mirror", extra: str = "") -> str:
    """audiences.yaml with the one audience `modes`; `fields` is the YAML under `fields:` (indented 6)."""
    return f"""
audiences:
  - key: {KEY}
    list: {{name: {LIST}, create: true}}
    condition: {CONDITION}
    sync_mode: {sync_mode}
    fields:
      email: email
{fields}
      create_missing: true
{extra}"""


@dataclass
class World:
    pipeline: Pipeline

    @property
    def admin(self):
        return self.pipeline.sandbox.admin

    def client(self) -> ActiveCampaignClient:
        return ActiveCampaignClient(self.pipeline.sandbox.url, self.pipeline.sandbox.api_key)

    def sync(self, **run_config: Any) -> dict:
        """Run audience_sync; the push's metadata. Fails the test if the run failed."""
        config = {"ops": {"activecampaign_sync": {"config": run_config}}} if run_config else None
        result = self.pipeline.sync(KEY, run_config=config)
        assert result.success, [e.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        if run_config.get("dry_run"):
            observed = [e for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]
            return {k: v.value for k, v in observed[-1].event_specific_data.asset_observation.metadata.items()}
        return materialization(result, "activecampaign_sync")

    def changes_metadata(self) -> dict:
        result = self.pipeline.sync(KEY, run_config={"ops": {"activecampaign_sync": {"config": {"dry_run": True}}}})
        assert result.success
        return materialization(result, "audience_changes")

    def read_back(self) -> dict:
        result = self.pipeline.defs.resolve_job_def("list_reconcile").execute_in_process(
            partition_key=KEY, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False, run_config=QUIET
        )
        assert result.success, [e.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        return materialization(result, "activecampaign_list_members")

    def execute(self, sql: str) -> None:
        self.pipeline.execute(sql)

    def customers(self) -> pl.DataFrame:
        """The audience's members as the customer 360 holds them (email and the raw columns tests map)."""
        return pl.read_parquet(self.pipeline.home.assets / "audience_members" / f"{KEY}.parquet").filter(
            pl.col("status") == "member"
        )

    def leave(self, emails: set[str]) -> None:
        self.execute(f"UPDATE customers SET last_name = 'Gone' WHERE lower(trim(email)) IN ({quoted(emails)})")

    def subscribed(self) -> set[str]:
        return set(self.admin.members(LIST, status=1))

    def snapshot(self) -> pl.DataFrame:
        return self.pipeline.state.snapshot(KEY)

    def status_of(self, emails: set[str]) -> dict[str, str]:
        snap = self.snapshot().filter(pl.col("email").is_in(list(emails)))
        return dict(snap.select("email", "status").iter_rows())

    def values(self, email: str) -> dict[str, str | None]:
        """The contact's standard fields and custom field values (by title) as ActiveCampaign holds them."""
        with self.client() as client:
            contact = client.find_contact(email)
            assert contact is not None, email
            titles = {str(f["id"]): f["title"] for f in client.list_fields()}
            held = client.request("GET", f"contacts/{contact['id']}/fieldValues").get("fieldValues") or []
        values: dict[str, str | None] = {
            "first_name": contact.get("firstName"),
            "last_name": contact.get("lastName"),
            "phone": contact.get("phone"),
        }
        values |= {titles[str(v["field"])]: v.get("value") for v in held if str(v["field"]) in titles}
        return values

    def contact_count(self) -> int:
        with self.client() as client:
            return int(client.request("GET", "contacts", params={"limit": 1})["meta"]["total"])

    def sends(self) -> int:
        by_path = self.admin.requests()["by_path_status"]
        return sum(sum(int(n) for n in by_path.get(path, {}).values()) for path in SENDS)


@pytest.fixture
def make_world(home: Paths, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch):
    """World factory: `make_world(yaml)` writes audiences.yaml and wires the pipeline to the sandbox."""
    point_at(monkeypatch, sandbox)

    def make(yaml_text: str) -> World:
        home.audiences.write_text(yaml_text)
        return World(Pipeline(home=home, sandbox=sandbox, defs=build_definitions()))

    return make
