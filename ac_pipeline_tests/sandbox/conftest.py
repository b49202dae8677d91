"""Fixtures for the sandbox's own tests: a real sandbox and an API client that waits out 429s."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ac_pipeline.sandbox import SandboxServer
from ac_pipeline_tests.sandbox.helpers import Api


@pytest.fixture
def api(sandbox: SandboxServer) -> Iterator[Api]:
    with Api(sandbox) as client:
        yield client
