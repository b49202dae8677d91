"""The executor of `audience_sync` when no Celery broker is set: every step of a run in the run's own process.

Why one process: a run is one audience's three steps, one after the other (members, changes, push), and most
syncs change little. Under Dagster's default multiprocess executor each step is a new process that imports
Dagster, Polars, DuckDB and the definitions again, 2-3 s each on two cores: a run with nothing to send took
about 10 s, of which 1.5 s was work (issue 12). In one process a run costs its work plus the one import its run
worker does anyway. Per-step retries (the push's RetryPolicy) and re-execution from failure work as before.

Why not Dagster's `in_process_executor` as it is: while a step waits for a pool slot (the `activecampaign` pool
lets one push run at a time), its loop never sleeps. `InstanceConcurrencyContext.interval_to_next_pending_claim_check`
returns `min(0, ...)`, never a positive wait, so every queued audience of a backfill would spin a core while
another audience's push, which needs the CPU, holds the slot. The context below sleeps until the next claim
check, and checks at least every `CLAIM_CHECK_SECONDS` (Dagster's own backoff reaches 15 s), so a slot freed
by one push is taken by the next within a couple of seconds.

What a process per step gave that this does not: a step that kills its process (the out-of-memory killer)
now ends its run, instead of failing only its step. Run monitoring (deploy/dagster.yaml) marks such a run failed
and frees its pool slot, and a re-execution from failure resumes the push from the sync state.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import dagster as dg
from dagster._core.definitions.executor_definition import IN_PROC_CONFIG
from dagster._core.events import DagsterEvent, EngineEventData
from dagster._core.execution.api import ExecuteRunWithPlanIterable
from dagster._core.execution.context.system import PlanExecutionContext, PlanOrchestrationContext
from dagster._core.execution.context_creation_job import PlanExecutionContextManager
from dagster._core.execution.plan.execute_plan import inner_plan_execution_iterator
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.execution.retries import RetryMode
from dagster._core.execution.step_dependency_config import StepDependencyConfig
from dagster._core.executor.in_process import InProcessExecutor

# The longest a step waiting for a pool slot sleeps before asking again: one small query to Dagster's storage.
CLAIM_CHECK_SECONDS = 2.0


class _SleepingConcurrencyContext(InstanceConcurrencyContext):
    """Dagster's pool-slot bookkeeping, with a wait that sleeps (see the module's docstring)."""

    def interval_to_next_pending_claim_check(self) -> float:
        if not self.has_pending_claims():
            return 0.0
        now = time.time()
        timeouts = self._pending_timeouts  # when each waiting step may ask for its slot again
        for step_key, ready_at in timeouts.items():
            timeouts[step_key] = min(ready_at, now + CLAIM_CHECK_SECONDS)
        return max(0.0, min(timeouts.values(), default=now) - now)


def _steps_in_this_process(
    job_context: PlanExecutionContext,
    execution_plan: ExecutionPlan,
    instance_concurrency_context: InstanceConcurrencyContext | None = None,
) -> Iterator[DagsterEvent]:
    with _SleepingConcurrencyContext(job_context.instance, job_context.dagster_run) as concurrency:
        yield from inner_plan_execution_iterator(job_context, execution_plan, concurrency)


class OneProcessExecutor(InProcessExecutor):
    """Dagster's InProcessExecutor.execute, with the sleeping concurrency context."""

    def execute(self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan) -> Iterator[DagsterEvent]:
        steps = execution_plan.step_keys_to_execute
        yield DagsterEvent.engine_event(
            plan_context,
            f"Executing steps in process (pid: {os.getpid()})",
            event_specific_data=EngineEventData.in_process(os.getpid(), steps),
        )
        started = time.perf_counter()
        yield from iter(
            ExecuteRunWithPlanIterable(
                execution_plan=plan_context.execution_plan,
                iterator=_steps_in_this_process,
                execution_context_manager=PlanExecutionContextManager(
                    job=plan_context.job,
                    retry_mode=plan_context.retry_mode,
                    execution_plan=plan_context.execution_plan,
                    run_config=plan_context.run_config,
                    dagster_run=plan_context.dagster_run,
                    instance=plan_context.instance,
                    raise_on_error=plan_context.raise_on_error,
                    output_capture=plan_context.output_capture,
                    step_dependency_config=self.step_dependency_config,
                ),
            )
        )
        yield DagsterEvent.engine_event(
            plan_context,
            f"Finished steps in process (pid: {os.getpid()}) in {time.perf_counter() - started:.2f} s",
            event_specific_data=EngineEventData.in_process(os.getpid(), steps),
        )


@dg.executor(name="in_process", config_schema=IN_PROC_CONFIG)
def one_process_executor(init_context: dg.InitExecutorContext) -> OneProcessExecutor:
    """Every step of a run in the run's process; a step waiting for a pool slot sleeps. The same config as
    Dagster's `in_process` executor (`execution: {config: {retries: ...}}`)."""
    config = init_context.executor_config
    return OneProcessExecutor(
        retries=RetryMode.from_config(config["retries"]),  # type: ignore[arg-type]
        step_dependency_config=StepDependencyConfig.from_config(config.get("step_dependency_config")),  # type: ignore[arg-type]
    )
