"""What the reliability tests (test_reliability_*.py, test_crash_operations.py) share: the sample audiences,
the sandbox's bulk import paths, the fault storm, helpers that read a run's events and the sandbox's request
counts, and a sync in a child process that is killed at a chosen point.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest

from ac_pipeline.sandbox import SandboxServer
from ac_pipeline.sandbox.admin_client import SandboxAdminError
from ac_pipeline_tests.fixtures.pipeline import Pipeline
from ac_pipeline_tests.fixtures.sandbox import point_at

AUDIENCES = ("vip_customers", "lapsed_buyers", "newsletter_canada", "welcome_series")
SYNC_STEP = "activecampaign_sync"
BULK = "POST /api/3/import/bulk_import"
POLL = "GET /api/3/import/info"
BATCH = 250  # contacts per bulk import
MAX_IN_FLIGHT = 20  # Push's default
CRASH_CHILD = Path(__file__).with_name("crash_child.py")

# About 10% 5xx (500 and 503) and 5% dropped connections everywhere, plus bursts of forced 429s on the bulk
# import and one-contact paths.
STORM = "/api/3/*:500=0.06,503=0.04,drop=0.05;/api/3/import/*:429=0.2;/api/3/contact*:429=0.15"


def events_of(result: dg.ExecuteInProcessResult, event_type: str, step: str | None = None) -> list[dg.DagsterEvent]:
    return [e for e in result.all_events if e.event_type_value == event_type and (step is None or e.step_key == step)]


def retries_of(result: dg.ExecuteInProcessResult, step: str | None = None) -> int:
    """Step retries Dagster made in this run (a RetryPolicy at work)."""
    return len(events_of(result, "STEP_UP_FOR_RETRY", step)) + len(events_of(result, "STEP_RESTARTED", step))


def failure_message(result: dg.ExecuteInProcessResult, step: str) -> str:
    [failure] = events_of(result, "STEP_FAILURE", step)
    error = failure.step_failure_data.error
    return f"{error.message}\n{error.cause.message if error.cause else ''}"


def assert_in_step(pipeline: Pipeline, partition: str) -> None:
    """No drift: the list holds exactly the audience, and the snapshot says so."""
    listed, audience, snapshot = (
        pipeline.listed(partition),
        pipeline.audience(partition),
        pipeline.snapshot_members(partition),
    )
    assert listed == audience, (partition, len(listed - audience), len(audience - listed))
    assert snapshot == audience, (partition, len(snapshot - audience), len(audience - snapshot))


def listed(pipeline: Pipeline, partition: str) -> set[str]:
    """The list's subscribers; none when the list does not exist (yet)."""
    try:
        return pipeline.listed(partition)
    except SandboxAdminError as missing:
        assert "404" in str(missing), missing
        return set()


def bulk_accepted(sandbox: SandboxServer) -> int:
    return int(sandbox.admin.requests()["by_path_status"].get(BULK, {}).get("200", 0))


def requests_total(sandbox: SandboxServer) -> int:
    return int(sandbox.admin.requests()["total"])


def bulk_batches(changes: int) -> int:
    """Bulk imports needed to send this many changes (fewer than 10 go one by one)."""
    return 0 if changes < 10 else math.ceil(changes / BATCH)


def use_sandbox(monkeypatch: pytest.MonkeyPatch, sandbox: SandboxServer, api_key: str | None = None) -> None:
    point_at(monkeypatch, sandbox, api_key=api_key)


def run_crash_child(partition: str, die_in: str, log: Path, kill_when: Callable[[], bool] | None = None) -> int:
    """Run crash_child.py for `partition` (dying itself at `die_in`, if given), SIGKILL it from outside once
    `kill_when()` is true (polled every 5 ms, for at most 120 s); its exit code (-SIGKILL when killed)."""
    with open(log, "wb") as output:
        child = subprocess.Popen(
            [sys.executable, str(CRASH_CHILD), partition, "--die-in", die_in],
            env=dict(os.environ),
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            if kill_when is not None:
                deadline = time.monotonic() + 120
                while not kill_when() and child.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.005)
                if child.poll() is None:
                    os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=120)
        finally:
            if child.poll() is None:
                os.kill(child.pid, signal.SIGKILL)
                child.wait(timeout=30)
    return child.returncode
