"""What re-adding many returning contacts costs, in requests: one at a time against in bulk (sync.readds).

A fresh `ac-pipeline sandbox --speed 20` in its own process for each way, then pushes through the engine the
`activecampaign_sync` asset uses (Push): N adds, the same N removed by the sync, a tenth of them unsubscribing
themselves through a campaign's link meanwhile, then all N back. The ways:
  - `one at a time`: the single path for every re-add (what every re-add took before issue 12, item 4);
  - `bulk, by list`: the snapshot knows no contact ids (bulk import does not give them): the list's
    unsubscribed are read, 100 a request;
  - `bulk, by id`: the snapshot knows the contact ids (a read-back learnt them): `contacts?ids[]=`, 100 a request.
Prints, for the re-add push, the requests by endpoint, the requests per re-add and the seconds (the sandbox's
time is 20 times faster than a real account's; requests are what a real account would count).

    python benchmarks/readd_bench.py [--readds 200] [--speed 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import polars as pl
from push_bench import members, start_sandbox  # beside this script

import ac_pipeline.sync.push as push_module
from ac_pipeline.audiences.changes import diff
from ac_pipeline.audiences.config import parse_audiences
from ac_pipeline.sandbox.admin_client import SandboxAdmin
from ac_pipeline.state.identity import learn
from ac_pipeline.state.store import SyncState
from ac_pipeline.sync.push import Push

AUDIENCE = """
audiences:
  - key: bench
    list: {name: Readd list, create: true}
    condition: "true"
    fields:
      email: email
      first_name: first_name
      custom: {Loyalty tier: loyalty_tier}
      create_missing: true
    tags: [benchmark]
"""
WAYS = ("one at a time", "bulk, by list", "bulk, by id")


def by_endpoint(admin: SandboxAdmin) -> dict[str, int]:
    return {path: sum(n.values()) for path, n in admin.requests()["by_path_status"].items()}


def one_way(way: str, n: int, speed: float, folder: Path) -> None:
    sandbox, client = start_sandbox(speed)
    try:
        admin = SandboxAdmin(client.api_url.removesuffix("/api/3"))
        audience = parse_audiences(AUDIENCE).get("bench")
        state = SyncState(folder / f"{way.replace(' ', '_').replace(',', '')}.duckdb")
        everyone = members(n).select("email", "first_name", "field:Loyalty tier", "fields_hash")

        def run(frame: pl.DataFrame, run_id: str) -> Push:
            engine = Push(client, state, audience, run_id, account="benchmark", log=lambda m: None)
            engine.poll_interval = 1.0 / speed
            result = engine.run(diff(frame, state.snapshot("bench")))
            assert result.outcomes["failed"] == 0, result.outcomes
            return engine

        run(everyone, "adds")
        if way == "bulk, by id":
            list_id = client.find_list("Readd list")["id"]  # type: ignore[index]
            ids = [(c["email"], str(c["id"]), None) for c in client.iter_list_members(list_id, 1)]
            learn(state, "bench", pl.DataFrame(ids, schema=["email", "contact_id", "customer_id"], orient="row"))
        run(everyone.clear(), "removals")
        for email in everyone.get_column("email").head(n // 10):
            admin.unsubscribe(email, "Readd list", campaign=3, message=4)
        push_module.BULK_READDS = 10**9 if way == "one at a time" else 10
        before, started = by_endpoint(admin), time.perf_counter()
        said: list[str] = []
        engine = Push(client, state, audience, "readds", account="benchmark", log=said.append)
        engine.poll_interval = 1.0 / speed
        result = engine.run(diff(everyone, state.snapshot("bench")))
        seconds = time.perf_counter() - started
        sent = {path: k - before.get(path, 0) for path, k in by_endpoint(admin).items() if k - before.get(path, 0)}
        readds = result.pending["readd"]
        print(
            f"{way}: {readds} re-adds ({result.outcomes['opted_out']} opted out, {result.outcomes['confirmed']} "
            f"re-added), {result.requests} requests = {result.requests / readds:.3f} per re-add, {seconds:.1f} s"
        )
        print("".join(f"    {m}\n" for m in said if "list records" in m), end="")
        for path, k in sorted(sent.items()):
            print(f"    {k:5d}  {path}")
        client.close()
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readds", type=int, default=200)
    parser.add_argument("--speed", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for way in WAYS:
            one_way(way, args.readds, args.speed, Path(folder))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
