"""How close the read-back of a list gets to the ceiling ActiveCampaign's limits allow, what an unchanged list
costs, and what reconciling a million members costs in compute.

Starts `ac-pipeline sandbox` in its own process (a SQLite state file in a temporary folder, so that it can be
restarted at another speed with the same account), fills a list with --contacts contacts through the same
engine the `activecampaign_sync` asset uses (Push: bulk import), then prints:
  1. the full read-back's rate: `read_back(..., full=True)` alone (list by name, fields, tags, one GET contacts
     of 100 contacts with include=contactLists,fieldValues,contactTags a request, then hash, reconcile and
     commit to the sync state), against its ceiling of 5 requests/s x 100 contacts x speed (30,000 contacts a
     minute at speed 1), at each --speed. Target: at least 0.9 of the ceiling. Under each row: where read_back's
     time went, and a page's (waiting for the budget, the sandbox's answer, JSON decoding, the reader's own work).
  2. the requests of an incremental reconcile of the unchanged list. Target: at most 3.
  3. the compute of reconciling --members members (no network): reconcile.reconcile on a read-back in step with
     the snapshot and on one with about 1% drift of each kind, reader.with_hash, and ReadBackState.commit of the
     whole read to a DuckDB state file. Target: seconds.

The client spaces its requests by the budget stretched by --margin (0.05, what the pipeline uses against a real
account, caps it at 1/1.05 = 0.95 of the ceiling; the 0.2 it uses against a sped-up sandbox caps it at 0.83).
The machine's load is printed before and after: the figures are only as good as the cores were free.

    python benchmarks/readback_bench.py [--speed 20 [10 5 ...]] [--contacts 100000] [--members 1000000] [--margin 0.05]
    python benchmarks/readback_bench.py --quick      # 5,000 contacts, 100,000 members: a smoke run (< 30 s)
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import polars as pl

from ac_pipeline.activecampaign import ActiveCampaignClient, RateLimits
from ac_pipeline.activecampaign.client import PAGE_SIZE
from ac_pipeline.audiences.changes import diff
from ac_pipeline.audiences.config import Audience, parse_audiences
from ac_pipeline.audiences.members import classify, read_rows
from ac_pipeline.audiences.models import Source
from ac_pipeline.readback import list_read, reader, reconcile
from ac_pipeline.readback.list_read import read_back
from ac_pipeline.state.readback import ListRead, ReadBackState
from ac_pipeline.state.store import SyncState, upsert_snapshot
from ac_pipeline.sync.push import Push

AUDIENCE = """
audiences:
  - key: bench
    list: {name: Read-back benchmark, create: true}
    condition: "true"
    fields:
      email: email
      first_name: first_name
      last_name: last_name
      custom: {Loyalty tier: loyalty_tier, Lifetime value: lifetime_value}
      create_missing: true
    tags: [benchmark]
"""
KEY = "bench-key"
ACCOUNT = "sandbox:readback-bench"
REQUESTS_PER_SECOND = 5  # ActiveCampaign's budget at speed 1
TIERS = ("bronze", "silver", "gold", "platinum")

T = TypeVar("T")


def load() -> str:
    """The machine's load, as `uptime` says it."""
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


# -- the sandbox -----------------------------------------------------------------------------------


@contextmanager
def sandbox(speed: float, state_file: Path) -> Iterator[str]:
    """`ac-pipeline sandbox` at `speed` on `state_file`, in its own process (its own core); its URL."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ac_pipeline.cli",
            "sandbox",
            "--port",
            "0",
            "--speed",
            repr(speed),
            "--api-key",
            KEY,
            "--state",
            str(state_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    try:
        url = None
        for _ in range(20):
            match = re.search(r"http://127\.0\.0\.1:\d+", process.stdout.readline())
            if match:
                url = match.group(0)
                break
        if url is None:
            raise RuntimeError("The sandbox did not print its URL; run `ac-pipeline sandbox --port 0` to see why.")
        # Keep reading what it prints, so that it never blocks on a full pipe.
        threading.Thread(target=process.stdout.read, daemon=True).start()
        yield url
    finally:
        process.send_signal(signal.SIGINT)  # a clean stop: the state file is flushed for the next speed
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def connect(url: str, speed: float, margin: float) -> ActiveCampaignClient:
    client = ActiveCampaignClient(url, KEY, limits=RateLimits(safety_margin=margin).scaled(speed))
    for _ in range(100):
        try:
            client.request("GET", "lists", params={"limit": 1})
            return client
        except Exception:
            time.sleep(0.1)
    raise RuntimeError(f"The sandbox at {url} does not answer")


# -- the audience ------------------------------------------------------------------------------------


def values(ids: pl.Expr) -> dict[str, pl.Expr]:
    """The mapped values of customer `ids`, as the members' columns name them."""
    return {
        "first_name": pl.format("Ada{}", ids % 97),
        "last_name": pl.format("Lovelace{}", ids % 89),
        "field:Loyalty tier": pl.lit(pl.Series(TIERS)).gather(ids % len(TIERS)),
        "field:Lifetime value": (ids * 7 % 5000).cast(pl.String),
    }


def customers(n: int) -> pl.DataFrame:
    ids = pl.col("customer_id")
    mapped = values(ids)
    return pl.select(customer_id=pl.int_range(0, n, dtype=pl.Int64)).select(
        "customer_id",
        updated_at=pl.lit(datetime(2025, 1, 1, tzinfo=UTC)),
        email=pl.format("customer{}@example.com", ids),
        first_name=mapped["first_name"],
        last_name=mapped["last_name"],
        loyalty_tier=mapped["field:Loyalty tier"],
        lifetime_value=mapped["field:Lifetime value"],
    )


def audience_members(audience: Audience, rows: pl.DataFrame) -> pl.DataFrame:
    """The audience's members as the members asset computes them (its SQL, fields_hash included)."""
    connection = duckdb.connect()
    try:
        connection.register("rows", rows)
        connection.execute("CREATE TABLE customers AS SELECT * FROM rows")
        connection.unregister("rows")
        return classify(read_rows(connection, audience, Source()))
    finally:
        connection.close()


def fill(url: str, speed: float, state: SyncState, audience: Audience, n: int) -> str:
    """Push n members to the list with bulk import (the pipeline's own push)."""
    client = connect(url, speed, 0.2)
    members = audience_members(audience, customers(n))
    started = time.perf_counter()
    result = Push(client, state, audience, "fill", account=ACCOUNT, log=lambda m: None, poll_interval=1 / speed).run(
        diff(members, state.snapshot(audience.key))
    )
    assert result.outcomes["failed"] == 0, result.outcomes
    seconds = time.perf_counter() - started
    client.close()
    return (
        f"   the list: {n:,} contacts pushed by bulk import (Push) at speed {speed:g} in {seconds:.1f} s "
        f"({result.requests:,} requests)"
    )


# -- 1 and 2: reading back ---------------------------------------------------------------------------


class Stopwatch:
    """Seconds spent in some functions, by wrapping them: what list_read calls, and the client's transport."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._undo: list[tuple[object, str, object]] = []

    def watch(self, owner: object, name: str, label: str) -> None:
        function = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - started

        self._undo.append((owner, name, function))
        setattr(owner, name, timed)

    def restore(self) -> None:
        for owner, name, function in reversed(self._undo):
            setattr(owner, name, function)
        self._undo.clear()

    def __getitem__(self, label: str) -> float:
        return self.seconds.get(label, 0.0)


def full_read(url: str, speed: float, margin: float, state: SyncState, audience: Audience, n: int) -> list[str]:
    """Time read_back(full=True): its row of figure 1, and where a page's time went."""
    client = connect(url, speed, margin)
    watch = Stopwatch()
    for name, label in (("read_pages", "pages"), ("with_hash", "hash"), ("reconcile", "reconcile")):
        watch.watch(list_read, name, label)
    watch.watch(ReadBackState, "commit", "commit")
    # The transport's own steps (private, watched for this breakdown only): the round trip, the JSON.
    transport = client._transport
    watch.watch(transport, "send", "send")
    watch.watch(transport, "parse_body", "json")
    before = client.stats
    try:
        result = read_back(client, state, audience, f"full-{speed:g}", account=ACCOUNT, full=True, log=lambda m: None)
    finally:
        watch.restore()
    after = client.stats
    client.close()
    assert result.members.height == n, (result.members.height, n)
    drift = {kind: count for kind, count in result.reconciliation.counts().items() if count}
    ceiling = REQUESTS_PER_SECOND * PAGE_SIZE * speed
    rate = n / result.seconds
    pages = after.requests_by_endpoint.get("GET contacts", 0) - before.requests_by_endpoint.get("GET contacts", 0)
    waited = after.rate_limit_wait_seconds - before.rate_limit_wait_seconds
    budget = (1 + margin) / (REQUESTS_PER_SECOND * speed)

    def per_page(seconds: float) -> str:
        return f"{seconds / pages * 1000:.1f} ms"

    return [
        f"   {speed:>5g} | {n:>9,} | {result.seconds:>7.2f} | {rate:>10,.0f} | {rate / ceiling:>5.3f} | "
        f"{result.requests:>8,} | {after.rate_limited - before.rate_limited:>4} | drift {drift or 'none'}",
        f"           read_back's {result.seconds:.2f} s: pages {watch['pages']:.2f} s ({n / watch['pages'] / ceiling:.3f} "
        f"of the ceiling), hash {watch['hash']:.2f} s, reconcile {watch['reconcile']:.2f} s, commit "
        f"{watch['commit']:.2f} s, the rest (list, fields, tags, snapshot) "
        f"{result.seconds - watch['pages'] - watch['hash'] - watch['reconcile'] - watch['commit']:.2f} s",
        f"           a page ({pages:,} GET contacts; the budget spaces them {budget * 1000:.1f} ms apart): "
        f"{per_page(watch['pages'])} = waiting for the budget {per_page(waited)} + the answer (sandbox and HTTP) "
        f"{per_page(watch['send'] - waited)} + JSON decoding {per_page(watch['json'])} + the reader's own work "
        f"{per_page(watch['pages'] - watch['send'] - watch['json'])}",
    ]


def incremental_read(url: str, speed: float, margin: float, state: SyncState, audience: Audience) -> str:
    client = connect(url, speed, margin)
    result = read_back(client, state, audience, "incremental", account=ACCOUNT, log=lambda m: None)
    client.close()
    return (
        f"2. incremental reconcile of the unchanged list (speed {speed:g}): {result.requests} requests "
        f"(target <= 3), {result.seconds:.2f} s; the read was {result.why}, {result.changed_contacts} contacts read"
    )


# -- 3: compute --------------------------------------------------------------------------------------


def synthetic(audience: Audience, n: int, drift: bool) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A read-back (reader.frame_schema) of n contacts and the snapshot it matches; with `drift`, about 1% of
    each kind: opted out, bounced, gone, unmanaged, edited."""
    ids = pl.col("i")
    stamp, none = pl.lit("2025-01-01T12:00:00-05:00"), pl.lit(None, dtype=pl.String)
    read = (
        pl.select(i=pl.int_range(0, n, dtype=pl.Int64))
        .select(
            contact_id=(ids + 1).cast(pl.String),
            email=pl.format("customer{}@example.com", ids),
            list_status=pl.lit(1, dtype=pl.Int8),
            udate=stamp,
            sdate=stamp,
            unsubreason=pl.lit(""),
            campaign=none,
            message=none,
            unsubscribeAutomation=none,
            ip4Unsub=pl.lit("0"),
            **values(ids),
            tags=pl.lit(pl.Series([["benchmark"]], dtype=pl.List(pl.String))).first(),
            contact_updated_at=stamp,
        )
        .cast(reader.frame_schema(audience))  # type: ignore[arg-type]
    )
    read = reader.with_hash(read, audience)
    snapshot = read.select(
        "email",
        "fields_hash",
        "contact_id",
        status=pl.lit("member"),
        reason=pl.lit(None, dtype=pl.String),
        removed_at=pl.lit(None, dtype=pl.Datetime("us", "UTC")),
    )
    if drift:
        kind = pl.int_range(0, pl.len()) % 100  # 0 opted out, 1 bounced, 2 gone, 3 unmanaged, 4 edited
        read = read.with_columns(
            list_status=pl.when(kind == 0).then(2).when(kind == 1).then(3).otherwise(pl.col("list_status")),
            unsubreason=pl.when(kind == 0).then(pl.lit("too many emails")).otherwise(pl.col("unsubreason")),
            fields_hash=pl.when(kind == 4).then(pl.lit("edited by hand")).otherwise(pl.col("fields_hash")),
        ).filter(kind != 2)
        snapshot = snapshot.filter(kind != 3)
    return read, snapshot


def timed(function: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    value = function()
    return value, time.perf_counter() - started


def compute(audience: Audience, n: int, work: Path) -> None:
    print(f"3. reconcile compute at {n:,} members (no network):")
    in_step, snapshot = synthetic(audience, n, drift=False)
    outcome, seconds = timed(lambda: reconcile.reconcile(in_step, snapshot))
    print(f"   reconcile, in step:           {seconds:6.2f} s  (drift {sum(outcome.counts().values())})")
    drifted, drifted_snapshot = synthetic(audience, n, drift=True)
    drifted_outcome, seconds = timed(lambda: reconcile.reconcile(drifted, drifted_snapshot))
    print(f"   reconcile, ~1% of each drift: {seconds:6.2f} s  ({drifted_outcome.counts()})")
    _, seconds = timed(lambda: reader.with_hash(in_step.drop("fields_hash"), audience))
    print(f"   reader.with_hash:             {seconds:6.2f} s")
    state = SyncState(work / "compute-state.duckdb")
    with state.connect() as session, session.transaction():
        _, seconds = timed(lambda: upsert_snapshot(session, audience.key, "sync", snapshot, datetime.now(UTC)))
    store = ReadBackState(state)
    now = datetime.now(UTC)
    read = ListRead(ACCOUNT, "1", {"Loyalty tier": "1", "Lifetime value": "2"}, {"benchmark": "1"}, now, now, n)

    def commit(members: pl.DataFrame, outcome: reconcile.Reconciliation, run_id: str) -> None:
        store.commit(
            audience,
            run_id,
            read,
            members=members,
            full=True,
            upserts=outcome.upserts,
            forgotten=outcome.forgotten,
            ledger=outcome.ledger(),
            record_destination=False,
        )

    print(f"   (the state file's snapshot: {n:,} members, written in {seconds:.2f} s)")
    _, seconds = timed(lambda: commit(in_step, outcome, "first"))
    print(f"   ReadBackState.commit, first:  {seconds:6.2f} s  ({n:,} members, the first read of the list)")
    _, seconds = timed(lambda: commit(drifted, drifted_outcome, "again"))
    print(
        f"   ReadBackState.commit, next:   {seconds:6.2f} s  ({drifted.height:,} members replacing the last read; "
        f"{drifted_outcome.upserts.height:,} snapshot upserts, {drifted_outcome.forgotten.len():,} forgotten)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speed", type=float, nargs="+", default=[20.0], help="sandbox speed(s) (default 20)")
    parser.add_argument("--contacts", type=int, help="contacts on the list (default 100,000; --quick 5,000)")
    parser.add_argument(
        "--members", type=int, help="members for the compute figures (default 1,000,000; --quick 100,000)"
    )
    parser.add_argument("--margin", type=float, default=0.05, help="the client's safety margin (default 0.05)")
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    args = parser.parse_args()
    contacts = args.contacts or (5_000 if args.quick else 100_000)
    n_members = args.members or (100_000 if args.quick else 1_000_000)
    speeds: list[float] = sorted(set(args.speed), reverse=True)

    began = time.perf_counter()
    print(f"load before: {load()}")
    print(
        f"settings: --speed {' '.join(f'{s:g}' for s in speeds)} --contacts {contacts} --members {n_members} "
        f"--margin {args.margin:g}{' --quick' if args.quick else ''}"
    )
    audience = parse_audiences(AUDIENCE).get("bench")
    with tempfile.TemporaryDirectory(prefix="ac-readback-bench-") as folder:
        work = Path(folder)
        state = SyncState(work / "state.duckdb")
        state_file = work / "sandbox.sqlite"
        rows: list[str] = []
        filled = incremental = ""
        for position, speed in enumerate(speeds):
            with sandbox(speed, state_file) as url:
                if position == 0:
                    filled = fill(url, speed, state, audience, contacts)
                    # The incremental read asks from (the last read's start - OVERLAP): let the fill fall out of it.
                    time.sleep((reader.OVERLAP + timedelta(seconds=1.5)).total_seconds())
                rows += full_read(url, speed, args.margin, state, audience, contacts)
                if position == 0:
                    incremental = incremental_read(url, speed, args.margin, state, audience)
        print(
            f"1. full read-back; ceiling {REQUESTS_PER_SECOND} requests/s x {PAGE_SIZE} contacts x speed; the client's "
            f"spacing (--margin {args.margin:g}) caps it at {1 / (1 + args.margin):.3f} of that"
        )
        print(filled)
        print("   speed |  contacts | seconds | contacts/s | share | requests |  429 |")
        print("\n".join(rows))
        print(incremental)
        compute(audience, n_members, work)
    print(f"load after: {load()}; the whole run took {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
