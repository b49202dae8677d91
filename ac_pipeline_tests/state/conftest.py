"""The sync state suite runs against both backends: a DuckDB file, and a scratch Postgres database."""

from __future__ import annotations

from pathlib import Path

import pytest

from ac_pipeline.state.store import SyncState
from ac_pipeline_tests.deploy.postgres import postgres_database  # noqa: F401 - a fixture

BACKENDS = ["duckdb", "postgres"]


@pytest.fixture(params=BACKENDS)
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where a state lives: `tmp_path/state.duckdb`, or `postgresql://.../<scratch database>`."""
    if request.param == "duckdb":
        return tmp_path / "sub" / "state.duckdb"
    return request.getfixturevalue("postgres_database").url


@pytest.fixture
def state(location: Path | str) -> SyncState:
    return SyncState(location)
