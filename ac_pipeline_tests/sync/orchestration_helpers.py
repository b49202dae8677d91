"""What the orchestration tests (test_orchestration_*.py) share: the job as a code location loads it, runs
of it through the job's own executor on a persistent instance, and readers of their step events.

Runs that must behave as launched from the UI go through `execute_job(reconstructable(...))` on a
real (SQLite) instance, with the executor a launched run uses (defs/one_process.py, not the test-only
executor of `execute_in_process`). The definitions are rebuilt from the environment the test sets: the
pipeline's locations and the sandbox URL.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from ac_pipeline.definitions import build_definitions
from ac_pipeline.settings import Paths
from ac_pipeline_tests.fixtures.pipeline import QUIET

REPO = Path(__file__).resolve().parents[2]
JOB = "audience_sync"
PUSH = "activecampaign_sync"
KEYS = ["vip_customers", "lapsed_buyers", "newsletter_canada", "welcome_series"]
PARTITION_TAG = "dagster/partition"
STEP_EVENTS = ("STEP_START", "STEP_SUCCESS", "STEP_FAILURE", "STEP_UP_FOR_RETRY", "STEP_SKIPPED")


def audience_sync_job() -> dg.JobDefinition:
    """The job as a code location would load it: `dg.reconstructable` needs a module-level function so
    that a run worker (or a Celery worker) can rebuild it (from the environment: AC_PIPELINE_HOME and friends)."""
    return build_definitions().resolve_job_def(JOB)


# --- helpers --------------------------------------------------------------------------------------


def instance_dir(path: Path, pool_limit: int | None = None) -> Path:
    """A Dagster home with a dagster.yaml, as `dagster dev` or the demo would use it."""
    path.mkdir(parents=True, exist_ok=True)
    pools = f"concurrency:\n  pools:\n    default_limit: {pool_limit}\n" if pool_limit else ""
    (path / "dagster.yaml").write_text(pools + "telemetry:\n  enabled: false\n")
    return path


def execute(instance: dg.DagsterInstance, partition: str | None = None, **kwargs) -> dg.ExecutionResult:
    """One run of the job through its own executor, as a launched run executes it."""
    tags = {PARTITION_TAG: partition} if partition else {}
    if "reexecution_options" not in kwargs:
        kwargs.setdefault("run_config", QUIET)
    return dg.execute_job(dg.reconstructable(audience_sync_job), instance, tags=tags, raise_on_error=False, **kwargs)


def step_events(instance: dg.DagsterInstance, run_id: str, step: str | None = None) -> list[tuple[str, str, float]]:
    """(event type, step key, timestamp) of the run's step events, in order."""
    events = []
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is not None and event.event_type_value in STEP_EVENTS and (step is None or entry.step_key == step):
            events.append((event.event_type_value, entry.step_key, entry.timestamp))
    return events


def started_steps(instance: dg.DagsterInstance, run_id: str) -> set[str]:
    return {key for kind, key, _ in step_events(instance, run_id) if kind == "STEP_START"}


def failure_message(events) -> str:
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


def write_audiences(home: Paths, *replacements: tuple[str, str]) -> None:
    text = home.audiences.read_text()
    for old, new in replacements:
        assert text.count(old) == 1, f"{old!r} is not once in audiences.yaml"
        text = text.replace(old, new)
    home.audiences.write_text(text)


WELCOME_LIST_CREATED = "list: {name: Welcome series, create: true}"
WELCOME_LIST_MUST_EXIST = "list: {name: Welcome series, create: false}"
