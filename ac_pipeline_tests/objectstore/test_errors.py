"""What a person sees when the store cannot be used: which URL (never a secret) and what to do about it."""

from __future__ import annotations

import polars as pl
import pytest

from ac_pipeline_tests.fixtures.network import free_port
from ac_pipeline_tests.objectstore.conftest import S3, SECRET_KEY
from ac_pipeline_tests.objectstore.values import NAME, event_log, failure, materialize

FRAME = pl.DataFrame({"email": ["a@example.com"]})


def test_a_missing_value_says_what_to_materialize(s3: S3) -> None:
    result, _ = materialize(s3.url("prefix"))
    assert f"{s3.url('prefix')}/{NAME} does not exist: materialize value for this partition first" in failure(result)


def test_a_missing_bucket(s3: S3) -> None:
    url = "s3://no-such-bucket/prefix"
    for result, _ in (materialize(url, FRAME), materialize(url)):
        message = failure(result)
        assert f"asset values at {url} (endpoint {s3.endpoint})" in message
        assert "the bucket does not exist (NoSuchBucket)" in message
        assert "point AC_PIPELINE_ASSETS at one that does" in message


def test_credentials_the_store_refuses(s3: S3, monkeypatch: pytest.MonkeyPatch) -> None:
    s3.require_signatures()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNTOTHESTORE")
    for result, _ in (materialize(s3.url("prefix"), FRAME), materialize(s3.url("prefix"))):
        message = failure(result)
        assert f"asset values at {s3.url('prefix')} (endpoint {s3.endpoint}): access refused" in message
        assert "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in message
        assert SECRET_KEY not in event_log(result)


def test_no_credentials_at_all(s3: S3, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    message = failure(materialize(s3.url("prefix"), FRAME)[0])
    assert "access refused (NoCredentialsError)" in message
    assert "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in message


def test_an_endpoint_nobody_answers(s3: S3, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    # botocore's own retry budget (5 attempts with backoff, about 10 s) is for production, not this test.
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    for result, _ in (materialize(s3.url("prefix"), FRAME), materialize(s3.url("prefix"))):
        message = failure(result)
        assert f"asset values at {s3.url('prefix')} (endpoint {endpoint}): the store did not answer" in message
        assert "Check AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL" in message
        assert SECRET_KEY not in event_log(result)


def test_a_password_in_the_url_is_never_shown() -> None:
    result, _ = materialize("memory://user:hunter2@store/prefix")
    assert "memory://user:***@store/prefix/value/vip.parquet does not exist" in failure(result)
    assert "hunter2" not in event_log(result)
