"""Shared fixtures: a small sample customer 360 and a pipeline home in a temporary folder."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ac_pipeline.customer360.generate import generate
from ac_pipeline.defs.activecampaign.local_sandbox import stop_local_sandbox
from ac_pipeline.settings import Paths, paths

REPO = Path(__file__).resolve().parent.parent
SAMPLE_AUDIENCES = REPO / "data" / "audiences.yaml"

# Fixtures for every suite: real sandboxes (`sandbox`, `make_sandbox`) and a pipeline wired to one.
from ac_pipeline_tests.fixtures.network import free_port  # noqa: E402
from ac_pipeline_tests.fixtures.pipeline import pipeline  # noqa: E402,F401
from ac_pipeline_tests.fixtures.sandbox import make_sandbox, sandbox, sandbox_server  # noqa: E402,F401


@pytest.fixture(scope="session")
def sample_360(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 20,000-customer sample customer 360, generated once; copy it before changing it."""
    return generate(tmp_path_factory.mktemp("c360") / "customer_360.duckdb", customers=20_000, seed=7)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sample_360: Path) -> Iterator[Paths]:
    """A pipeline home with its own copy of the sample customer 360 and the sample audiences."""
    monkeypatch.setenv("AC_PIPELINE_HOME", str(tmp_path))
    for name in (
        "AC_PIPELINE_CUSTOMER_360",
        "AC_PIPELINE_AUDIENCES",
        "AC_PIPELINE_STATE",
        "AC_PIPELINE_ASSETS",
        "AC_PIPELINE_SANDBOX_STATE",
        "AC_PIPELINE_ACTIVECAMPAIGN_DB",
        "DAGSTER_HOME",
        "ACTIVECAMPAIGN_API_URL",
        "ACTIVECAMPAIGN_API_KEY",
        "AC_PIPELINE_IMPORT_CALLBACKS",
        "AC_PIPELINE_CALLBACK_URL",
        "AC_PIPELINE_CALLBACK_LISTEN",
    ):
        monkeypatch.delenv(name, raising=False)
    shutil.copy(sample_360, tmp_path / "customer_360.duckdb")
    shutil.copy(SAMPLE_AUDIENCES, tmp_path / "audiences.yaml")
    # A run without ACTIVECAMPAIGN_API_URL starts the built-in sandbox: on a port of its own, stopped after.
    monkeypatch.setenv("AC_PIPELINE_SANDBOX_PORT", str(free_port()))
    where = paths()
    yield where
    stop_local_sandbox(where.sandbox_state)
