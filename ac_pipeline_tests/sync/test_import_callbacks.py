"""Import callbacks: a batch that ActiveCampaign reports through its callback as fully imported is settled
without `import/info`; anything less than that report is never believed.

Real parts: the sandbox on loopback calls the push's listener back; the state is a DuckDB file.
"""

from __future__ import annotations

import json
import random
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from ac_pipeline.activecampaign import ActiveCampaignClient, RateLimits
from ac_pipeline.activecampaign.import_callbacks import (
    BATCH_PARAM,
    TOKEN_HEADER,
    ImportCallbacks,
    ImportReport,
    read_report,
)
from ac_pipeline.audiences.changes import diff
from ac_pipeline.audiences.config import Audience, parse_audiences
from ac_pipeline.sandbox import SandboxServer
from ac_pipeline.state.store import SyncState
from ac_pipeline.sync.outcomes import PushResult
from ac_pipeline.sync.push import Push
from ac_pipeline_tests.fixtures.network import free_port

AUDIENCE = """
audiences:
  - key: called
    list: {name: Callback list, create: true}
    condition: "true"
    fields: {email: email, first_name: first_name}
"""
CONTACTS = 5_000  # 20 bulk imports
INFO = "GET /api/3/import/info"
IMPORT = "POST /api/3/import/bulk_import"
# The poll interval of the tests that count polls: a callback may be 3 s late (30 intervals) before its batch is
# polled, so a loaded machine's slow callback does not turn into a poll.
PATIENT = 0.1


def accepted_imports(sandbox: SandboxServer) -> int:
    """Bulk imports the sandbox queued (a throttled one, sent again, is counted once)."""
    return int(sandbox.admin.requests()["by_path_status"][IMPORT]["200"])


def members(n: int, version: str = "a") -> pl.DataFrame:
    emails = [f"person{i}@example.com" for i in range(n)]
    return pl.DataFrame({"email": emails, "first_name": [f"Ada {version}"] * n}).with_columns(
        fields_hash=pl.col("email") + version
    )


@pytest.fixture
def client(sandbox: SandboxServer) -> Iterator[ActiveCampaignClient]:
    limits = RateLimits(safety_margin=0.2).scaled(sandbox.config.speed)
    with ActiveCampaignClient(sandbox.url, sandbox.api_key, limits=limits) as client:
        yield client


def push(
    client: ActiveCampaignClient,
    state: SyncState,
    frame: pl.DataFrame,
    speed: float,
    callbacks: ImportCallbacks | None,
    log: list[str] | None = None,
    run_id: str = "run-1",
    poll_interval: float | None = None,
) -> PushResult:
    audience: Audience = parse_audiences(AUDIENCE).get("called")
    changes = diff(frame, state.snapshot(audience.key))
    return Push(
        client,
        state,
        audience,
        run_id,
        account="test",
        log=(log.append if log is not None else lambda _: None),
        poll_interval=poll_interval or 1 / speed,
        callbacks=callbacks,
    ).run(changes)


def confirmed_emails(state: SyncState, run_id: str = "run-1") -> set[str]:
    ledger = state.ledger("called", run_id)
    return set(ledger.filter(pl.col("status") == "confirmed").get_column("email"))


def test_batches_reported_in_full_by_their_callback_take_no_poll(
    sandbox: SandboxServer, client: ActiveCampaignClient, tmp_path: Path
) -> None:
    state = SyncState(tmp_path / "state.duckdb")
    result = push(client, state, members(CONTACTS), sandbox.config.speed, ImportCallbacks(), poll_interval=PATIENT)

    by_path = sandbox.admin.requests()["by_path"]
    assert accepted_imports(sandbox) == result.batches == result.batches_called_back == CONTACTS // 250
    assert INFO not in by_path
    assert result.requests / CONTACTS <= 0.005
    assert result.outcomes["confirmed"] == CONTACTS
    # What the push believes is what the list holds, contact by contact, and what the snapshot says.
    emails = set(members(CONTACTS).get_column("email"))
    assert set(sandbox.admin.members("Callback list")) == emails == confirmed_emails(state)
    snapshot = state.snapshot("called")
    assert set(snapshot.filter(pl.col("status") == "member").get_column("email")) == emails

    # An update of every contact goes the same way, and a sync with nothing to send asks nothing.
    before = sandbox.admin.requests()["total"]
    updated = push(
        client,
        state,
        members(CONTACTS, "b"),
        sandbox.config.speed,
        ImportCallbacks(),
        run_id="run-2",
        poll_interval=PATIENT,
    )
    assert updated.batches_called_back == CONTACTS // 250 and updated.outcomes["confirmed"] == CONTACTS
    assert INFO not in sandbox.admin.requests()["by_path"]
    assert updated.requests / CONTACTS <= 0.005
    unchanged = push(client, state, members(CONTACTS, "b"), sandbox.config.speed, ImportCallbacks(), run_id="run-3")
    assert unchanged.batches == 0 and unchanged.requests <= 3
    assert sandbox.admin.requests()["total"] - before == updated.requests + unchanged.requests


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_batch_whose_callback_names_a_failure_is_read_and_only_its_refusals_are_held_back(
    seed: int, sandbox: SandboxServer, client: ActiveCampaignClient, tmp_path: Path
) -> None:
    rng = random.Random(seed)
    refused = sorted({f"person{rng.randrange(CONTACTS)}@example.com" for _ in range(rng.randint(1, 6))})
    sandbox.admin.exclude(refused)
    state = SyncState(tmp_path / "state.duckdb")
    result = push(client, state, members(CONTACTS), sandbox.config.speed, ImportCallbacks(), poll_interval=PATIENT)

    batches_with_refusals = {int(email.removeprefix("person").split("@")[0]) // 250 for email in refused}
    by_path_status = sandbox.admin.requests()["by_path_status"]
    assert by_path_status[INFO]["200"] == len(batches_with_refusals)  # each such batch read once, no other
    assert result.batches_called_back == CONTACTS // 250 - len(batches_with_refusals)
    status = dict(state.ledger("called", "run-1").select("email", "status").iter_rows())
    assert {email: status[email] for email in refused} == dict.fromkeys(refused, "rejected")
    expected = set(members(CONTACTS).get_column("email")) - set(refused)
    assert confirmed_emails(state) == expected == set(sandbox.admin.members("Callback list"))


def test_callbacks_that_never_come_cost_time_and_no_contact(
    sandbox: SandboxServer, client: ActiveCampaignClient, tmp_path: Path
) -> None:
    """ActiveCampaign cannot reach the listener (here: a URL where nothing listens): the push polls every batch."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{s.getsockname()[1]}/nobody-listens"
    state = SyncState(tmp_path / "state.duckdb")
    log: list[str] = []
    result = push(client, state, members(CONTACTS), sandbox.config.speed, ImportCallbacks(public_url=nowhere), log)

    assert result.outcomes["confirmed"] == CONTACTS and result.batches_called_back == 0
    assert sandbox.admin.requests()["by_path"][INFO] >= result.batches
    assert sum("no import callback has come" in line for line in log) == 1
    assert sandbox.admin.imports()["callbacks_failed"] >= 1
    assert set(sandbox.admin.members("Callback list")) == confirmed_emails(state)


def test_a_listener_that_cannot_start_leaves_the_push_polling(
    sandbox: SandboxServer, client: ActiveCampaignClient, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        log: list[str] = []
        callbacks = ImportCallbacks(listen_port=taken.getsockname()[1])
        result = push(client, SyncState(tmp_path / "state.duckdb"), members(600), sandbox.config.speed, callbacks, log)
    assert result.outcomes["confirmed"] == 600 and result.batches_called_back == 0
    assert any("import callbacks are off for this push" in line for line in log)


# -- what a callback must say before it is believed -------------------------------------------------------------


def post(url: str, token: str | None, body: bytes, content_type: str) -> int:
    headers = {"Content-Type": content_type, **({TOKEN_HEADER: token} if token else {})}
    return httpx.post(url, content=body, headers=headers).status_code


def test_the_listener_hands_a_callback_only_to_the_push_whose_token_it_carries() -> None:
    got: list[ImportReport] = []
    found, url, token = ImportCallbacks().start(got.append)
    other = found.register(lambda r: pytest.fail(f"delivered to the wrong push: {r}"))
    form = f"{BATCH_PARAM}=7&status=completed&success=250&failure=0".encode()
    kind = "application/x-www-form-urlencoded"
    try:
        assert post(url, token, form, kind) == 200
        refused_before = found.refused
        assert post(url, None, form, kind) == 403
        assert post(url, token[:-1] + ("A" if token[-1] != "A" else "B"), form, kind) == 403
        assert post(url, "", form, kind) == 403
        assert found.refused == refused_before + 3
        assert post(url, token, b"success=250&failure=0", kind) == 400  # names no batch
        assert post(url, token, b"{not json", "application/json") == 400
        assert post(url, token, b"x" * 1_000_001, kind) == 413
        found.unregister(token)
        assert post(url, token, form, kind) == 403  # that push is over: its token is gone
    finally:
        found.unregister(token)
        found.unregister(other)
    assert got == [ImportReport("7", "completed", 250, 0)]
    # The last push out closed the listener: its port is free for the next run.
    with pytest.raises(httpx.ConnectError):
        post(url, token, form, kind)


def test_a_fixed_port_is_shared_by_the_pushes_of_a_process_and_freed_after_them() -> None:
    port = free_port()
    one, _, first = ImportCallbacks(listen_port=port).start(lambda r: None)
    two, _, second = ImportCallbacks(listen_port=port).start(lambda r: None)
    assert one is two and first != second
    one.unregister(first)
    with socket.socket() as s, pytest.raises(OSError):
        s.bind(("127.0.0.1", port))  # still held: the second push is on
    two.unregister(second)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def form(**fields: Any) -> tuple[bytes, str]:
    parts = []
    for key, value in fields.items():
        for item in value if isinstance(value, list) else [value]:
            parts.append((f"{key}[]" if isinstance(value, list) else key, str(item)))
    return httpx.QueryParams(parts).__str__().encode(), "application/x-www-form-urlencoded"


def as_json(**fields: Any) -> tuple[bytes, str]:
    return json.dumps(fields).encode(), "application/json"


@pytest.mark.parametrize(
    ("body", "vouches"),
    [
        (form(ac_pipeline_batch="3", status="completed", success=250, failure=0), True),
        (form(ac_pipeline_batch="3", success=250, failure=0), True),  # no status: the counts say it
        (as_json(ac_pipeline_batch="3", status="completed", success=250, failure=0), True),
        (as_json(ac_pipeline_batch=3, success="250", failure=[]), True),
        (as_json(params=[{"key": "ac_pipeline_batch", "value": "3"}], success=250, failure=0), True),
        (as_json(params={"ac_pipeline_batch": "3"}, success=[str(i) for i in range(250)], failure=0), True),
        # Not believed: a failure, a count that does not add up, a count missing or unreadable, another status.
        (form(ac_pipeline_batch="3", success=249, failure=1, failure_reasons=["a@x: excluded"]), False),
        (as_json(ac_pipeline_batch="3", success=250, failure=["a@example.com"]), False),
        (form(ac_pipeline_batch="3", success=249, failure=0), False),
        (form(ac_pipeline_batch="3", success=251, failure=0), False),
        (form(ac_pipeline_batch="3", success=250), False),
        (form(ac_pipeline_batch="3", failure=0), False),
        (as_json(ac_pipeline_batch="3", success=250, failure=None), False),
        (as_json(ac_pipeline_batch="3", success=250, failure=False), False),
        (as_json(ac_pipeline_batch="3", success=250, failure=-1), False),
        (as_json(ac_pipeline_batch="3", success=250.0, failure=0), False),
        (form(ac_pipeline_batch="3", success="250 ", failure="zero"), False),
        (form(ac_pipeline_batch="3", status="failed", success=250, failure=0), False),
        (form(ac_pipeline_batch="3", status="interrupted", success=250, failure=0), False),
    ],
)
def test_a_callback_is_believed_only_when_it_accounts_for_every_contact(body: tuple[bytes, str], vouches: bool) -> None:
    report = read_report(body[0], body[1], "")
    assert report is not None and report.batch_key == "3"
    assert report.vouches_for(250) is vouches


def test_parameters_in_the_query_string_name_the_batch() -> None:
    report = read_report(b"", "", f"{BATCH_PARAM}=12")
    assert report == ImportReport("12", None, None, None) and not report.vouches_for(250)
    assert read_report(b"", "", "") is None
    assert read_report(b"[1, 2]", "application/json", "") is None
    assert read_report(b"\xff\xfe", "application/x-www-form-urlencoded", "") is None


def test_the_sandbox_refuses_a_batch_whose_callback_it_could_not_make(
    sandbox: SandboxServer, client: ActiveCampaignClient
) -> None:
    contacts = [{"email": f"c{i}@example.com"} for i in range(10)]
    for callback in (
        "https://example.com",
        {"requestType": "POST"},
        {"url": "ftp://example.com/x"},
        {"url": "https://example.com/x", "requestType": "PUT"},
        {"url": "https://example.com/x", "params": {"a": "b"}},
        {"url": "https://example.com/x", "headers": [{"value": "no key"}]},
    ):
        response = httpx.post(
            f"{sandbox.url}/api/3/import/bulk_import",
            json={"contacts": contacts, "callback": callback},
            headers={"Api-Token": sandbox.api_key},
        )
        assert response.status_code == 400, callback
        assert "callback" in response.json()["failureReasons"][0]
    assert sandbox.admin.imports()["pending"] == 0
