"""`ac-pipeline demo`: the whole product on the embedded default, from a fresh clone.

Generates the sample customer 360 if there is none, syncs every audience to the built-in sandbox
(or to the account ACTIVECAMPAIGN_API_URL names), changes the sample data a little and syncs again to
show an incremental sync. Runs go to a persistent Dagster home (data/dagster_home), so
`DAGSTER_HOME=$PWD/data/dagster_home dagster dev` shows them afterwards.

The syncs run in a worker process that this one supervises. While Dagster executes a run it holds
back Ctrl-C and SIGTERM until a step can take them, and a run waiting for a pool slot never gets
there; a worker can always be stopped from outside, so Ctrl-C and SIGTERM stop the demo within
seconds. What a stopped or killed worker leaves behind (runs still marked as running, the pool slot
they hold, the sandbox) is cleaned up here, and again by the next demo if this process was killed too.

This module is the command and the supervisor; the worker is in `demo_worker.py`, and the clean-up of
runs whose process is gone in `demo_runs.py`.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from ac_pipeline.demo_runs import HOST_TAG, PID_TAG, POOL, SOURCE_TAG, free_dead_runs
from ac_pipeline.demo_worker import POOL_PATIENCE_SECONDS, QUIET, work

if TYPE_CHECKING:
    import dagster as dg

# The runs' clean-up and the worker live in their own modules (demo_runs, demo_worker); tests and
# fixtures import these names from here.
__all__ = [
    "DAGSTER_YAML",
    "GRACE_SECONDS",
    "HOST_TAG",
    "PID_TAG",
    "POOL",
    "POOL_PATIENCE_SECONDS",
    "QUIET",
    "SOURCE_TAG",
    "WRITTEN_BY_THE_DEMO",
    "add_parser",
    "free_dead_runs",
    "run",
]

DAGSTER_YAML = """\
# Written by `ac-pipeline demo`. One ActiveCampaign push at a time per account: the pushes share the
# account's 5 requests a second, so the `activecampaign` pool (like every pool) allows one step.
concurrency:
  pools:
    default_limit: 1
# The daemon (`dagster dev` runs one) launches queued runs every second, not every 5 s (Dagster's default):
# a sync with nothing to send takes a few seconds, and waited longer than that in the queue.
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 1
# A run whose process died must not keep its pool slot. Under `dagster dev` the code server marks a run
# failed when its process dies, and run monitoring (a daemon: `dagster dev` runs it) frees the slots of
# runs that ended. The default run launcher cannot resume a run, hence max_resume_run_attempts: 0.
run_monitoring:
  enabled: true
  poll_interval_seconds: 30
  max_resume_run_attempts: 0
  free_slots_after_run_end_seconds: 30
telemetry:
  enabled: false
"""
WRITTEN_BY_THE_DEMO = DAGSTER_YAML.splitlines()[0]

# How long a stopped worker gets to end its runs itself before it is killed.
GRACE_SECONDS = 1.5


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="sync the sample audiences twice (full, then incremental)")
    parser.add_argument("--customers", type=int, default=100_000, help="sample size when generating (default 100,000)")
    parser.add_argument(
        "--speed",
        type=float,
        default=10.0,
        help="speed of the built-in sandbox: its limits x speed (default 10; 1 is the real limits)",
    )
    # The process that runs the syncs, started by the demo itself.
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    _prepare_environment(args.speed)
    return work(args) if args.worker else _supervise(args)


def _prepare_environment(speed: float) -> None:
    from ac_pipeline.settings import paths

    where = paths()
    os.environ.setdefault("DAGSTER_HOME", str(where.dagster_home))
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    # A dagster.yaml an older demo wrote is brought up to date; one written by anybody else is theirs.
    if not config.exists() or (
        config.read_text().startswith(WRITTEN_BY_THE_DEMO) and config.read_text() != DAGSTER_YAML
    ):
        config.write_text(DAGSTER_YAML)
    os.environ.setdefault("AC_PIPELINE_SANDBOX_SPEED", repr(speed))


# --- the supervisor ---------------------------------------------------------------------------------


class _Stopped(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stopped(signum: int, _frame: object) -> None:
    raise _Stopped(signum)


def _supervise(args: argparse.Namespace) -> int:
    from ac_pipeline.defs.activecampaign.local_sandbox import stop_local_sandbox
    from ac_pipeline.settings import paths

    uses_sandbox = not os.environ.get("ACTIVECAMPAIGN_API_URL", "").strip()
    previous = {signum: signal.signal(signum, _raise_stopped) for signum in (signal.SIGINT, signal.SIGTERM)}
    worker: subprocess.Popen | None = None
    instance: dict[str, dg.DagsterInstance] = {}
    loader = threading.Thread(target=_load_instance, args=(instance, _has_storage()), name="load-dagster", daemon=True)
    code = 1
    try:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ac_pipeline.cli",
                "demo",
                "--worker",
                "--customers",
                str(args.customers),
                "--speed",
                repr(args.speed),
            ],
            # The worker reads nothing: its stdin closes when this process ends, however it ends.
            stdin=subprocess.PIPE,
            # A Ctrl-C in the terminal reaches this process only, which stops the worker in its own way.
            start_new_session=True,
        )
        # Cleaning up after a stopped worker needs a Dagster instance (a second to load): load it now,
        # while the worker works, so that a Ctrl-C does not wait for it.
        loader.start()
        code = worker.wait()
        if code < 0:
            print(f"\nthe demo's worker was killed ({signal.Signals(-code).name})", flush=True)
    except _Stopped as stopped:
        print(f"\n{stopped}: stopping the demo", flush=True)
        code = 128 + stopped.signum
    finally:
        # The clean-up is short and runs to its end: another Ctrl-C now would leave runs and a sandbox behind.
        for signum in previous:
            signal.signal(signum, signal.SIG_IGN)
        try:
            if worker is not None:
                _end(worker)
                if worker.returncode != 0:
                    if loader.is_alive():
                        loader.join(timeout=30)
                    for line in _free_dead_runs_of(worker.pid, instance.get("loaded")):
                        print(line, flush=True)
            stopped_sandbox = uses_sandbox and stop_local_sandbox(paths().sandbox_state)
            if stopped_sandbox and code != 0:
                print("stopped the built-in sandbox", flush=True)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    return code


def _end(worker: subprocess.Popen) -> None:
    """Stop the worker: SIGTERM first (a run inside a step ends itself as failed; outside Dagster's
    execution the worker just ends), then for good."""
    if worker.poll() is not None:
        return
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(timeout=GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


def _has_storage() -> bool:
    """Whether the Dagster home's SQLite storage exists: two processes creating it at once race on its
    migrations, so the supervisor opens it early only when it exists already."""
    home = Path(os.environ["DAGSTER_HOME"])
    return all(
        (home / name).exists() for name in ("history/runs.db", "history/runs/index.db", "schedules/schedules.db")
    )


def _load_instance(into: dict[str, dg.DagsterInstance], open_it: bool) -> None:
    import dagster as dg

    if open_it:
        into["loaded"] = dg.DagsterInstance.get()


def _free_dead_runs_of(pid: int, instance: dg.DagsterInstance | None) -> list[str]:
    import dagster as dg

    if instance is None:
        instance = dg.DagsterInstance.get()
    with instance:
        return free_dead_runs(instance, pid=pid)
