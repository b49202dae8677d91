"""Fixtures of the client tests: a sandbox with a known key at 100 times real speed (`sb`), and a client
connected to it (`client`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from ac_pipeline.activecampaign import ActiveCampaignClient
from ac_pipeline.sandbox import SandboxServer
from ac_pipeline_tests.activecampaign.client_sandbox_helpers import KEY, SPEED, connect


@pytest.fixture
def sb(make_sandbox: Callable[..., SandboxServer]) -> SandboxServer:
    return make_sandbox(api_key=KEY, speed=SPEED, seed=0)


@pytest.fixture
def client(sb: SandboxServer) -> Iterator[ActiveCampaignClient]:
    with connect(sb) as ac:
        yield ac
