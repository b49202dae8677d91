"""What a large push asks ActiveCampaign about its bulk imports, and what it may conclude from the answers.

The per-contact outcome of an import is only in `GET import/info?batchId=` (the summary, `GET
import/bulk_import`, is counts per day for the whole account: no batch ids, no failures). So every batch is
read once on its own before any of its contacts is confirmed: these tests hold the push to that floor, to
few polls above it, and to exact outcomes for the contacts an import refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from ac_pipeline.activecampaign import ActiveCampaignClient, RateLimits
from ac_pipeline.audiences.changes import diff
from ac_pipeline.audiences.config import Audience, parse_audiences
from ac_pipeline.sandbox import SandboxServer
from ac_pipeline.state.store import SyncState
from ac_pipeline.sync.outcomes import PushResult
from ac_pipeline.sync.push import Push

AUDIENCE = """
audiences:
  - key: polls
    list: {name: Poll list, create: true}
    condition: "true"
    fields: {email: email, first_name: first_name}
"""
CONTACTS = 5_000  # 20 bulk imports
INFO = "GET /api/3/import/info"
IMPORT = "POST /api/3/import/bulk_import"


def members(n: int) -> pl.DataFrame:
    emails = [f"person{i}@example.com" for i in range(n)]
    return pl.DataFrame({"email": emails, "first_name": ["Ada"] * n}).with_columns(fields_hash=pl.col("email"))


@pytest.fixture
def client(sandbox: SandboxServer) -> Iterator[ActiveCampaignClient]:
    limits = RateLimits(safety_margin=0.2).scaled(sandbox.config.speed)
    with ActiveCampaignClient(sandbox.url, sandbox.api_key, limits=limits) as client:
        yield client


def push(client: ActiveCampaignClient, state: SyncState, audience: Audience, speed: float) -> PushResult:
    changes = diff(members(CONTACTS), state.snapshot(audience.key))
    return Push(client, state, audience, "run-1", account="test", log=lambda _: None, poll_interval=1 / speed).run(
        changes
    )


def test_each_import_is_read_once_on_its_own_and_rarely_more(
    sandbox: SandboxServer, client: ActiveCampaignClient, tmp_path: Path
) -> None:
    audience = parse_audiences(AUDIENCE).get("polls")
    result = push(client, SyncState(tmp_path / "state.duckdb"), audience, sandbox.config.speed)

    assert result.outcomes["confirmed"] == CONTACTS
    by_path = sandbox.admin.requests()["by_path"]
    imports = by_path[IMPORT]
    assert imports == result.batches == CONTACTS // 250
    # The floor: no batch's contacts are confirmed before its own import/info said "completed" ...
    assert by_path[INFO] >= imports
    # ... and the timing of the polls keeps the ones that find a batch still running to a few.
    assert by_path[INFO] <= imports * 1.25
    assert "GET /api/3/import/bulk_import" not in by_path  # it cannot settle a batch (see the module docstring)


def test_contacts_an_import_refused_are_never_confirmed_and_the_rest_are(
    sandbox: SandboxServer, client: ActiveCampaignClient, tmp_path: Path
) -> None:
    audience = parse_audiences(AUDIENCE).get("polls")
    refused = [f"person{i}@example.com" for i in (0, 249, 250, 4_999)]  # first and last of their batches
    sandbox.admin.exclude(refused)
    state = SyncState(tmp_path / "state.duckdb")

    result = push(client, state, audience, sandbox.config.speed)

    ledger = state.ledger("polls", "run-1")
    status = dict(zip(ledger.get_column("email"), ledger.get_column("status"), strict=True))
    assert {email: status[email] for email in refused} == dict.fromkeys(refused, "rejected")
    confirmed = {email for email, s in status.items() if s == "confirmed"}
    assert confirmed == set(members(CONTACTS).get_column("email")) - set(refused)
    assert result.outcomes["confirmed"] == CONTACTS - len(refused)
    # What the push believes is what the list holds.
    assert set(sandbox.admin.members("Poll list")) == confirmed
