"""`ac-pipeline demo`: the whole product on the embedded default, from a fresh clone.

Generates the sample customer 360 if there is none, syncs every audience to the built-in sandbox
(or to the account ACTIVECAMPAIGN_API_URL names), changes the sample data a little and syncs again to
show an incremental sync. Runs go to a persistent Dagster home (data/dagster_home), so
`DAGSTER_HOME=$PWD/data/dagster_home dagster dev` shows them afterwards.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

DAGSTER_YAML = """\
# Written by `ac-pipeline demo`. One ActiveCampaign push at a time per account: the pushes share the
# account's 5 requests a second, so the `activecampaign` pool (like every pool) allows one step.
concurrency:
  pools:
    default_limit: 1
telemetry:
  enabled: false
"""


# The runs' step-by-step log stays in the run (dagster dev shows it); the terminal gets the summary.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="sync the sample audiences twice (full, then incremental)")
    parser.add_argument("--customers", type=int, default=100_000, help="sample size when generating (default 100,000)")
    parser.add_argument(
        "--speed",
        type=float,
        default=10.0,
        help="speed of the built-in sandbox: its limits x speed (default 10; 1 is the real limits)",
    )
    parser.set_defaults(func=run)


def _prepare_environment(speed: float) -> None:
    from ac_pipeline.settings import paths

    where = paths()
    os.environ.setdefault("DAGSTER_HOME", str(where.dagster_home))
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(DAGSTER_YAML)
    os.environ.setdefault("AC_PIPELINE_SANDBOX_SPEED", repr(speed))


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
    ok = True
    for key in keys:
        result = job.execute_in_process(
            partition_key=key,
            instance=instance,
            raise_on_error=False,
            tags={"ac_pipeline/source": "demo"},
            run_config=QUIET,
        )
        members, changes, push = (
            _metadata(result, a) for a in ("audience_members", "audience_changes", "activecampaign_sync")
        )
        if not result.success:
            ok = False
            failure = next((e for e in result.all_events if e.event_type_value == "STEP_FAILURE"), None)
            reason = failure.event_specific_data.error.message.strip().splitlines()[0] if failure else "see the run"
            print(f"{key:<20} FAILED: {reason}")
            continue
        print(
            f"{key:<20}{members.get('members', 0):>9,}{members.get('rejected', 0):>9,}{push.get('adds', 0) + push.get('readds', 0):>8,}"
            f"{push.get('updates', 0):>8,}{push.get('removals', 0):>9,}{push.get('requests', 0):>9,}{push.get('seconds', 0):>9.1f}"
        )
    return ok


def run(args: argparse.Namespace) -> int:
    _prepare_environment(args.speed)
    import dagster as dg

    from ac_pipeline.customer360.generate import apply_sample_changes, generate
    from ac_pipeline.definitions import build_definitions
    from ac_pipeline.defs.activecampaign.local_sandbox import stop_local_sandbox
    from ac_pipeline.settings import paths

    where = paths()
    if not where.customer_360.exists():
        started = time.perf_counter()
        generate(where.customer_360, customers=args.customers)
        print(
            f"generated a sample customer 360 of {args.customers:,} customers in {time.perf_counter() - started:.1f} s: {where.customer_360}"
        )
    defs = build_definitions(where)
    resource = defs.resources["activecampaign"]
    if resource.uses_sandbox:
        print(
            f"destination: the built-in sandbox at speed {resource.sandbox_speed:g} (limits x {resource.sandbox_speed:g}); "
            "set ACTIVECAMPAIGN_API_URL and ACTIVECAMPAIGN_API_KEY for a real account"
        )
    else:
        print(f"destination: {resource.describe()}")
    instance = dg.DagsterInstance.get()
    try:
        ok = _sync_all(defs, instance, "sync 1: every audience")
        touched = apply_sample_changes(where.customer_360, seed=int(time.time()))
        print(f"\nchanged the sample data a little: {', '.join(f'{k} {v:,}' for k, v in touched.items())}")
        ok = _sync_all(defs, instance, "sync 2: only what changed") and ok
    finally:
        if resource.uses_sandbox:
            stop_local_sandbox(Path(resource.sandbox_state))
    print(
        f"\nruns are in {os.environ['DAGSTER_HOME']}; to browse them:\n"
        f"  DAGSTER_HOME={os.environ['DAGSTER_HOME']} dagster dev"
    )
    return 0 if ok else 1
