"""How fast is the sandbox? Starts `ac-pipeline sandbox` in a subprocess and hammers it from client threads.

    /work/.venv/bin/python benchmarks/sandbox_bench.py [--speed 100] [--seconds 5] [--threads 4]

Prints, for a cheap GET and for bulk imports of 250 contacts: attempts and accepted answers per second, and
p50/p99 latency of the accepted ones; then how fast the import worker applies contacts (per second of its busy
time, and per wall-clock second from the first import to the last applied). At --speed 100 the limits are
500 requests/s and 100 multi-contact imports per 0.6 s (166/s): the sandbox keeps up if the accepted rates reach
those limits. Bounded: each phase stops after --seconds, the drain after 60 s; about 20 s in all by default.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

API_KEY = "bench-key"
BATCH = 250


@dataclass
class Tally:
    """Answers counted by kind, and the latencies (seconds) of the accepted ones."""

    counts: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, latency: float) -> None:
        with self.lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            if kind == "accepted":
                self.latencies.append(latency)


def start_sandbox(speed: float) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ac_pipeline.cli",
            "sandbox",
            "--port",
            "0",
            "--speed",
            str(speed),
            "--api-key",
            API_KEY,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    for _ in range(20):
        match = re.search(r"http://127\.0\.0\.1:\d+", process.stdout.readline())
        if match:
            return process, match.group(0)
    process.kill()
    raise RuntimeError("The sandbox did not print its URL; run `ac-pipeline sandbox --port 0` to see why.")


def hammer(url: str, threads: int, seconds: float, send: Callable[[httpx.Client, int, int], str]) -> Tally:
    """Each thread calls send(client, thread, n) in a loop for `seconds`; send returns the kind of answer."""
    tally = Tally()
    deadline = time.monotonic() + seconds

    def worker(thread: int) -> None:
        with httpx.Client(base_url=f"{url}/api/3", headers={"Api-Token": API_KEY}, timeout=30) as client:
            n = 0
            while time.monotonic() < deadline:
                started = time.perf_counter()
                kind = send(client, thread, n)
                tally.add(kind, time.perf_counter() - started)
                n += 1

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return tally


def report(name: str, tally: Tally, seconds: float) -> None:
    attempts = sum(tally.counts.values())
    accepted = tally.counts.get("accepted", 0)
    lat = sorted(tally.latencies) or [0.0]
    p50, p99 = statistics.median(lat), lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    print(
        f"{name}: {accepted / seconds:8.1f} accepted/s of {attempts / seconds:8.1f} attempts/s "
        f"({dict(sorted(tally.counts.items()))}); accepted latency p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speed", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each phase")
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()

    process, url = start_sandbox(args.speed)
    try:
        admin = httpx.Client(base_url=f"{url}/_sandbox", timeout=30)
        api = httpx.Client(base_url=f"{url}/api/3", headers={"Api-Token": API_KEY}, timeout=30)
        list_id = api.post(
            "/lists",
            json={"list": {"name": "Bench", "stringid": "bench", "sender_url": "https://x.io", "sender_reminder": "r"}},
        ).json()["list"]["id"]
        field_id = api.post("/fields", json={"field": {"title": "Tier", "type": "text"}}).json()["field"]["id"]
        print(f"sandbox {url} at speed {args.speed:g}; {args.threads} client threads, {args.seconds:g} s per phase")

        def cheap_get(client: httpx.Client, thread: int, n: int) -> str:
            response = client.get("/lists", params={"limit": 1})
            return "accepted" if response.status_code == 200 else str(response.status_code)

        report("GET /lists         ", hammer(url, args.threads, args.seconds, cheap_get), args.seconds)

        # One template, made unique per request by a cheap replace, so the client spends its time sending.
        template = json.dumps(
            {
                "contacts": [
                    {
                        "email": f"b-BATCH-{i}@example.com",
                        "first_name": "Bench",
                        "last_name": f"{i}",
                        "tags": ["bench"],
                        "fields": [{"id": int(field_id), "value": "gold"}],
                        "subscribe": [{"listid": list_id}],
                    }
                    for i in range(BATCH)
                ],
                "exclude_automations": True,
            }
        )

        def body(thread: int, n: int) -> bytes:
            return template.replace("-BATCH-", f"-{thread}x{n}-").encode()

        def bulk_import(client: httpx.Client, thread: int, n: int) -> str:
            response = client.post(
                "/import/bulk_import", content=body(thread, n), headers={"Content-Type": "application/json"}
            )
            if response.status_code == 200:
                return "accepted"
            if response.status_code == 400 and response.json().get("message") == "Rate limit exceeded.":
                return "400 per-minute cap"
            return str(response.status_code)

        started = time.monotonic()
        imports = hammer(url, args.threads, args.seconds, bulk_import)
        report(f"bulk import of {BATCH}", imports, args.seconds)

        deadline = time.monotonic() + 60
        while admin.get("/imports").json()["pending"] and time.monotonic() < deadline:
            time.sleep(0.05)
        drained = time.monotonic() - started
        stats = admin.get("/imports").json()
        busy = stats["busy_seconds"] or float("nan")
        print(
            f"import worker: {stats['applied_contacts']} contacts in {stats['applied_batches']} batches; "
            f"{stats['applied_contacts'] / busy:,.0f} contacts/s of busy time, "
            f"{stats['applied_contacts'] / drained:,.0f} contacts/s wall-clock (submit + drain, {drained:.1f} s); "
            f"{stats['pending']} batches still pending"
        )
        admin.close()
        api.close()
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
