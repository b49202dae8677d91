"""The demo's worker process: it syncs every audience twice (full, then incremental), one run at a time,
waiting quietly for the `activecampaign` pool before each, and ends when its supervisor (`demo.py`) does.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
import threading
import time
from typing import TYPE_CHECKING

from ac_pipeline.demo_runs import HOST_TAG, PID_TAG, POOL, SOURCE_TAG, free_dead_runs, partition_of

if TYPE_CHECKING:
    import dagster as dg

# The runs' step-by-step log stays in the run (dagster dev shows it); the terminal gets the summary.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
# How long a push may wait for the pool before the demo says who holds it.
POOL_PATIENCE_SECONDS = 5.0


def _exit_with_the_supervisor() -> None:
    """The supervisor keeps our stdin open while it lives: when it closes, the demo is over."""
    # os.read, not sys.stdin: a daemon thread blocked inside a buffered reader aborts the interpreter's exit.
    with contextlib.suppress(OSError):
        while os.read(0, 1024):
            pass
    print("the demo stopped: its worker stops too", file=sys.stderr, flush=True)
    os._exit(1)


def _wait_for_the_pool(instance: dg.DagsterInstance, audience: str) -> None:
    """Wait here, quietly and cheaply, until the pool has a free slot; after a few seconds say which run
    holds it and how to free it, and clean up the demo's own dead runs.

    Dagster's own wait spins (at 100% of a core in the in-process executor) and says so only in a
    DEBUG event every 5 minutes; a slot taken between this check and the run's claim costs that wait."""
    import dagster as dg

    storage = instance.event_log_storage
    started = time.monotonic()
    told: set[str] = set()
    while True:
        info = storage.get_concurrency_info(POOL)
        if info.limit is None or len(info.claimed_slots) < info.limit:
            return
        if time.monotonic() - started >= POOL_PATIENCE_SECONDS:
            for line in free_dead_runs(instance):
                print(line, flush=True)
            for run_id in sorted(info.active_run_ids - told):
                told.add(run_id)
                holder = instance.get_run_by_id(run_id)
                what = (
                    f"{partition_of(holder)}, {holder.status.value}, started by "
                    f"{'the demo, pid ' + holder.tags.get(PID_TAG, '?') if holder.tags.get(SOURCE_TAG) == 'demo' else 'something other than the demo'}"
                    if holder
                    else "a run this instance no longer has"
                )
                print(
                    f"{audience}: waiting for the {POOL} pool ({info.limit} slot), held by run {run_id} ({what}).\n"
                    f"  If that run is still pushing, {audience} starts when it ends. If its process is gone, mark it "
                    f"failed and free its slot: in the Dagster UI (DAGSTER_HOME={os.environ['DAGSTER_HOME']} dagster dev) "
                    "open the run, Terminate it (force), then 'Free concurrency slots'; or stop this demo (Ctrl-C).",
                    flush=True,
                )
                if holder is not None and holder.status == dg.DagsterRunStatus.FAILURE:
                    print("  (it has failed already: run monitoring frees its slot within a minute)", flush=True)
        time.sleep(0.5)


def _metadata(result, asset: str) -> dict:
    import dagster as dg

    for event in result.get_asset_materialization_events():
        if event.asset_key == dg.AssetKey(asset):
            return {k: v.value for k, v in event.materialization.metadata.items()}
    return {}


def _sync_all(defs, instance, label: str) -> bool:
    job = defs.resolve_job_def("audience_sync")
    keys = job.partitions_def.get_partition_keys()
    print(f"\n{label}")
    print(
        f"{'audience':<20}{'members':>9}{'rejected':>9}{'adds':>8}{'updates':>8}{'removals':>9}{'requests':>9}{'seconds':>9}"
    )
    tags = {SOURCE_TAG: "demo", PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}
    ok = True
    for key in keys:
        _wait_for_the_pool(instance, key)
        result = job.execute_in_process(
            partition_key=key, instance=instance, raise_on_error=False, tags=tags, run_config=QUIET
        )
        members, push = (_metadata(result, a) for a in ("audience_members", "activecampaign_sync"))
        if not result.success:
            ok = False
            failure = next((e for e in result.all_events if e.event_type_value == "STEP_FAILURE"), None)
            error = failure.event_specific_data.error if failure is not None else None
            reason = error.message.strip().splitlines()[0] if error is not None else "see the run"
            print(f"{key:<20} FAILED: {reason}")
            continue
        print(
            f"{key:<20}{members.get('members', 0):>9,}{members.get('rejected', 0):>9,}{push.get('adds', 0) + push.get('readds', 0):>8,}"
            f"{push.get('updates', 0):>8,}{push.get('removals', 0):>9,}{push.get('requests', 0):>9,}{push.get('seconds', 0):>9.1f}",
            flush=True,
        )
    return ok


def work(args: argparse.Namespace) -> int:
    """`ac-pipeline demo --worker`: what the supervisor starts."""
    threading.Thread(target=_exit_with_the_supervisor, name="supervisor-watch", daemon=True).start()
    try:
        return _sync_twice(args)
    except KeyboardInterrupt:
        return 128 + signal.SIGINT


def _sync_twice(args: argparse.Namespace) -> int:
    import dagster as dg

    from ac_pipeline.customer360.generate import apply_sample_changes, generate
    from ac_pipeline.definitions import build_definitions
    from ac_pipeline.settings import paths

    where = paths()
    instance = dg.DagsterInstance.get()
    for line in free_dead_runs(instance):
        print(line, flush=True)
    if not where.customer_360.exists():
        started = time.perf_counter()
        generate(where.customer_360, customers=args.customers)
        print(
            f"generated a sample customer 360 of {args.customers:,} customers in {time.perf_counter() - started:.1f} s: {where.customer_360}"
        )
    defs = build_definitions(where)
    resource = dict(defs.resources or {})["activecampaign"]
    if resource.uses_sandbox:
        print(
            f"destination: the built-in sandbox at speed {resource.sandbox_speed:g} (limits x {resource.sandbox_speed:g}); "
            "set ACTIVECAMPAIGN_API_URL and ACTIVECAMPAIGN_API_KEY for a real account"
        )
    else:
        print(f"destination: {resource.describe()}")
    ok = _sync_all(defs, instance, "sync 1: every audience")
    touched = apply_sample_changes(where.customer_360, seed=int(time.time()))
    print(f"\nchanged the sample data a little: {', '.join(f'{k} {v:,}' for k, v in touched.items())}")
    ok = _sync_all(defs, instance, "sync 2: only what changed") and ok
    print(
        f"\nruns are in {os.environ['DAGSTER_HOME']}; to browse them:\n"
        f"  DAGSTER_HOME={os.environ['DAGSTER_HOME']} dagster dev",
        flush=True,
    )
    return 0 if ok else 1
