"""The identity tests' fixture: the `panel` audience (ac_pipeline_tests.sync.consent_world) on a real sandbox,
with a client to look contacts up."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ac_pipeline.activecampaign import ActiveCampaignClient
from ac_pipeline.definitions import build_definitions
from ac_pipeline.sandbox import SandboxServer
from ac_pipeline.settings import Paths
from ac_pipeline_tests.fixtures.pipeline import Pipeline
from ac_pipeline_tests.fixtures.sandbox import point_at
from ac_pipeline_tests.identity.helpers import Identity
from ac_pipeline_tests.sync.consent_world import PANEL_YAML, World


@pytest.fixture
def identity(home: Paths, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Identity]:
    home.audiences.write_text(PANEL_YAML)
    point_at(monkeypatch, sandbox)
    world = World(Pipeline(home=home, sandbox=sandbox, defs=build_definitions()))
    with ActiveCampaignClient(sandbox.url, sandbox.api_key) as client:
        yield Identity(world, client)
