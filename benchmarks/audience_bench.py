"""How long audience_members + audience_changes take at scale, beside the floor of merely reading the data.

For each sample audience, in a fresh process (so peak memory is that audience's alone):
  floor     = select the audience's mapped columns from DuckDB into Polars (the least any version must do);
  pipeline  = compute members (select, normalise, validate, de-duplicate, exclude, hash) + read the
              snapshot from the state file + diff, against a snapshot of about the audience's size
              (90% unchanged, 5% changed fields, 5% no longer in the audience).
Prints both, their ratio (target at most 2.5) and peak memory (target at most 4 GB). With `--repeat N` each
audience is measured N times, each in a fresh process, and the medians are printed: floor, pipeline, and the
ratio of each run (floor and pipeline of one run are measured back to back, so they share the machine's load).

    python benchmarks/audience_bench.py --customers 10000000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import polars as pl

from ac_pipeline.audiences.changes import diff
from ac_pipeline.audiences.config import load_audiences
from ac_pipeline.audiences.members import (
    apply_exclusions,
    classify,
    compute_members,
    excluded_emails,
    read_rows,
    select_sql,
)
from ac_pipeline.customer360.generate import generate
from ac_pipeline.state.store import SyncState

REPO = Path(__file__).resolve().parent.parent


def peak_memory_mb() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec,
    so a child would report its parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def floor_sql(audience, source) -> str:
    mapped = [audience.fields.email, *audience.fields.expressions().values(), *audience.fields.custom.values()]
    columns = ", ".join(dict.fromkeys([source.id_column, source.updated_column, *mapped]))
    return f"SELECT {columns} FROM {source.table} WHERE ({audience.condition})"


def prepare_snapshot(database: Path, audiences_file: Path, key: str, state: Path) -> None:
    catalog = load_audiences(audiences_file)
    with duckdb.connect(str(database), read_only=True) as connection:
        members = compute_members(connection, catalog.get(key), catalog.by_key, catalog.source)
    members = members.filter(pl.col("status") == "member").select("email", "fields_hash")
    n = members.height
    unchanged = members.head(int(n * 0.90))
    changed = members.slice(int(n * 0.90), int(n * 0.05)).with_columns(fields_hash=pl.lit("stale"))
    departed = pl.DataFrame({"email": [f"gone{i}@example.com" for i in range(int(n * 0.05))]}).with_columns(
        fields_hash=pl.lit("x")
    )
    snapshot = pl.concat([unchanged, changed, departed]).with_columns(status=pl.lit("member"))
    SyncState(state).commit_confirmed(key, "benchmark-setup", snapshot)


def measure(database: Path, audiences_file: Path, key: str, state: Path, with_phases: bool = False) -> dict:
    catalog = load_audiences(audiences_file)
    audience = catalog.get(key)
    with duckdb.connect(str(database), read_only=True) as connection:
        started = time.perf_counter()
        floor_rows = connection.sql(floor_sql(audience, catalog.source)).pl().height
        floor = time.perf_counter() - started

        started = time.perf_counter()
        rows = compute_members(connection, audience, catalog.by_key, catalog.source)
    snapshot = SyncState(state).snapshot(key)
    changes = diff(rows, snapshot)  # as audience_changes does: the member rows of audience_members
    pipeline = time.perf_counter() - started
    members = rows.filter(pl.col("status") == "member")
    peak_mb = peak_memory_mb()
    result = {
        "audience": key,
        "selected": floor_rows,
        "members": members.height,
        "snapshot": snapshot.height,
        "changes": changes.height,
        "floor_s": floor,
        "pipeline_s": pipeline,
        "ratio": pipeline / floor,
        "peak_mb": peak_mb,
    }
    return result | ({"phases": phases(database, catalog, key, state)} if with_phases else {})


def phases(database: Path, catalog, key: str, state: Path) -> dict[str, tuple[float, float]]:
    """Phase -> (wall s, CPU s of all threads) of one more run of the pipeline, step by step (the profile that says
    where the time goes). `fields_hash alone` is the audience's query reduced to its fields_hash column: what the
    md5 of the mapped values costs in DuckDB, the transfer of the hashes included; `select` includes it."""
    audience, source = catalog.get(key), catalog.source
    timed: dict[str, tuple[float, float]] = {}

    def timing(name: str, step):
        wall, cpu = time.perf_counter(), time.process_time()
        value = step()
        timed[name] = (time.perf_counter() - wall, time.process_time() - cpu)
        return value

    with duckdb.connect(str(database), read_only=True) as connection:
        timing("floor", lambda: connection.sql(floor_sql(audience, source)).pl())
        query = select_sql(audience, source)
        timing("fields_hash alone", lambda: connection.sql(f"SELECT fields_hash FROM ({query})").pl())
        raw = timing("select", lambda: read_rows(connection, audience, source))
        rows = timing("classify", lambda: classify(raw))
        excluded = timing("exclusions: read", lambda: excluded_emails(connection, audience, catalog.by_key, source))
        rows = timing("exclusions: lookup", lambda: apply_exclusions(rows, excluded))
    snapshot = timing("snapshot read", lambda: SyncState(state).snapshot(key))
    timing("diff", lambda: diff(rows, snapshot))
    return timed


# Printed as the median over the runs of an audience (the counts are the same in every run; peak memory is the
# highest of the runs).
MEDIANS = ("floor_s", "pipeline_s", "ratio")


def run_child(database: Path, audiences: Path, key: str, state: Path, with_phases: bool) -> dict:
    """Measure one audience in a fresh process (so peak memory is that audience's alone)."""
    extra = ["--phases"] if with_phases else []
    child = subprocess.run(
        [sys.executable, __file__, "--audiences", str(audiences), *extra, "--child", str(database), key, str(state)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(child.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--workdir", type=Path, default=None, help="keep the generated data here (reused if present)")
    parser.add_argument("--audiences", type=Path, default=REPO / "data" / "audiences.yaml")
    parser.add_argument("--repeat", type=int, default=1, help="runs per audience; medians are printed")
    parser.add_argument("--only", action="append", metavar="KEY", help="measure only this audience (repeatable)")
    parser.add_argument(
        "--phases", action="store_true", help="also time each phase (after the measured run), medians printed"
    )
    parser.add_argument("--child", nargs=3, metavar=("DATABASE", "KEY", "STATE"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        database, key, state = args.child
        print(json.dumps(measure(Path(database), args.audiences, key, Path(state), args.phases)))
        return 0

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ac-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    database = workdir / f"customer_360_{args.customers}_{args.seed}.duckdb"
    if not database.exists():
        started = time.perf_counter()
        generate(database, customers=args.customers, seed=args.seed)
        print(f"generated {args.customers:,} customers in {time.perf_counter() - started:.1f} s -> {database}")
    state = workdir / "state.duckdb"
    state.unlink(missing_ok=True)
    catalog = load_audiences(args.audiences)
    print(
        f"{'audience':<20}{'selected':>12}{'members':>12}{'snapshot':>12}{'changes':>10}"
        f"{'floor s':>10}{'pipeline s':>12}{'ratio':>8}{'peak MB':>10}"
    )
    worst_ratio, worst_peak = 0.0, 0.0
    for key in args.only or catalog.keys:
        prepare_snapshot(database, args.audiences, key, state)
        runs = [run_child(database, args.audiences, key, state, args.phases) for _ in range(max(1, args.repeat))]
        r = runs[-1] | {name: statistics.median(run[name] for run in runs) for name in MEDIANS}
        r["peak_mb"] = max(run["peak_mb"] for run in runs)
        worst_ratio, worst_peak = max(worst_ratio, r["ratio"]), max(worst_peak, r["peak_mb"])
        print(
            f"{key:<20}{r['selected']:>12,}{r['members']:>12,}{r['snapshot']:>12,}{r['changes']:>10,}"
            f"{r['floor_s']:>10.2f}{r['pipeline_s']:>12.2f}{r['ratio']:>8.2f}{r['peak_mb']:>10.0f}",
            flush=True,
        )
        if args.phases:
            for name in runs[0]["phases"]:
                wall = statistics.median(run["phases"][name][0] for run in runs)
                cpu = statistics.median(run["phases"][name][1] for run in runs)
                print(f"    {name:<24}{wall:>8.2f} s wall{cpu:>8.2f} s CPU", flush=True)
    print(f"worst ratio {worst_ratio:.2f} (target <= 2.5), worst peak memory {worst_peak:,.0f} MB (target <= 4,096)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
