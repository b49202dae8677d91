"""Where the steps of `audience_sync` run: in the run's own process (one_process.py, the default), or on Celery
workers.

`AC_PIPELINE_CELERY_BROKER` (`amqp://user:password@host:5672//` or `redis://host:6379/0`) turns the workers on;
unset, nothing changes and nothing of Celery is imported. The workers run the app in `celery_app.py`, built here
from the same variables, so a worker cannot disagree with the runs about the queue or about when a step's message
is acknowledged, which is what makes a dead worker's step run again elsewhere (deploy/README.md, "Steps on Celery
workers").
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import dagster as dg

from ac_pipeline.defs.one_process import one_process_executor

if TYPE_CHECKING:
    from celery import Celery  # type: ignore[import-untyped]

BROKER_VAR = "AC_PIPELINE_CELERY_BROKER"
# One broker may serve several deployments (staging, production) or test runs: each sends its steps to a queue
# of its own, and its workers listen only there. dagster-celery's own default name.
QUEUE_VAR = "AC_PIPELINE_CELERY_QUEUE"
DEFAULT_QUEUE = "dagster"
# Where a worker sends a step's events back with RabbitMQ: straight to the run waiting for them, through a reply
# queue of the run's own. Redis keeps them under the task's id instead, in the broker itself.
RPC_BACKEND = "rpc://"


def _broker() -> str:
    return os.environ.get(BROKER_VAR, "").strip()


def _on_redis(broker: str) -> bool:
    return broker.startswith(("redis://", "rediss://"))


def _app_settings() -> dict[str, Any]:
    """The Celery settings the runs and the workers must agree on."""
    return {
        "task_default_queue": os.environ.get(QUEUE_VAR, "").strip() or DEFAULT_QUEUE,
        # A step's message is acknowledged when the step ends, not when a worker takes it. A worker that dies
        # mid-step leaves it unacknowledged, and the broker gives it to another worker; otherwise the step is
        # lost and its run waits for it for ever (the executor only waits for a result).
        "task_acks_late": True,
        # The same when only the pool process running the step dies (the OOM killer): without this Celery
        # acknowledges the message and fails the step with WorkerLostError, which fails the run.
        "task_reject_on_worker_lost": True,
        # A worker holds only the step it runs: a waiting step is never stuck behind a long push.
        "worker_prefetch_multiplier": 1,
    }


def celery_config() -> dict[str, Any] | None:
    """The celery_executor's config, or None when no broker is set."""
    broker = _broker()
    if not broker:
        return None
    # Read from the environment where the run starts: a password in the URL stays out of the job's config.
    from_env = {"env": BROKER_VAR}
    return {
        "broker": from_env,
        "backend": from_env if _on_redis(broker) else RPC_BACKEND,
        "config_source": _app_settings(),
    }


def sync_executor() -> dg.ExecutorDefinition:
    """The executor of `audience_sync`: Celery when a broker is set, else every step in the run's process."""
    config = celery_config()
    if config is None:
        return one_process_executor
    from dagster_celery import celery_executor  # the `celery` extra; only this path needs it

    return celery_executor.configured(config, name="ac_pipeline_celery")


def worker_app() -> Celery:
    """The Celery app of the workers: dagster-celery's step task, with the settings the runs use."""
    from dagster_celery.executor import CeleryExecutor
    from dagster_celery.make_app import make_app
    from dagster_celery.tasks import create_task

    broker = _broker()
    if not broker:
        raise RuntimeError(f"{BROKER_VAR} is not set: a Celery worker needs the broker the runs send their steps to")
    backend = broker if _on_redis(broker) else RPC_BACKEND
    app = make_app(CeleryExecutor.for_cli(broker=broker, backend=backend, config_source=_app_settings()).app_args())
    create_task(app)
    return app
