"""How close the push gets to the ceiling ActiveCampaign's limits allow.

For each sync state backend, a fresh `ac-pipeline sandbox --speed 20` in its own process, then pushes through
the same engine the `activecampaign_sync` asset uses (Push):
  1. 100,000 adds (a first sync),
  2. 10,000 mixed changes (adds, updates and removals),
  3. a sync with no changes.
Prints contacts per minute as a share of the ceiling (25,000 a minute x speed: 100 bulk imports of 250
contacts a minute), requests per changed contact, and the requests of the no-change sync. It also prints the
CPU seconds the push took in this process (the client, the push engine, the sync state) and in the sandbox's
process, per 10,000 contacts: a measure that, unlike the share, does not move with other work on the machine. The backends are a
temporary DuckDB file and a scratch database on Postgres (dropped after), side by side in one run, with the
ratio of their shares (issue 10: the push with Postgres state keeps the share it has with DuckDB state).
Targets: at least 0.9 of the ceiling; a no-change sync sends at most 3 requests; at most 0.005 requests per
changed contact. The pushes take import callbacks, as with the built-in sandbox (a listener on loopback that the
sandbox calls back); `--no-callbacks` polls every batch (`import/info`), as against a real account without
AC_PIPELINE_CALLBACK_URL.

    python benchmarks/push_bench.py [--speed 20] [--adds 100000] [--changes 10000] [--no-callbacks]
        [--state duckdb,postgres] [--postgres postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import polars as pl

from ac_pipeline.activecampaign import ActiveCampaignClient, RateLimits
from ac_pipeline.activecampaign.import_callbacks import ImportCallbacks
from ac_pipeline.audiences.changes import diff
from ac_pipeline.audiences.config import parse_audiences
from ac_pipeline.state.store import SyncState
from ac_pipeline.sync.push import Push

AUDIENCE = """
audiences:
  - key: bench
    list: {name: Benchmark list, create: true}
    condition: "true"
    fields:
      email: email
      first_name: first_name
      last_name: last_name
      phone: phone
      custom: {Lifetime value: lifetime_value, Loyalty tier: loyalty_tier}
      create_missing: true
    tags: [benchmark]
"""
KEY = "bench-key"


def members(n: int, offset: int = 0, version: str = "a") -> pl.DataFrame:
    ids = pl.int_range(offset, offset + n, eager=True)
    return pl.DataFrame(
        {
            "email": ids.cast(pl.String).map_elements(lambda i: f"customer{i}@example.com", return_dtype=pl.String),
            "first_name": pl.Series(["Ada"] * n),
            "last_name": pl.Series(["Lovelace"] * n),
            "phone": pl.Series(["+1 555 0100"] * n),
            "field:Lifetime value": (ids * 7 % 5000).cast(pl.String),
            "field:Loyalty tier": pl.Series(["gold"] * n),
        }
    ).with_columns(fields_hash=pl.concat_str([pl.col("email"), pl.lit(version)]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far, every thread included (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def push(
    client,
    state,
    audience,
    changes: pl.DataFrame,
    speed: float,
    run_id: str,
    sandbox: subprocess.Popen,
    no_callbacks: bool = False,
) -> tuple[float, int, int, tuple[float, float]]:
    """Seconds, requests, contacts sent, and the CPU seconds of (this process, the sandbox) for one push."""
    before = client.stats.requests
    cpu_before = (time.process_time(), cpu_seconds(sandbox.pid))
    started = time.perf_counter()
    result = Push(
        client,
        state,
        audience,
        run_id,
        account="benchmark",
        log=lambda m: None,
        poll_interval=1.0 / speed,
        callbacks=None if no_callbacks else ImportCallbacks(),
    ).run(changes)
    seconds = time.perf_counter() - started
    cpu = (time.process_time() - cpu_before[0], cpu_seconds(sandbox.pid) - cpu_before[1])
    assert result.outcomes["failed"] == 0, result.outcomes
    return seconds, client.stats.requests - before, sum(result.pending.values()), cpu


def per_10k(cpu: tuple[float, float], sent: int) -> str:
    client, sandbox = (seconds / sent * 10_000 for seconds in cpu)
    return f"CPU per 10,000 contacts: client {client:.2f} s, sandbox {sandbox:.2f} s"


def start_sandbox(speed: float) -> tuple[subprocess.Popen, ActiveCampaignClient]:
    port = free_port()
    sandbox = subprocess.Popen(
        [
            sys.executable,
            *("-m", "ac_pipeline.cli", "sandbox"),
            "--port",
            str(port),
            "--speed",
            repr(speed),
            "--api-key",
            KEY,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = ActiveCampaignClient(f"http://127.0.0.1:{port}", KEY, limits=RateLimits(safety_margin=0.2).scaled(speed))
    for _ in range(100):
        try:
            client.request("GET", "lists", params={"limit": 1})
            break
        except Exception:
            time.sleep(0.1)
    return sandbox, client


@contextlib.contextmanager
def scratch_postgres(maintenance_url: str) -> Iterator[str]:
    """A database of its own on the server of `maintenance_url`, dropped after."""
    import psycopg
    from psycopg import sql

    name = f"ac_pipeline_bench_{secrets.token_hex(4)}"
    with psycopg.connect(maintenance_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            parts = urlsplit(maintenance_url)
            yield urlunsplit(parts._replace(path=f"/{name}"))
        finally:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def bench(location: Path | str, args: argparse.Namespace) -> list[float]:
    """The three pushes against a fresh sandbox, with the state at `location`; the shares of the ceiling of
    the first two."""
    sandbox, client = start_sandbox(args.speed)
    try:
        audience = parse_audiences(AUDIENCE).get("bench")
        state = SyncState(location)
        ceiling = 25_000 * args.speed  # contacts a minute: 100 imports x 250 contacts x speed
        print(f"state {state.where}, sandbox at speed {args.speed:g}: ceiling {ceiling:,.0f} contacts/minute")

        first = members(args.adds)
        seconds, requests, sent, cpu = push(
            client,
            state,
            audience,
            diff(first, state.snapshot("bench")),
            args.speed,
            "run-1",
            sandbox,
            args.no_callbacks,
        )
        rate = sent / seconds * 60
        shares = [rate / ceiling]
        print(
            f"1. {sent:,} adds: {seconds:.1f} s, {rate:,.0f} contacts/minute = {rate / ceiling:.2f} of the ceiling, "
            f"{requests:,} requests ({requests / sent:.4f} per contact); {per_10k(cpu, sent)}"
        )

        # 10,000 mixed changes: a third new, a third updated, a third leaving.
        third = args.changes // 3
        updated = members(third, 0, version="b")
        kept = first.slice(third, args.adds - 2 * third)
        added = members(args.changes - 2 * third, args.adds)
        second = pl.concat([updated, kept, added])
        changes = diff(second, state.snapshot("bench"))
        # Syncs come minutes apart: the next one finds bulk import's window empty. Without this wait the mixed
        # push would spend its first seconds waiting for the slots the 100,000 adds just used, and measure that.
        time.sleep(60.0 * 1.05 / args.speed)  # a minute of the sandbox's time, and a little more
        seconds, requests, sent, cpu = push(
            client, state, audience, changes, args.speed, "run-2", sandbox, args.no_callbacks
        )
        rate = sent / seconds * 60
        shares.append(rate / ceiling)
        print(
            f"2. {sent:,} mixed changes {dict(changes.group_by('op').len().iter_rows())}: {seconds:.1f} s, "
            f"{rate:,.0f} contacts/minute = {rate / ceiling:.2f} of the ceiling, {requests:,} requests "
            f"({requests / sent:.4f} per changed contact); {per_10k(cpu, sent)}"
        )

        changes = diff(second, state.snapshot("bench"))
        seconds, requests, sent, _ = push(
            client, state, audience, changes, args.speed, "run-3", sandbox, args.no_callbacks
        )
        print(f"3. no changes: {requests} requests (target <= 3), {seconds:.2f} s")
        client.close()
        return shares
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speed", type=float, default=20.0)
    parser.add_argument("--adds", type=int, default=100_000)
    parser.add_argument("--changes", type=int, default=10_000)
    parser.add_argument(
        "--no-callbacks", action="store_true", help="poll every bulk import instead of taking its callback"
    )
    parser.add_argument("--state", default="duckdb,postgres", help="the backends to measure, in this order")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()

    shares: dict[str, list[float]] = {}
    for backend in args.state.split(","):
        if backend == "duckdb":
            shares[backend] = bench(Path(tempfile.mkdtemp(prefix="ac-push-bench-")) / "state.duckdb", args)
        elif backend == "postgres":
            with scratch_postgres(args.postgres) as url:
                shares[backend] = bench(url, args)
        else:
            parser.error(f"unknown backend {backend!r}: duckdb or postgres")
    if {"duckdb", "postgres"} <= set(shares):
        ratios = [p / d for p, d in zip(shares["postgres"], shares["duckdb"], strict=True)]
        print(
            "share of the ceiling, postgres / duckdb: "
            f"adds {ratios[0]:.2f}, mixed changes {ratios[1]:.2f} (1.00 = the same share)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
