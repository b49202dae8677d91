"""A small audience whose members a test moves in and out, wired to a real sandbox: the world the consent
and crash families run in.

The audience `panel` is every 40th customer whose city is not 'Gone'. A test moves people out by setting
their city to 'Gone' and back in by setting it to something else; changing `first_name` makes an update.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import pytest

from ac_pipeline.definitions import build_definitions
from ac_pipeline.sandbox import SandboxServer
from ac_pipeline.settings import Paths
from ac_pipeline_tests.fixtures.pipeline import Pipeline, materialization, quoted
from ac_pipeline_tests.fixtures.sandbox import point_at

PANEL_YAML = """
source: {table: customers, id_column: customer_id, updated_column: updated_at}
audiences:
  - key: panel
    list: {name: Panel, create: true}
    condition: customer_id % 40 = 0 AND coalesce(city, '') <> 'Gone'
    fields:
      email: email
      first_name: first_name
      custom: {City: city}
      create_missing: true
    tags: [panel]
"""
KEY, LIST = "panel", "Panel"
SYNC_STEP = "activecampaign_sync"


@dataclass
class World:
    pipeline: Pipeline

    @property
    def admin(self):
        return self.pipeline.sandbox.admin

    def sync(self, **kwargs) -> dict:
        """Sync the panel; the push's metadata. Fails the test if the run failed."""
        result = self.pipeline.sync(KEY, **kwargs)
        assert result.success, [e.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        return materialization(result, SYNC_STEP)

    def leave(self, emails: set[str]) -> None:
        self.pipeline.execute(f"UPDATE customers SET city = 'Gone' WHERE lower(trim(email)) IN ({quoted(emails)})")

    def come_back(self, emails: set[str]) -> None:
        self.pipeline.execute(f"UPDATE customers SET city = 'Back' WHERE lower(trim(email)) IN ({quoted(emails)})")

    def rename(self, emails: set[str], name: str) -> None:
        self.pipeline.execute(
            f"UPDATE customers SET first_name = '{name}' WHERE lower(trim(email)) IN ({quoted(emails)})"
        )

    def subscribed(self) -> set[str]:
        return set(self.admin.members(LIST, status=1))

    def snapshot(self) -> pl.DataFrame:
        return self.pipeline.state.snapshot(KEY)

    def status_of(self, emails: set[str]) -> dict[str, str]:
        snap = self.snapshot().filter(pl.col("email").is_in(list(emails)))
        return dict(snap.select("email", "status").iter_rows())

    def unsubscribed_by(self, email: str) -> str | None:
        return self.admin.membership(email, LIST).get("unsubscribed_by")

    def assert_truth(self, never_resubscribed: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        """The list equals the audience less the opted out and rejected; the snapshot equals the list;
        nobody who unsubscribed themselves is subscribed."""
        audience = self.pipeline.audience(KEY)
        snap = self.snapshot()
        kept_out = set(snap.filter(pl.col("status").is_in(["opted_out", "rejected"])).get_column("email"))
        listed = self.subscribed()
        assert listed == audience - kept_out, (len(listed - (audience - kept_out)), len((audience - kept_out) - listed))
        assert set(snap.filter(pl.col("status") == "member").get_column("email")) == listed
        assert not (never_resubscribed & listed), sorted(never_resubscribed & listed)
        assert self.pipeline.state.journal(KEY).is_empty()


@pytest.fixture
def world(home: Paths, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> World:
    home.audiences.write_text(PANEL_YAML)
    point_at(monkeypatch, sandbox)
    return World(Pipeline(home=home, sandbox=sandbox, defs=build_definitions()))
