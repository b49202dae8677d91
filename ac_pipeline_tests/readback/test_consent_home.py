"""Opt-outs come home: after a read-back, the account tables say who unsubscribed from which list, when and how,
and an audience's SQL can leave them out."""

from __future__ import annotations

import duckdb
import pytest

from ac_pipeline.cli import main
from ac_pipeline.definitions import build_definitions
from ac_pipeline_tests.fixtures.pipeline import Pipeline
from ac_pipeline_tests.readback.helpers import reconcile
from ac_pipeline_tests.sync.consent_world import LIST, PANEL_YAML, World

# The panel again, as a second list that leaves out whoever opted out of any list.
CAREFUL = """
  - key: careful_panel
    list: {name: Careful panel, create: true}
    condition: customer_id % 40 = 0 AND coalesce(city, '') <> 'Gone'
    exclude: {suppression_table: activecampaign.opt_outs}
    fields: {email: email}
"""


def test_opt_outs_come_home_and_audiences_can_leave_them_out(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.sync()
    members = sorted(world.pipeline.audience("panel"))
    themselves, leaving = members[:2], members[2:4]
    for email in themselves:
        world.admin.unsubscribe(email, LIST, campaign=6, message=8, reason="too many")
    world.admin.bounce(members[4], LIST)
    world.leave(set(leaving))
    world.sync()  # the sync's own removals: unsubscribes, not opt-outs
    reconcile(world)
    assert main(["state", "show"]) == 0
    assert f"panel                    read back  {len(members):>10,}   contacts on the list" in capsys.readouterr().out

    with duckdb.connect(str(world.pipeline.home.activecampaign), read_only=True) as tables:
        opt_outs = dict(tables.sql("SELECT email, unsubscribed_by FROM opt_outs WHERE list = 'Panel'").fetchall())
        hows = dict(tables.sql("SELECT email, how FROM opt_outs").fetchall())
        unsubscribes = {row[0] for row in tables.sql("SELECT email FROM unsubscribes").fetchall()}
        [(tagged,)] = tables.sql("SELECT count(DISTINCT email) FROM contact_tags WHERE tag = 'panel'").fetchall()
    assert opt_outs == {themselves[0]: "person", themselves[1]: "person", members[4]: "bounce"}
    assert "campaign 6" in hows[themselves[0]]
    assert set(leaving) <= unsubscribes and not set(leaving) & set(opt_outs)
    assert tagged == len(members)  # everyone on the list, whatever their status, keeps the tag

    world.pipeline.home.audiences.write_text(PANEL_YAML + CAREFUL)
    careful = World(Pipeline(home=world.pipeline.home, sandbox=world.pipeline.sandbox, defs=build_definitions()))
    result = careful.pipeline.sync("careful_panel")
    assert result.success
    kept = careful.pipeline.audience("careful_panel")
    assert not kept & set(opt_outs)
    assert kept == set(world.pipeline.audience("panel")) - set(opt_outs)
