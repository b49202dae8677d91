"""Fixtures of the audience tests: a secret file audience SQL must never read, and a customer 360 of
the test's own."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ac_pipeline_tests.audiences.sql_lock_helpers import MARKER


@pytest.fixture
def secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A file audience SQL must never read; also reachable as `secret.csv` from the working directory."""
    path = tmp_path / "secret.csv"
    path.write_text(f"{MARKER}\n{MARKER}\n")
    monkeypatch.chdir(tmp_path)
    return path


@pytest.fixture
def customer_360(tmp_path: Path, sample_360: Path) -> Path:
    path = tmp_path / "customer_360.duckdb"
    shutil.copy(sample_360, path)
    return path
