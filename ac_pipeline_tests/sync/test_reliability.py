"""Reliability, against a real sandbox: a fault storm, crashes (SIGKILL) mid-sync, one audience failing
among several, self opt-outs through re-entry, and the API key kept out of everything the pipeline writes.

Every loop is bounded in count and time; nothing here asserts on durations. Faults are seeded, crash
points are seeded and chosen by progress (the number of bulk imports the sandbox accepted), not by time.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import polars as pl
import pytest
from dagster._serdes import serialize_value

from ac_pipeline.definitions import build_definitions
from ac_pipeline.defs.activecampaign.resources import ActiveCampaignResource
from ac_pipeline.sandbox import SandboxServer
from ac_pipeline.sandbox.admin_client import SandboxAdminError
from ac_pipeline.settings import Paths
from ac_pipeline.sync.bulk import BulkSender
from ac_pipeline.sync.push import Push
from ac_pipeline_tests.fixtures.pipeline import Pipeline, materialization

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


# -- helpers ----------------------------------------------------------------------------------------------


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


def quoted(emails: list[str]) -> str:
    return ", ".join(f"'{e}'" for e in emails)


def use_sandbox(monkeypatch: pytest.MonkeyPatch, sandbox: SandboxServer, api_key: str | None = None) -> None:
    monkeypatch.setenv("ACTIVECAMPAIGN_API_URL", sandbox.url)
    monkeypatch.setenv("ACTIVECAMPAIGN_API_KEY", api_key or sandbox.api_key)
    monkeypatch.setenv("AC_PIPELINE_SANDBOX_SPEED", repr(sandbox.config.speed))


@pytest.fixture
def quick_step_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The asset's RetryPolicy waits 5 s +- 5 s before a first retry, 15 s +- 5 s before a second: wait
    0.2 s instead, so that a test of what gets retried does not spend its time sleeping."""
    import dagster._core.definitions.policy as policy

    monkeypatch.setattr(policy, "calculate_delay", lambda **_: 0.2)


# -- 1. fault storm ---------------------------------------------------------------------------------------


def test_every_audience_syncs_exactly_through_a_fault_storm(pipeline: Pipeline) -> None:
    admin = pipeline.sandbox.admin
    instance = dg.DagsterInstance.ephemeral()  # runs the RetryPolicy in process, should a step need it
    admin.set_faults(STORM, seed=3)
    for key in AUDIENCES:
        result = pipeline.sync(key, instance=instance)
        assert result.success, key
        assert materialization(result, SYNC_STEP)["adds"] == len(pipeline.audience(key)) > 0
    for key in AUDIENCES:
        assert_in_step(pipeline, key)

    # An incremental change under the same storm: people leave and join audiences, fields change, and a
    # handful of changes to welcome_series goes the one-by-one way.
    pipeline.execute(
        "UPDATE customers SET loyalty_tier = 'bronze' WHERE loyalty_tier IN ('gold', 'platinum') AND customer_id % 17 = 0"
    )
    pipeline.execute("UPDATE customers SET first_name = 'Storm' WHERE customer_id % 41 = 0")
    pipeline.execute(
        "UPDATE customers SET last_order_date = DATE '2026-10-20' WHERE order_count >= 2 AND customer_id % 13 = 0"
    )
    pipeline.execute("UPDATE customers SET city = 'Halifax' WHERE country = 'CA' AND customer_id % 23 = 0")
    leaving = sorted(pipeline.audience("welcome_series"))[:4]
    pipeline.execute(f"UPDATE customers SET order_count = 1 WHERE lower(trim(email)) IN ({quoted(leaving)})")
    admin.set_faults(STORM, seed=4)
    for key in AUDIENCES:
        result = pipeline.sync(key, instance=instance)
        assert result.success, key
        pushed = materialization(result, SYNC_STEP)
        assert pushed["updates"] + pushed["removals"] + pushed["adds"] > 0, key
        assert pushed["failed"] == 0
        if key == "welcome_series":
            assert pushed["batches"] == 0 and pushed["removals"] == len(leaving)  # one by one
    for key in AUDIENCES:
        assert_in_step(pipeline, key)
    statuses = admin.requests()["by_status"]
    assert {"500", "503", "429", "dropped"} <= set(statuses), statuses  # the storm did hit

    # Nothing is left unconfirmed: without faults, another sync of everything sends nothing.
    admin.set_faults(None)
    before = requests_total(pipeline.sandbox)
    for key in AUDIENCES:
        result = pipeline.sync(key, instance=instance)
        assert result.success and materialization(result, SYNC_STEP)["requests"] == 0
    assert requests_total(pipeline.sandbox) == before


# -- 2. crashes -------------------------------------------------------------------------------------------

CRASH_SPEED = 5.0
CRASH_AUDIENCE = "lapsed_buyers"  # ~4,900 members: 20 bulk imports


def crash_trials(seed: int) -> list[tuple[str, int]]:
    """(how the child dies, parameter): self-kills at exact points, then SIGKILLs from outside mid-push,
    once the sandbox has accepted a seeded number of bulk imports (while batches are being sent) or
    answered a seeded number of import/info polls (while they are being confirmed and committed)."""
    rng = random.Random(seed)
    return [
        ("members-write", 0),
        ("changes-write", 0),
        ("before-commit", 1),
        ("after-commit", 1),
        *[("kill-after-bulk", rng.randint(1, 14)) for _ in range(2)],
        *[("kill-after-polls", rng.randint(3, 18)) for _ in range(2)],
    ]


def progress(sandbox: SandboxServer, how: str) -> int:
    """Bulk imports accepted, or import/info polls answered, so far."""
    path = BULK if how == "kill-after-bulk" else POLL
    return int(sandbox.admin.requests()["by_path_status"].get(path, {}).get("200", 0))


def fresh_start(pipeline: Pipeline) -> None:
    """An empty account and no sync state: each trial starts a first sync from nothing."""
    pipeline.sandbox.admin.reset()
    for leftover in (pipeline.home.state, Path(f"{pipeline.home.state}.wal")):
        leftover.unlink(missing_ok=True)
    shutil.rmtree(pipeline.home.assets, ignore_errors=True)


def test_a_sync_killed_at_random_points_resumes_without_drift_or_resending(
    home: Paths, make_sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sandbox = make_sandbox(speed=CRASH_SPEED)
    use_sandbox(monkeypatch, sandbox)
    pipeline = Pipeline(home=home, sandbox=sandbox, defs=build_definitions())
    for trial, (how, n) in enumerate(crash_trials(seed=3)):
        fresh_start(pipeline)
        die_in = {
            "members-write": how,
            "changes-write": how,
            "before-commit": f"before-commit:{n}",
            "after-commit": f"after-commit:{n}",
        }.get(how, "")
        output = open(tmp_path / f"child-{trial}.log", "wb")  # noqa: SIM115
        child = subprocess.Popen(
            [sys.executable, str(CRASH_CHILD), CRASH_AUDIENCE, "--die-in", die_in],
            env=dict(os.environ),
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            if how.startswith("kill-after-"):
                deadline = time.monotonic() + 120
                while progress(sandbox, how) < n and child.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.01)
                if child.poll() is None:
                    os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=120)
        finally:
            if child.poll() is None:
                os.kill(child.pid, signal.SIGKILL)
                child.wait(timeout=30)
            output.close()
        log = (tmp_path / f"child-{trial}.log").read_text(errors="replace")
        assert child.returncode == -signal.SIGKILL, (trial, how, n, child.returncode, log[-3000:])

        # What the kill left: in-flight imports finish on their own; the snapshot (its WAL replayed by
        # DuckDB on open) holds only what ActiveCampaign has.
        sandbox.admin.wait_for_imports()
        if how == "after-commit":
            assert Path(f"{home.state}.wal").exists()  # the last commit lives only in the WAL
        confirmed = pipeline.snapshot_members(CRASH_AUDIENCE)
        assert confirmed <= listed(pipeline, CRASH_AUDIENCE), (trial, how)
        if how == "after-commit":
            # The commit the process died right after survived: the child said what it had committed.
            assert f"committed {len(confirmed)} members" in log, (len(confirmed), log[-3000:])
            assert confirmed
        if how == "before-commit":
            assert "dying before COMMIT" in log, log[-3000:]
            assert not confirmed  # the first commit never happened: nothing is confirmed
            assert bulk_accepted(sandbox) > 0
        if how in ("members-write", "changes-write"):
            assert not confirmed and bulk_accepted(sandbox) == 0
            assert list(home.assets.rglob("*.parquet.partial"))  # the half-written file is there...
        if how.startswith("kill-after-"):
            assert progress(sandbox, how) >= n
        accepted_before = bulk_accepted(sandbox)

        resumed = pipeline.sync(CRASH_AUDIENCE)
        assert resumed.success, (trial, how)
        members = pipeline.audience(CRASH_AUDIENCE)
        assert_in_step(pipeline, CRASH_AUDIENCE)  # ...and did no harm; no contact lost
        unconfirmed = len(members) - len(confirmed)
        pushed = materialization(resumed, SYNC_STEP)
        assert pushed["adds"] == unconfirmed, (trial, how)
        # Only what the snapshot did not hold was sent again: at most the batches in flight at the kill.
        resent = bulk_accepted(sandbox) - accepted_before
        assert resent == bulk_batches(unconfirmed), (trial, how)
        assert accepted_before + resent <= bulk_batches(len(members)) + MAX_IN_FLIGHT
        assert pipeline.state.snapshot_counts(CRASH_AUDIENCE)["member"] == len(members)


# -- 3. one audience fails among several --------------------------------------------------------------------


def test_one_failing_audience_is_retried_alone_and_resends_only_its_unconfirmed_contacts(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, quick_step_retries: None
) -> None:
    failing = "lapsed_buyers"
    admin = pipeline.sandbox.admin
    # One client retry: a persistent 503 fails the step in a second rather than after 8 backed-off retries.
    defs = pipeline.defs
    client_resource = ActiveCampaignResource(
        api_url=dg.EnvVar("ACTIVECAMPAIGN_API_URL"),
        api_key=dg.EnvVar("ACTIVECAMPAIGN_API_KEY"),
        sandbox_speed=pipeline.sandbox.config.speed,
        max_retries=1,
    )
    pipeline = Pipeline(
        pipeline.home,
        pipeline.sandbox,
        dg.Definitions(
            assets=defs.assets, jobs=defs.jobs, resources={**defs.resources, "activecampaign": client_resource}
        ),
    )

    # The failing audience's first attempt: three batches are confirmed, then ActiveCampaign's import
    # endpoints answer 503 until that attempt has failed.
    attempts: Counter[str] = Counter()
    seen: dict[str, int] = {}
    original_run, original_settle = Push.run, BulkSender._settle

    def settle(self: BulkSender, *args: Any, **kwargs: Any) -> None:
        original_settle(self, *args, **kwargs)
        if self.audience.key == failing and attempts[failing] == 1:
            seen["settled"] = seen.get("settled", 0) + 1
            if seen["settled"] == 3:
                admin.set_faults("/api/3/import/*:503=1", seed=1)

    def run(self: Push, changes: pl.DataFrame) -> Any:
        key = self.audience.key
        attempts[key] += 1
        try:
            return original_run(self, changes)
        except Exception:
            if key == failing and attempts[key] == 1:
                admin.set_faults(None)
                admin.wait_for_imports()
                seen["confirmed"] = pipeline.state.snapshot_counts(failing)["member"]
                seen["applied"] = admin.imports()["applied_contacts"]
                seen["accepted"] = bulk_accepted(pipeline.sandbox)
            raise

    monkeypatch.setattr(BulkSender, "_settle", settle)
    monkeypatch.setattr(Push, "run", run)

    instance = dg.DagsterInstance.ephemeral()
    results, sent, ended = {}, {}, {}
    for key in AUDIENCES:  # every audience, the failing one in the middle
        applied_before = admin.imports()["applied_contacts"]
        accepted_before = bulk_accepted(pipeline.sandbox)
        results[key] = pipeline.sync(key, instance=instance)
        assert results[key].success, key
        ended[key] = (admin.imports()["applied_contacts"], bulk_accepted(pipeline.sandbox))
        sent[key] = (ended[key][0] - applied_before, ended[key][1] - accepted_before)  # contacts, bulk imports
        assert_in_step(pipeline, key)

    # Only the failing audience's push step was retried, once; its members and changes were not recomputed.
    assert attempts == Counter({failing: 2, **{k: 1 for k in AUDIENCES if k != failing}})
    for key, result in results.items():
        assert retries_of(result) == (2 if key == failing else 0), key
        assert len(events_of(result, "STEP_START", "audience_members")) == 1
        assert len(events_of(result, "STEP_START", "audience_changes")) == 1
    assert len(events_of(results[failing], "STEP_UP_FOR_RETRY", SYNC_STEP)) == 1

    # The other audiences were each sent once, exactly their members.
    for key in AUDIENCES:
        if key != failing:
            members = len(pipeline.audience(key))
            assert sent[key] == (members, bulk_batches(members)), key
    # The retry resumed: it skipped what the first attempt confirmed and sent only the rest.
    members = len(pipeline.audience(failing))
    assert seen["confirmed"] >= 3 * BATCH
    retried = materialization(results[failing], SYNC_STEP)
    assert retried["skipped"] == seen["confirmed"] and retried["adds"] == members - seen["confirmed"]
    assert ended[failing] == (
        seen["applied"] + members - seen["confirmed"],
        seen["accepted"] + bulk_batches(members - seen["confirmed"]),
    )
    ledger = pipeline.state.ledger(failing)
    assert ledger.height == members and ledger.get_column("email").n_unique() == members  # each confirmed once

    # Nothing is left: another pass over every audience sends nothing.
    before = requests_total(pipeline.sandbox)
    for key in AUDIENCES:
        assert pipeline.sync(key, instance=instance).success
    assert requests_total(pipeline.sandbox) == before


# -- 4. people who unsubscribed themselves -------------------------------------------------------------------


@pytest.mark.parametrize("leavers", [1, 15], ids=["one_by_one", "bulk"])
def test_a_self_opt_out_stays_unsubscribed_through_leaving_and_reentering(pipeline: Pipeline, leavers: int) -> None:
    key, list_name = "welcome_series", "Welcome series"
    assert pipeline.sync(key).success
    people = sorted(pipeline.listed(key))[:leavers]
    person = people[0]
    pipeline.sandbox.admin.unsubscribe(person, list_name)

    # They leave the audience (with others when `leavers` > 1): the sync unsubscribes them from the list.
    pipeline.execute(f"UPDATE customers SET order_count = 1 WHERE lower(trim(email)) IN ({quoted(people)})")
    left = pipeline.sync(key)
    assert left.success
    pushed = materialization(left, SYNC_STEP)
    assert pushed["removals"] == leavers and pushed["batches"] == (1 if leavers >= 10 else 0)
    assert not set(people) & pipeline.listed(key)
    assert pipeline.sandbox.admin.membership(person, list_name)["unsubscribed_by"] == "contact"

    # They come back: the others are re-added; the person who opted out is not.
    pipeline.execute(f"UPDATE customers SET order_count = 0 WHERE lower(trim(email)) IN ({quoted(people)})")
    back = pipeline.sync(key)
    assert back.success
    assert set(people[1:]) <= pipeline.listed(key)
    membership = pipeline.sandbox.admin.membership(person, list_name)
    assert str(membership["status"]) == "2" and membership["unsubscribed_by"] == "contact", membership
    assert person not in pipeline.listed(key)
    snapshot = pipeline.state.snapshot(key).filter(pl.col("email") == person)
    assert snapshot.select("status").item() == "opted_out"
    assert pipeline.listed(key) == pipeline.snapshot_members(key)


def test_a_self_opt_out_is_noticed_by_a_one_by_one_update(pipeline: Pipeline) -> None:
    """A field change of someone who opted out, sent the one-by-one way, must not leave the snapshot
    believing they are a member (the bulk path learns it from the import failure)."""
    key, list_name = "welcome_series", "Welcome series"
    assert pipeline.sync(key).success
    person = sorted(pipeline.listed(key))[0]
    pipeline.sandbox.admin.unsubscribe(person, list_name)
    pipeline.execute(f"UPDATE customers SET first_name = 'Renamed' WHERE lower(trim(email)) = '{person}'")
    updated = pipeline.sync(key)
    assert updated.success
    assert materialization(updated, SYNC_STEP)["updates"] == 1
    assert str(pipeline.sandbox.admin.membership(person, list_name)["status"]) == "2"
    assert pipeline.listed(key) == pipeline.snapshot_members(key)  # no drift
    assert pipeline.state.snapshot(key).filter(pl.col("email") == person).select("status").item() == "opted_out"


# -- 5. the API key stays secret -----------------------------------------------------------------------------

SECRET = "sk-test-DO-NOT-LEAK-123456"
WRONG_SECRET = "sk-test-WRONG-KEY-654321"


def strings_in_duckdb(path: Path) -> str:
    """Every value of every table of a DuckDB file, as text."""
    parts = []
    with duckdb.connect(str(path), read_only=True) as connection:
        tables = connection.execute("SELECT table_name FROM information_schema.tables").fetchall()
        for (table,) in tables:
            parts.append(str(connection.execute(f'SELECT * FROM "{table}"').fetchall()))
    return "\n".join(parts)


def test_the_api_key_never_leaks(
    home: Paths,
    make_sandbox,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    sandbox = make_sandbox(api_key=SECRET, faults=STORM, seed=5)
    use_sandbox(monkeypatch, sandbox)
    pipeline = Pipeline(home=home, sandbox=sandbox, defs=build_definitions())
    debug = {"loggers": {"console": {"config": {"log_level": "DEBUG"}}}}
    seen: list[str] = []
    (tmp_path / "dagster_home").mkdir()
    with dg.DagsterInstance.local_temp(tempdir=str(tmp_path / "dagster_home")) as instance:
        results = []
        # A wrong key first: the AuthError path, its message and its event.
        monkeypatch.setenv("ACTIVECAMPAIGN_API_KEY", WRONG_SECRET)
        refused = pipeline.sync("welcome_series", instance=instance, run_config=debug)
        assert not refused.success
        results.append(refused)
        monkeypatch.setenv("ACTIVECAMPAIGN_API_KEY", SECRET)
        # Every audience under the storm, an incremental sync, and a dry run.
        for key in AUDIENCES:
            results.append(pipeline.sync(key, instance=instance, run_config=debug))
            assert results[-1].success, key
        pipeline.execute("UPDATE customers SET first_name = 'Secretive' WHERE customer_id % 29 = 0")
        results.append(pipeline.sync("vip_customers", instance=instance, run_config=debug))
        results.append(
            pipeline.sync("lapsed_buyers", instance=instance, run_config=debug, tags={"ac_pipeline/dry_run": "true"})
        )
        assert all(r.success for r in results[1:])
        for result in results:
            run_id = result.run_id
            seen.append(serialize_value(instance.get_run_by_id(run_id)))
            for record in instance.all_logs(run_id):
                seen.append(serialize_value(record))
                seen.append(str(record))
            for event in result.all_events:
                seen.append(str(event.message))
                if event.is_step_failure:
                    seen.append(failure_message(result, event.step_key))
            for event in result.get_asset_materialization_events():
                seen.append(str(event.materialization.metadata))
    assert any("ACTIVECAMPAIGN_API_KEY" in text for text in seen)  # the refusal was captured

    captured = capfd.readouterr()
    seen += [captured.out, captured.err, caplog.text, *(r.getMessage() for r in caplog.records)]
    seen.append(strings_in_duckdb(home.state))
    for parquet in home.assets.rglob("*.parquet"):
        seen.append(pl.read_parquet(parquet).cast(pl.String).write_csv())
    seen.append(json.dumps(sandbox.admin.requests()))
    seen.append(json.dumps(sandbox.admin.config()))
    seen.append(repr(pipeline.defs.resources["activecampaign"]))
    # And every byte of every file the pipeline or Dagster wrote (state, WAL, Parquet, event log, run storage).
    for path in tmp_path.rglob("*"):  # the pipeline's home and the Dagster instance's
        if path.is_file():
            seen.append(path.read_bytes().decode("latin-1"))

    for secret in (SECRET, WRONG_SECRET):
        leaks = [text[max(0, text.find(secret) - 200) : text.find(secret) + 50] for text in seen if secret in text]
        assert not leaks, leaks[:3]


# -- 6. a bad key -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad_key", [WRONG_SECRET, "", "  "], ids=["wrong", "empty", "blank"])
def test_a_bad_key_fails_clearly_and_is_not_retried(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, quick_step_retries: None, bad_key: str
) -> None:
    monkeypatch.setenv("ACTIVECAMPAIGN_API_KEY", bad_key)
    result = pipeline.sync("vip_customers", instance=dg.DagsterInstance.ephemeral())
    assert not result.success
    message = failure_message(result, SYNC_STEP)
    assert "ACTIVECAMPAIGN_API_KEY" in message, message
    assert pipeline.sandbox.api_key not in message and (not bad_key.strip() or bad_key not in message)
    assert retries_of(result) == 0, message  # retrying cannot fix a key
    requests = pipeline.sandbox.admin.requests()["by_status"]
    assert requests == ({"403": 1} if bad_key.strip() else {})  # one refused request at most, not retried
    assert pipeline.state.snapshot("vip_customers").is_empty()

    # The right key: it works, with nothing held over from the refused run.
    monkeypatch.setenv("ACTIVECAMPAIGN_API_KEY", pipeline.sandbox.api_key)
    assert pipeline.sync("vip_customers").success
    assert_in_step(pipeline, "vip_customers")
