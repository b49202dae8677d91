"""The audience_sync job with its asset values on S3: audience members and changes are objects in the bucket
(read back here with a client of its own), nothing goes to the local assets folder, and the list in the sandbox
is the audience."""

from __future__ import annotations

import io

import polars as pl
import pytest

from ac_pipeline.definitions import build_definitions
from ac_pipeline.sandbox import SandboxServer
from ac_pipeline.settings import Paths
from ac_pipeline_tests.fixtures.pipeline import Pipeline, materialization
from ac_pipeline_tests.fixtures.sandbox import point_at
from ac_pipeline_tests.objectstore.conftest import S3

AUDIENCE = "welcome_series"


def test_audience_sync_keeps_its_values_on_s3(
    home: Paths, sandbox: SandboxServer, s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AC_PIPELINE_ASSETS", s3.url("prod/assets"))
    point_at(monkeypatch, sandbox)
    pipeline = Pipeline(home=home, sandbox=sandbox, defs=build_definitions())

    result = pipeline.sync(AUDIENCE)
    assert result.success

    members_key = f"prod/assets/audience_members/{AUDIENCE}.parquet"
    changes_key = f"prod/assets/audience_changes/{AUDIENCE}.parquet"
    assert s3.keys() == [changes_key, members_key]
    assert not home.assets.exists()
    assert materialization(result, "audience_members")["url"] == f"s3://{s3.bucket}/{members_key}"
    assert materialization(result, "audience_changes")["url"] == f"s3://{s3.bucket}/{changes_key}"

    members = pl.read_parquet(io.BytesIO(s3.get(members_key)))
    audience = set(members.filter(pl.col("status") == "member").get_column("email"))
    assert audience
    assert audience == pipeline.listed(AUDIENCE)
    # audience_changes was computed from the members it loaded back from S3: a first sync adds everyone.
    changes = pl.read_parquet(io.BytesIO(s3.get(changes_key)))
    assert set(changes.filter(pl.col("op") == "add").get_column("email")) == audience
