"""How much of a run is start-up: runs launched the way the UI launches them, timed from Dagster's own records.

`dagster dev` is started once on the project's workspace, and runs are launched through its webserver's GraphQL
API, as the UI launches them: queued, launched by the daemon with the default run launcher, each run a process of
its own that loads the definitions, then executes its steps with the job's executor. On a home of its own (the sample customer 360, the built-in sandbox at
`--speed`), it measures:
  1. a backfill of every audience from empty (one run per audience, launched together, as a backfill does):
     wall time from the first launch to the last success, against the sum of the pushes' own durations;
  2. a run of one audience with nothing to send, several times: start to success (the run's start_time and
     end_time, which the UI shows as its duration), and launch to success;
  3. the same backfill again with nothing to send.
Targets (issue 12): a run with no changes at most 4 s from start to success; a backfill dominated by its pushes.

    python benchmarks/run_overhead_bench.py [--customers 100000] [--speed 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import httpx
from dagster_graphql import DagsterGraphQLClient

from ac_pipeline.customer360.generate import generate
from ac_pipeline.definitions import build_definitions
from ac_pipeline.demo import DAGSTER_YAML

REPO = Path(__file__).resolve().parent.parent
JOB = "audience_sync"
PUSH = "activecampaign_sync"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def webserver(env: dict[str, str]) -> Iterator[DagsterGraphQLClient]:
    """`dagster dev` on the project's workspace (webserver, daemon, code server), and a GraphQL client of its
    webserver: runs are launched the way the UI's Materialize button launches them, and queued for the daemon."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/server_info", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the webserver did not start")
            time.sleep(0.3)
        yield DagsterGraphQLClient("127.0.0.1", port_number=port, timeout=120)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def launch(client: DagsterGraphQLClient, partition: str) -> str:
    return client.submit_job_execution(JOB, tags={"dagster/partition": partition})


def wait_for(instance: dg.DagsterInstance, run_ids: set[str], timeout: float = 1800) -> list[dg.RunRecord]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = [r for r in instance.get_run_records(dg.RunsFilter(run_ids=list(run_ids)))]
        if len(records) == len(run_ids) and all(r.dagster_run.is_finished for r in records):
            failed = [r.dagster_run.run_id for r in records if not r.dagster_run.is_success]
            if failed:
                raise RuntimeError(f"runs failed: {failed} (DAGSTER_HOME={instance.root_directory})")
            return records
        time.sleep(0.2)
    raise TimeoutError(f"runs did not finish within {timeout:g} s")


def push_seconds(instance: dg.DagsterInstance, run_id: str) -> float:
    started = ended = None
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is not None and entry.step_key == PUSH:
            if event.event_type_value == "STEP_START":
                started = entry.timestamp
            elif event.event_type_value == "STEP_SUCCESS":
                ended = entry.timestamp
    return (ended or 0.0) - (started or 0.0)


def backfill(instance: dg.DagsterInstance, client: DagsterGraphQLClient, keys: list[str], label: str) -> None:
    started = time.time()
    records = wait_for(instance, {launch(client, key) for key in keys})
    wall = max(r.end_time or 0 for r in records) - started
    pushes = sum(push_seconds(instance, r.dagster_run.run_id) for r in records)
    print(f"{label}: {len(keys)} runs, {wall:.1f} s from the first launch to the last success; "
          f"pushes {pushes:.1f} s ({pushes / wall:.0%} of the wall)", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--speed", type=float, default=10.0, help="the sandbox's speed (the demo's is 10)")
    parser.add_argument("--repeat", type=int, default=3, help="no-change runs of one audience")
    parser.add_argument("--audience", default="vip_customers")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="run-overhead-") as tmp:
        home = Path(tmp)
        (home / "dagster_home").mkdir()
        (home / "dagster_home" / "dagster.yaml").write_text(DAGSTER_YAML)  # what the demo's home has
        shutil.copy(REPO / "data" / "audiences.yaml", home / "audiences.yaml")
        generate(home / "customer_360.duckdb", customers=args.customers)
        env = {
            **os.environ,
            "AC_PIPELINE_HOME": str(home),
            "DAGSTER_HOME": str(home / "dagster_home"),
            "AC_PIPELINE_SANDBOX_PORT": str(free_port()),
            "AC_PIPELINE_SANDBOX_SPEED": f"{args.speed:g}",
        }
        for name in ("ACTIVECAMPAIGN_API_URL", "ACTIVECAMPAIGN_API_KEY"):
            env.pop(name, None)
        os.environ.update({k: env[k] for k in ("AC_PIPELINE_HOME", "DAGSTER_HOME")})
        partitions = build_definitions().resolve_job_def(JOB).partitions_def
        assert partitions is not None
        keys = list(partitions.get_partition_keys())
        print(f"{args.customers:,} customers, sandbox speed {args.speed:g}, audiences {', '.join(keys)}", flush=True)
        try:
            with dg.DagsterInstance.get() as instance, webserver(env) as client:
                backfill(instance, client, keys, "backfill, first sync")
                runs, queued = [], []
                for _ in range(args.repeat):
                    launched = time.time()
                    [record] = wait_for(instance, {launch(client, args.audience)})
                    runs.append((record.end_time or 0) - (record.start_time or 0))
                    queued.append((record.start_time or 0) - launched)
                print(
                    f"{args.audience}, nothing to send, {args.repeat} runs: start to success "
                    f"median {statistics.median(runs):.2f} s (min {min(runs):.2f}, max {max(runs):.2f}); "
                    f"before it, launch to start (queue, run process start-up) median {statistics.median(queued):.2f} s",
                    flush=True,
                )
                backfill(instance, client, keys, "backfill, nothing to send")
        finally:
            pidfile = home / "sandbox.sqlite.pid"
            if pidfile.exists():  # the built-in sandbox the runs started
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pidfile.read_text().strip()), 15)


if __name__ == "__main__":
    main()
