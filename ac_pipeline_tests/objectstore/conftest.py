"""An S3-compatible server on loopback (moto's server mode) with one bucket, and the standard AWS environment
variables pointing at it, as a production deployment would set them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from ac_pipeline_tests.fixtures.network import free_port

BUCKET = "ac-pipeline-assets"
ACCESS_KEY = "AKIAOBJECTSTORETEST"
SECRET_KEY = "objectstore-secret-never-shown"


@dataclass
class S3:
    endpoint: str
    bucket: str
    # A client of its own (boto3, not the pipeline's s3fs) to check what the store really holds.
    client: Any

    def url(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def keys(self) -> list[str]:
        listed = self.client.list_objects_v2(Bucket=self.bucket)
        return sorted(item["Key"] for item in listed.get("Contents", []))

    def require_signatures(self) -> None:
        """From now on the server checks credentials (moto accepts anything by default)."""
        httpx.post(f"{self.endpoint}/moto-api/reset-auth", content=b"0").raise_for_status()

    def accept_any_signature(self) -> None:
        httpx.post(f"{self.endpoint}/moto-api/reset-auth", content=b"inf").raise_for_status()


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[S3]:
    """moto's S3 server on 127.0.0.1 at a free port, with an empty bucket; stopped (and emptied) after."""
    endpoint = f"http://127.0.0.1:{free_port()}"
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(endpoint.rsplit(":", 1)[1]), verbose=False)
    server.start()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    # Nothing from this machine's own AWS setup, and no credential lookups beyond loopback (the instance
    # metadata service is on 169.254.169.254).
    for name in ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    client.create_bucket(Bucket=BUCKET)
    try:
        yield S3(endpoint=endpoint, bucket=BUCKET, client=client)
    finally:
        # moto keeps its buckets and its authentication switch in this process, across servers.
        httpx.post(f"{endpoint}/moto-api/reset-auth", content=b"inf").raise_for_status()
        httpx.post(f"{endpoint}/moto-api/reset").raise_for_status()
        server.stop()
