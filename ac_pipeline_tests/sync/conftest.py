"""Fixtures of the sync tests: the small `panel` audience on a real sandbox (see consent_world), a
persistent Dagster instance, and quick step retries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from ac_pipeline_tests.sync.consent_world import world  # noqa: F401 - a fixture
from ac_pipeline_tests.sync.orchestration_helpers import instance_dir


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """A persistent (SQLite) Dagster instance in the test's folder."""
    with dg.DagsterInstance.from_config(str(instance_dir(tmp_path / "dagster_home"))) as instance:
        yield instance


@pytest.fixture
def quick_step_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The asset's RetryPolicy waits 5 s +- 5 s before a first retry, 15 s +- 5 s before a second: wait
    0.2 s instead, so that a test of what gets retried does not spend its time sleeping."""
    import dagster._core.definitions.policy as policy

    monkeypatch.setattr(policy, "calculate_delay", lambda **_: 0.2)
