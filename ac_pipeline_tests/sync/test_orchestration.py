"""The pipeline as Dagster runs it: definitions that load, partitioned runs on a persistent instance with
the multiprocess executor, re-execution from failure, the `activecampaign` concurrency pool, the removal
guard standing between a broken table and the list, configuration errors that are not retried, and the
built-in sandbox started on first use.

Runs that must behave as launched from the UI go through `execute_job(reconstructable(...))` on a
real (SQLite) instance, so each step is a process of its own, as in production. Step processes are
spawned: they read the pipeline's locations and the sandbox URL from the environment the test sets.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from ac_pipeline.definitions import build_definitions
from ac_pipeline.defs.activecampaign.local_sandbox import stop_local_sandbox
from ac_pipeline.sandbox import SandboxServer
from ac_pipeline.sandbox.admin_client import SandboxAdmin
from ac_pipeline.settings import Paths
from ac_pipeline_tests.fixtures.network import free_port, port_open
from ac_pipeline_tests.fixtures.pipeline import QUIET, Pipeline, materialization

REPO = Path(__file__).resolve().parents[2]
JOB = "audience_sync"
PUSH = "activecampaign_sync"
KEYS = ["vip_customers", "lapsed_buyers", "newsletter_canada", "welcome_series"]
PARTITION_TAG = "dagster/partition"
STEP_EVENTS = ("STEP_START", "STEP_SUCCESS", "STEP_FAILURE", "STEP_UP_FOR_RETRY", "STEP_SKIPPED")


def audience_sync_job() -> dg.JobDefinition:
    """The job as a code location would load it: `dg.reconstructable` needs a module-level function so
    that every step process can rebuild it (from the environment: AC_PIPELINE_HOME and friends)."""
    return build_definitions().resolve_job_def(JOB)


# --- helpers --------------------------------------------------------------------------------------


def _instance_dir(path: Path, pool_limit: int | None = None) -> Path:
    """A Dagster home with a dagster.yaml, as `dagster dev` or the demo would use it."""
    path.mkdir(parents=True, exist_ok=True)
    pools = f"concurrency:\n  pools:\n    default_limit: {pool_limit}\n" if pool_limit else ""
    (path / "dagster.yaml").write_text(pools + "telemetry:\n  enabled: false\n")
    return path


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """A persistent (SQLite) Dagster instance in the test's folder."""
    with dg.DagsterInstance.from_config(str(_instance_dir(tmp_path / "dagster_home"))) as instance:
        yield instance


def _execute(instance: dg.DagsterInstance, partition: str | None = None, **kwargs) -> dg.ExecutionResult:
    """One run of the job through the multiprocess executor (each step in a process of its own)."""
    tags = {PARTITION_TAG: partition} if partition else {}
    if "reexecution_options" not in kwargs:
        kwargs.setdefault("run_config", QUIET)
    return dg.execute_job(dg.reconstructable(audience_sync_job), instance, tags=tags, raise_on_error=False, **kwargs)


def _steps(instance: dg.DagsterInstance, run_id: str, step: str | None = None) -> list[tuple[str, str, float]]:
    """(event type, step key, timestamp) of the run's step events, in order."""
    events = []
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is not None and event.event_type_value in STEP_EVENTS and (step is None or entry.step_key == step):
            events.append((event.event_type_value, entry.step_key, entry.timestamp))
    return events


def _started(instance: dg.DagsterInstance, run_id: str) -> set[str]:
    return {key for kind, key, _ in _steps(instance, run_id) if kind == "STEP_START"}


def _failure_message(events) -> str:
    """The message of the first step failure, with its causes (dg.Failure carries the text itself)."""
    for event in events:
        if event.event_type_value == "STEP_FAILURE":
            error = event.step_failure_data.error
            parts = []
            while error is not None:
                parts.append(error.message)
                error = error.cause
            return "\n".join(parts)
    raise AssertionError("no step failed")


def _write_audiences(home: Paths, *replacements: tuple[str, str]) -> None:
    text = home.audiences.read_text()
    for old, new in replacements:
        assert text.count(old) == 1, f"{old!r} is not once in audiences.yaml"
        text = text.replace(old, new)
    home.audiences.write_text(text)


WELCOME_LIST_CREATED = "list: {name: Welcome series, create: true}"
WELCOME_LIST_MUST_EXIST = "list: {name: Welcome series, create: false}"


def _wait_until_closed(port: int, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not port_open(port):
            return True
        time.sleep(0.1)
    return False


# --- 1. definitions ---------------------------------------------------------------------------------


def test_definitions_validate_from_the_command_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "data" / "audiences.yaml", home / "audiences.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AC_PIPELINE_", "ACTIVECAMPAIGN_", "DAGSTER_"))}
    env.update(AC_PIPELINE_HOME=str(home), DAGSTER_HOME=str(_instance_dir(tmp_path / "dagster_home")))
    dagster = Path(sys.executable).parent / "dagster"
    result = subprocess.run(
        [str(dagster), "definitions", "validate", "-m", "ac_pipeline.definitions"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "success" in (result.stdout + result.stderr).lower()
    # Loading the definitions creates no data: no customer 360, no state, no sandbox.
    assert sorted(p.name for p in home.iterdir()) == ["audiences.yaml"]


def test_every_asset_says_what_it_means_and_the_push_is_pooled_and_retried(home: Paths) -> None:
    defs = build_definitions()
    specs = list(defs.resolve_all_asset_specs())
    assert {s.key.to_user_string() for s in specs} == {"audience_members", "audience_changes", PUSH}
    for spec in specs:
        assert spec.description and len(spec.description.split()) >= 10, spec.key
    job = defs.resolve_job_def(JOB)
    assert job.description
    assert job.partitions_def.get_partition_keys() == KEYS

    push = defs.resolve_assets_def(PUSH)
    assert push.op.pool == "activecampaign"
    policy = push.op.retry_policy
    assert policy is not None and policy.max_retries >= 1
    # Only the push talks to ActiveCampaign: the audience steps take no slot in the pool.
    for name in ("audience_members", "audience_changes"):
        assert defs.resolve_assets_def(name).op.pool is None

    [check] = list(defs.resolve_assets_def("audience_changes").check_specs)
    assert check.name == "removal_guard" and check.blocking and check.description


# --- 2. partitioned runs, one audience fails, re-execution from failure -----------------------------


def test_a_failed_audience_is_re_executed_alone_from_failure(pipeline: Pipeline, instance: dg.DagsterInstance) -> None:
    # The welcome series' list must exist already, and does not: its push fails, the others do not.
    _write_audiences(pipeline.home, (WELCOME_LIST_CREATED, WELCOME_LIST_MUST_EXIST))
    runs = {key: _execute(instance, key) for key in KEYS}

    for key, result in runs.items():
        assert instance.get_run_by_id(result.run_id).tags[PARTITION_TAG] == key
        if key == "welcome_series":
            continue
        assert result.success, key
        assert pipeline.listed(key) == pipeline.audience(key) == pipeline.snapshot_members(key)
    failed = runs["welcome_series"]
    assert not failed.success
    kinds = [(kind, step) for kind, step, _ in _steps(instance, failed.run_id)]
    assert ("STEP_SUCCESS", "audience_members") in kinds and ("STEP_SUCCESS", "audience_changes") in kinds
    assert ("STEP_FAILURE", PUSH) in kinds
    assert not [k for k in kinds if k[0] == "STEP_UP_FOR_RETRY"]  # a configuration error is not retried
    assert "Welcome series" in _failure_message(failed.all_events)
    assert pipeline.state.snapshot("welcome_series").is_empty()
    assert set(instance.get_materialized_partitions(dg.AssetKey(PUSH))) == set(KEYS) - {"welcome_series"}

    # Someone fixes audiences.yaml and re-executes the failed run from failure.
    _write_audiences(pipeline.home, (WELCOME_LIST_MUST_EXIST, WELCOME_LIST_CREATED))
    others = {key: pipeline.listed(key) for key in KEYS if key != "welcome_series"}
    before = pipeline.sandbox.admin.requests()["total"]
    # execute_job does not carry the parent's tags over (the UI does): name the partition again.
    again = _execute(
        instance, "welcome_series", reexecution_options=dg.ReexecutionOptions.from_failure(failed.run_id, instance)
    )
    assert again.success
    run = instance.get_run_by_id(again.run_id)
    assert run.parent_run_id == failed.run_id and run.tags[PARTITION_TAG] == "welcome_series"
    # Only the push runs again: the audience and its changes come from the failed run's outputs.
    assert _started(instance, again.run_id) == {PUSH}
    pushed = materialization(again, PUSH)
    assert pushed["adds"] == pushed["confirmed"] == len(pipeline.audience("welcome_series")) > 0
    # Everything ActiveCampaign received was this audience's push, and nobody else's list moved.
    assert pipeline.sandbox.admin.requests()["total"] - before == pushed["requests"]
    assert {key: pipeline.listed(key) for key in others} == others
    assert pipeline.listed("welcome_series") == pipeline.audience("welcome_series")
    ran = pipeline.state.runs()
    assert set(ran.filter(pl.col("run_id") == again.run_id).get_column("audience")) == {"welcome_series"}
    assert set(instance.get_materialized_partitions(dg.AssetKey(PUSH))) == set(KEYS)
    for key in KEYS:  # one materialization of each audience's list, the re-executed one included
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(PUSH), asset_partitions=[key]), limit=10
        ).records
        assert len(records) == 1, key


# --- 3. one push per account at a time -----------------------------------------------------------

# Each run is its own process, as runs launched from the UI are (Dagster's in-process APIs are not
# safe to call from several threads at once: two execute_job calls in threads deadlock on logging).
# It loads everything first, then waits for the test's word, so that the test decides when it starts.
RUN_ONE = """
import sys
import dagster as dg
from ac_pipeline_tests.fixtures.pipeline import QUIET
from ac_pipeline_tests.sync.test_orchestration import audience_sync_job

with dg.DagsterInstance.get() as instance:
    print("ready", flush=True)
    sys.stdin.readline()
    result = dg.execute_job(dg.reconstructable(audience_sync_job), instance, tags={"dagster/partition": sys.argv[1]},
                            run_config=QUIET, asset_selection=[dg.AssetKey("activecampaign_sync")], raise_on_error=False)
    print("RUN", result.run_id, result.success, flush=True)
"""


def _wait_for_claimed_slot(instance: dg.DagsterInstance, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if instance.event_log_storage.get_concurrency_info("activecampaign").claimed_slots:
            return
        time.sleep(0.05)
    raise AssertionError(f"no push took a slot of the activecampaign pool within {seconds:g} s")


def test_a_push_waits_for_the_pool_while_another_audience_is_pushed(
    home: Paths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each bulk import takes 4 s (at speed 100): the first push outlasts the second run's start.
    with SandboxServer(api_key="test-sandbox-key", speed=100.0, import_delay=400) as sandbox:
        monkeypatch.setenv("ACTIVECAMPAIGN_API_URL", sandbox.url)
        monkeypatch.setenv("ACTIVECAMPAIGN_API_KEY", sandbox.api_key)
        monkeypatch.setenv("AC_PIPELINE_SANDBOX_SPEED", "100.0")
        dagster_home = _instance_dir(tmp_path / "dagster_home", pool_limit=1)
        first_key, second_key = "newsletter_canada", "welcome_series"
        # The audiences and their changes first (in process: they are files), so that each run is its push.
        defs = build_definitions()
        for key in (first_key, second_key):
            assert (
                defs.resolve_job_def(JOB)
                .execute_in_process(
                    partition_key=key,
                    run_config=QUIET,
                    instance=dg.DagsterInstance.ephemeral(),
                    asset_selection=[dg.AssetKey("audience_members"), dg.AssetKey("audience_changes")],
                )
                .success
            )

        # Opening the instance here creates its storage: two processes creating a fresh SQLite home at
        # once race on its migrations (alembic "more than one head").
        with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
            env = {**os.environ, "DAGSTER_HOME": str(dagster_home)}
            processes = {}
            for key in (first_key, second_key):
                with open(tmp_path / f"{key}.stderr", "w") as stderr:
                    processes[key] = subprocess.Popen(
                        [sys.executable, "-c", RUN_ONE, key],
                        cwd=REPO,
                        env=env,
                        text=True,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=stderr,
                    )
            outputs = {}
            try:
                for key, process in processes.items():
                    assert process.stdout.readline().strip() == "ready", (tmp_path / f"{key}.stderr").read_text()
                # The first push starts; once it holds the pool's one slot, the second run starts.
                processes[first_key].stdin.write("go\n")
                processes[first_key].stdin.flush()
                _wait_for_claimed_slot(instance)
                processes[second_key].stdin.write("go\n")
                processes[second_key].stdin.flush()
                for key, process in processes.items():
                    outputs[key] = process.communicate(timeout=180)[0]
            finally:
                for process in processes.values():
                    if process.poll() is None:
                        process.kill()
                        process.wait(timeout=10)
            for key, process in processes.items():
                assert process.returncode == 0 and " True" in outputs[key], (
                    outputs[key] + (tmp_path / f"{key}.stderr").read_text()[-3000:]
                )

            runs = {
                r.dagster_run.tags[PARTITION_TAG]: r.dagster_run.run_id
                for r in instance.get_run_records(dg.RunsFilter(job_name=JOB))
            }
            assert sorted(runs) == sorted((first_key, second_key))
            spans = {}
            for key, run_id in runs.items():
                events = _steps(instance, run_id, PUSH)
                assert [kind for kind, _, _ in events] == ["STEP_START", "STEP_SUCCESS"], (key, events)
                spans[key] = (events[0][2], events[1][2])
            assert spans[first_key][1] <= spans[second_key][0], f"pushes overlapped: {spans}"
            # The pool did the ordering: the second run waited for the first one's slot.
            blocked = [
                e
                for e in instance.all_logs(runs[second_key])
                if "blocked by limit for pool activecampaign" in (e.message or "")
            ]
            assert blocked
            info = instance.event_log_storage.get_concurrency_info("activecampaign")
            assert info.limit == 1 and not info.claimed_slots
        for key in (first_key, second_key):
            listed = set(sandbox.admin.members(defs.resources["audiences"].load().get(key).list.name))
            members = pl.read_parquet(home.assets / "audience_members" / f"{key}.parquet")
            assert listed == set(members.filter(pl.col("status") == "member").get_column("email"))


# --- 4. the removal guard --------------------------------------------------------------------------


def test_the_removal_guard_stops_the_push_before_anything_is_sent(pipeline: Pipeline) -> None:
    assert pipeline.sync("welcome_series").success
    listed = pipeline.listed("welcome_series")
    assert listed == pipeline.audience("welcome_series") and listed

    pipeline.execute("UPDATE customers SET email_consent = NULL")  # a broken upstream load: nobody qualifies
    before = pipeline.sandbox.admin.requests()["total"]
    blocked = pipeline.sync("welcome_series")
    assert not blocked.success
    started = {e.step_key for e in blocked.all_events if e.event_type_value == "STEP_START"}
    assert started == {"audience_members", "audience_changes"}  # the push never started
    [verdict] = [e.event_specific_data for e in blocked.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert not verdict.passed and "ac_pipeline/allow_removals" in verdict.description
    assert pipeline.sandbox.admin.requests()["total"] == before
    assert pipeline.listed("welcome_series") == listed
    assert pipeline.snapshot_members("welcome_series") == listed

    allowed = pipeline.sync("welcome_series", tags={"ac_pipeline/allow_removals": "welcome_series"})
    assert allowed.success
    assert materialization(allowed, PUSH)["removals"] == len(listed)
    assert pipeline.listed("welcome_series") == set()
    assert pipeline.snapshot_members("welcome_series") == set()


# --- 5. configuration errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("partition", "replacement", "expected"),
    [
        pytest.param(
            "welcome_series",
            (WELCOME_LIST_CREATED, WELCOME_LIST_MUST_EXIST),
            ["'Welcome series'", "Create it", "list.create: true"],
            id="missing-list",
        ),
        pytest.param(
            "vip_customers",
            ("group: Admin ", "group: Marketing team "),
            ["'Marketing team'", "there are: Admin", "list.group"],
            id="unknown-group",
        ),
    ],
)
def test_a_configuration_error_fails_clearly_and_is_not_retried(
    pipeline: Pipeline, partition: str, replacement: tuple[str, str], expected: list[str]
) -> None:
    _write_audiences(pipeline.home, replacement)
    result = pipeline.sync(partition)
    assert not result.success
    message = _failure_message(result.all_events)
    for text in expected:
        assert text in message, message
    assert pipeline.sandbox.api_key not in message
    kinds = [e.event_type_value for e in result.all_events if e.step_key == PUSH]
    assert "STEP_UP_FOR_RETRY" not in kinds and "STEP_RESTARTED" not in kinds
    assert kinds.count("STEP_START") == 1 and kinds.count("STEP_FAILURE") == 1
    # Nothing was sent for it: no contacts, no list.
    assert not any(
        path.startswith(("POST /api/3/import", "POST /api/3/contact", "POST /api/3/lists"))
        for path in pipeline.sandbox.admin.requests()["by_path"]
    )
    assert pipeline.state.snapshot(partition).is_empty()


# --- 6. the built-in sandbox -----------------------------------------------------------------------


def test_without_an_account_the_sync_starts_the_built_in_sandbox(home: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("AC_PIPELINE_SANDBOX_PORT", str(port))
    monkeypatch.setenv("AC_PIPELINE_SANDBOX_SPEED", "50")
    assert not port_open(port)
    defs = build_definitions()
    assert defs.resources["activecampaign"].uses_sandbox
    try:
        result = defs.resolve_job_def(JOB).execute_in_process(
            partition_key="welcome_series",
            run_config=QUIET,
            instance=dg.DagsterInstance.ephemeral(),
            raise_on_error=False,
        )
        assert result.success, _failure_message(result.all_events)
        pushed = materialization(result, PUSH)
        assert pushed["destination"] == "the built-in sandbox"
        assert home.sandbox_state.exists()
        assert Path(f"{home.sandbox_state}.pid").exists()
        admin = SandboxAdmin(f"http://127.0.0.1:{port}")
        try:
            assert admin.config()["speed"] == 50
            members = pl.read_parquet(home.assets / "audience_members" / "welcome_series.parquet")
            expected = set(members.filter(pl.col("status") == "member").get_column("email"))
            assert set(admin.members("Welcome series")) == expected and pushed["confirmed"] == len(expected)
        finally:
            admin.close()
    finally:
        stopped = stop_local_sandbox(home.sandbox_state)
        closed = _wait_until_closed(port)
    assert stopped and closed
    assert not Path(f"{home.sandbox_state}.pid").exists()
    assert home.sandbox_state.exists()  # the account's state outlives the process


# --- runs side by side on one state file -----------------------------------------------------------

# Another run's push committing confirmed contacts: DuckDB lets one process write a file, and while it
# does, no other process may open it, not even to read.
HOLD_THE_STATE = """
import sys
import threading
import duckdb

connection = duckdb.connect(sys.argv[1])
print("holding", flush=True)
sys.stdin.read()  # until the test lets go
connection.close()
"""


def test_a_run_waits_while_another_runs_push_writes_the_sync_state(pipeline: Pipeline) -> None:
    """A backfill of every audience (the UI's way to sync them all) runs the audiences side by side: one
    run's audience_changes reads the snapshot while another run's push commits to it. That must cost a
    short wait, not a failed run (audience_changes has no retry policy)."""
    assert pipeline.sync("welcome_series").success  # the state file exists, as after any first sync
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_STATE, str(pipeline.home.state)],
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        # The other push's commit ends a few seconds later (a real one takes milliseconds; a few seconds
        # leaves no doubt that the run below reaches the state file while it is held).
        release = threading.Timer(4.0, holder.stdin.close)
        release.start()
        try:
            result = pipeline.sync("vip_customers")
        finally:
            release.cancel()
    finally:
        if not holder.stdin.closed:
            holder.stdin.close()
        try:
            holder.wait(timeout=10)
        except subprocess.TimeoutExpired:
            holder.kill()
    assert result.success, _failure_message(result.all_events)
    assert pipeline.listed("vip_customers") == pipeline.audience("vip_customers")
