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
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dagster as dg

DAGSTER_YAML = """\
# Written by `ac-pipeline demo`. One ActiveCampaign push at a time per account: the pushes share the
# account's 5 requests a second, so the `activecampaign` pool (like every pool) allows one step.
concurrency:
  pools:
    default_limit: 1
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

# The runs' step-by-step log stays in the run (dagster dev shows it); the terminal gets the summary.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}

# The push's pool (ac_pipeline.defs.activecampaign.assets.POOL; not imported, to keep Dagster out of
# the supervisor).
POOL = "activecampaign"
# Every demo run says who started it: the demo, which process and on which machine, so that a later
# demo can tell a run that is still going from one whose process is gone.
SOURCE_TAG, PID_TAG, HOST_TAG = "ac_pipeline/source", "ac_pipeline/pid", "ac_pipeline/host"
# How long a push may wait for the pool before the demo says who holds it.
POOL_PATIENCE_SECONDS = 5.0
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
    return _work(args) if args.worker else _supervise(args)


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


# --- runs whose process is gone ---------------------------------------------------------------------


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # somebody else's process, alive
    stat = Path(f"/proc/{pid}/stat")
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, IndexError):
        return False  # no /proc to ask: alive, as far as we can tell
    # A zombie is dead; a live process running something else took over a recycled pid.
    return fields[0] == "Z" or b"demo" not in cmdline


def _run_is_dead(run: dg.DagsterRun) -> bool:
    pid = run.tags.get(PID_TAG)
    if pid is None:
        return True  # started by a demo older than the pid tag, which this checkout replaced
    if run.tags.get(HOST_TAG, socket.gethostname()) != socket.gethostname():
        return False  # another machine's process: no way to tell from here
    return _process_gone(int(pid))


def free_dead_runs(instance: dg.DagsterInstance, pid: int | None = None) -> list[str]:
    """Mark failed the demo's runs whose process is gone (or only process `pid`'s), and free every pool
    slot held by a run that has ended. Returns a line per run it cleaned up."""
    import dagster as dg

    tags = {SOURCE_TAG: "demo", **({PID_TAG: str(pid)} if pid is not None else {})}
    unfinished = [
        dg.DagsterRunStatus.NOT_STARTED,
        dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED,
        dg.DagsterRunStatus.CANCELING,
    ]
    storage = instance.event_log_storage
    lines = []
    for run in instance.get_runs(dg.RunsFilter(tags=tags, statuses=unfinished)):
        if not _run_is_dead(run):
            continue
        instance.report_run_failed(
            run, f"The demo process that ran this run (pid {run.tags.get(PID_TAG, 'unknown')}) is gone."
        )
        storage.free_concurrency_slots_for_run(run.run_id)
        lines.append(
            f"cleaned up run {run.run_id} ({_partition(run)}): its process is gone; marked failed, pool slots freed"
        )
    # Slots still held by runs that ended: what run monitoring's free_slots_after_run_end_seconds does
    # when the daemon runs. Another source's run gets the same delay the daemon would give it.
    delay = float(instance.run_monitoring_settings.get("free_slots_after_run_end_seconds") or 30)
    for run_id in storage.get_concurrency_run_ids():
        record = instance.get_run_record_by_id(run_id)
        if record is None or not record.dagster_run.is_finished:
            continue
        ours = record.dagster_run.tags.get(SOURCE_TAG) == "demo" and _run_is_dead(record.dagster_run)
        if not ours and (record.end_time is None or time.time() - record.end_time < delay):
            continue
        if any(slot.run_id == run_id for slot in storage.get_concurrency_info(POOL).claimed_slots):
            lines.append(
                f"freed the {POOL} pool slot of run {run_id} ({_partition(record.dagster_run)}), "
                f"which ended ({record.dagster_run.status.value}) without freeing it"
            )
        storage.free_concurrency_slots_for_run(run_id)
    return lines


def _partition(run: dg.DagsterRun) -> str:
    return f"{run.job_name}, {run.tags.get('dagster/partition', 'no partition')}"


# --- the worker -------------------------------------------------------------------------------------


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
                    f"{_partition(holder)}, {holder.status.value}, started by "
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


def _work(args: argparse.Namespace) -> int:
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
